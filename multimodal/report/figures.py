"""Figures for reports, rendered with matplotlib (Agg) to PNG bytes; callers inline them as data URIs."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# text.parse_math off: labels come from data (slide ids, arm names, codes); "$...$" in one must print as written,
# never be parsed as mathtext (an invalid expression would make the whole report fail)
plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "text.parse_math": False})


def to_data_uri(fig: Any, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def survival_curve(surv: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    t = surv["times"]
    ax.fill_between(t, surv["lower"], surv["upper"], step="post", alpha=0.25, color="#1f77b4", label="uncertainty")
    ax.step(t, surv["survival"], where="post", color="#1f77b4", lw=2, label="predicted S(t)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"time ({surv.get('time_unit', '')})")
    ax.set_ylabel("survival probability")
    ax.legend(frameon=False, loc="lower left")
    return to_data_uri(fig)


def contributions(values: dict[str, float]) -> str:
    names = list(values)
    v = np.array([values[n] for n in names])
    fig, ax = plt.subplots(figsize=(4.2, 0.5 + 0.35 * len(names)))
    colors = ["#d62728" if x > 0 else "#2ca02c" for x in v]
    ax.barh(names, v, color=colors)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("contribution to risk score (Shapley)")
    return to_data_uri(fig)


def heatmap(h: dict[str, Any], max_side: float = 3.0) -> str:
    x, y, v = np.asarray(h["x"]), np.asarray(h["y"]), np.asarray(h["value"], dtype=float)
    fig, ax = plt.subplots(figsize=(max_side, max_side))
    if len(x):
        lim = np.abs(v).max() or 1.0
        ax.scatter(x, y, c=v, cmap="coolwarm", vmin=-lim, vmax=lim, s=6, marker="s", linewidths=0)
        ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(str(h.get("slide_id", ""))[:40], fontsize=8)
    return to_data_uri(fig, dpi=90)


def response_bars(resp: list[dict[str, Any]]) -> str:
    names = [str(r["arm"]) if r["arm"] is not None else "response" for r in resp]
    p = np.array([r["probability"] for r in resp])
    lo = p - np.array([r["lower"] for r in resp])
    hi = np.array([r["upper"] for r in resp]) - p
    fig, ax = plt.subplots(figsize=(4.2, 0.6 + 0.4 * len(names)))
    ax.barh(names, p, xerr=[np.clip(lo, 0, None), np.clip(hi, 0, None)], color="#9467bd", capsize=3)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of response")
    return to_data_uri(fig)
