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


def survival_curve(surv: dict[str, Any], at_h: list[dict[str, Any]] | None = None) -> str:
    """Predicted S(t) with its band, ending at the model's last follow-up; the time axis in years where the unit is
    known; the report horizons and the cohort average marked."""
    from multimodal.explain.key_findings import units_per_year

    f = units_per_year(surv.get("time_unit", "")) or 1.0
    unit = "years" if f != 1.0 or surv.get("time_unit") == "years" else surv.get("time_unit", "")
    t = np.asarray(surv["times"], dtype=float) / f
    fig, ax = plt.subplots(figsize=(4.4, 2.5))
    ax.fill_between(t, surv["lower"], surv["upper"], alpha=0.25, color="#1f77b4", label="90% MC-dropout band")
    ax.plot(t, surv["survival"], color="#1f77b4", lw=2, marker="o", ms=3, label="predicted survival")
    hs = [h for h in (at_h or []) if h.get("cohort_survival") is not None]
    if hs:
        ax.plot([h["horizon"] / f for h in hs], [h["cohort_survival"] for h in hs], "s", color="#555", ms=5,
                label="cohort average (Kaplan–Meier)")
    ax.set_xlim(0, t[-1] if len(t) > 1 else 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"time since the cohort's time origin ({unit})")
    ax.set_ylabel("probability event-free")
    ax.legend(frameon=False, loc="upper right", fontsize=7)
    return to_data_uri(fig)


def contributions(values: dict[str, float]) -> str:
    names = list(values)
    v = np.array([values[n] for n in names])
    fig, ax = plt.subplots(figsize=(4.2, 0.5 + 0.35 * len(names)))
    colors = ["#d62728" if x > 0 else "#2ca02c" for x in v]
    ax.barh(names, v, color=colors)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("contribution to the risk score (Shapley; + raises risk)")
    return to_data_uri(fig)


def heatmap(h: dict[str, Any], top: list[dict[str, Any]] | None = None, max_side: float = 3.2) -> str:
    """Per-patch attribution over the slide's tissue (each square one patch; the tissue outline is where patches
    exist, background light grey), with a colour bar and the top regions circled and numbered."""
    x, y, v = np.asarray(h["x"]), np.asarray(h["y"]), np.asarray(h["value"], dtype=float)
    fig, ax = plt.subplots(figsize=(max_side, max_side * 0.9))
    ax.set_facecolor("#f2f2f2")
    if len(x):
        lim = float(np.abs(v).max()) or 1.0
        scale = 10 ** np.floor(np.log10(lim))
        w = int(x.max()) + 1
        hgt = int(y.max()) + 1
        if w * hgt <= 4_000_000 and x.min() >= 0 and y.min() >= 0:  # a grid of patch positions
            grid = np.full((hgt, w), np.nan)
            grid[y, x] = v / scale
            im = ax.imshow(grid, cmap="coolwarm", vmin=-lim / scale, vmax=lim / scale, interpolation="nearest")
        else:  # sparse or unusual positions: one marker per patch
            im = ax.scatter(x, y, c=v / scale, cmap="coolwarm", vmin=-lim / scale, vmax=lim / scale, s=6, marker="s",
                            linewidths=0)
            ax.invert_yaxis()
            ax.set_aspect("equal")
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label(f"attribution ×{scale:.0e}", fontsize=7)
        cb.ax.tick_params(labelsize=6)
        for k, p in enumerate(top or [], start=1):
            ax.plot(p["grid_x"], p["grid_y"], "o", mfc="none", mec="k", ms=9, mew=1.2)
            ax.annotate(str(k), (p["grid_x"], p["grid_y"]), xytext=(5, 5), textcoords="offset points", fontsize=7,
                        fontweight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(str(h.get("slide_id", ""))[:40] + " (grey: no tissue)", fontsize=8)
    ax.plot([], [], "o", mfc="none", mec="k", label="top regions (numbered)")
    if top:
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.16), frameon=False, fontsize=7)
    return to_data_uri(fig, dpi=100)


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
