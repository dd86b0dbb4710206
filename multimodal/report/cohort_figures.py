"""Figures of the cohort report (matplotlib, inlined as PNG data URIs by :func:`multimodal.report.figures.to_data_uri`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from multimodal.report.figures import plt, to_data_uri

GROUP_COLORS = {"low": "#2ca02c", "intermediate": "#ff7f0e", "high": "#d62728"}


def _axis(unit: str, per_year: float | None) -> tuple[float, str]:
    return (per_year, "years") if per_year else (1.0, unit)


def km(km: dict[str, Any], unit: str, per_year: float | None) -> str:
    """Kaplan–Meier by risk group with 95% bands and the numbers at risk aligned under the time axis."""
    f, label = _axis(unit, per_year)
    fig, (ax, tab) = plt.subplots(2, 1, figsize=(6.2, 4.2), gridspec_kw={"height_ratios": [4, 1.1]}, sharex=True)
    for g, c in km["curves"].items():
        t = np.asarray(c["time"]) / f
        ax.step(t, c["survival"], where="post", color=GROUP_COLORS.get(g), label=f"{g} (n={c['n']}, {c['events']} events)")
        ax.fill_between(t, c["lower"], c["upper"], step="post", color=GROUP_COLORS.get(g), alpha=0.15)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("event-free (Kaplan–Meier)")
    ax.set_title(f"By predicted risk group; log-rank p = {km['logrank_p']:.2g}; shaded: 95% CI", fontsize=9)
    ax.legend(frameon=False, fontsize=7, loc="upper right")
    times = np.asarray(km["at_risk_times"]) / f
    groups = list(km["at_risk"])
    for i, g in enumerate(groups):
        for x, n in zip(times, km["at_risk"][g], strict=True):
            tab.text(x, len(groups) - 1 - i, str(n), ha="center", va="center", fontsize=7, color=GROUP_COLORS.get(g))
    tab.set_yticks(range(len(groups)))
    tab.set_yticklabels(groups[::-1], fontsize=7)
    tab.set_ylim(-0.6, len(groups) - 0.4)
    tab.set_xticks(times)
    tab.set_xticklabels([f"{x:.1f}" for x in times])
    tab.tick_params(axis="y", length=0)
    for side in ("left", "bottom"):
        tab.spines[side].set_visible(False)
    tab.set_title("number at risk", fontsize=7, loc="left")
    tab.set_xlabel(f"time ({label})")
    xmax = max(times[-1], max(max(c["time"]) for c in km["curves"].values()) / f)
    ax.set_xlim(-0.05 * xmax, xmax * 1.02)
    fig.tight_layout()
    return to_data_uri(fig)


def calibration(c: dict[str, Any], unit: str, per_year: float | None) -> str:
    """One fold's calibration at its own horizon: predicted vs observed event probability per bin, bin counts."""
    f, label = _axis(unit, per_year)
    fig, ax = plt.subplots(figsize=(2.9, 2.8))
    pred = [b["predicted"] for b in c["bins"]]
    obs = [b["observed"] for b in c["bins"]]
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect")
    ax.plot(pred, obs, "o-", color="#1f77b4", ms=4, label="bins")
    for b in c["bins"]:
        ax.annotate(f"n={b['n']}", (b["predicted"], b["observed"]), xytext=(3, -9), textcoords="offset points",
                    fontsize=6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted event probability")
    ax.set_ylabel("observed (Kaplan–Meier)")
    slope = "n/a" if c.get("slope") is None else f"{c['slope']:.2f}"
    ici = "n/a" if c.get("ici") is None else f"{c['ici']:.2f}"
    ax.set_title(f"fold {c['fold']}, at {c['horizon'] / f:.2f} {label}\nslope {slope}, ICI {ici}", fontsize=8)
    ax.legend(frameon=False, fontsize=6, loc="upper left")
    return to_data_uri(fig)


def td_auc(curves: dict[str, dict[str, list[float]]], unit: str, per_year: float | None) -> str | None:
    """Mean time-dependent AUC over folds per method with the range over folds as a band; legend outside the data."""
    if not curves:
        return None
    f, label = _axis(unit, per_year)
    fig, ax = plt.subplots(figsize=(6.2, 2.9))
    cmap = plt.get_cmap("tab10")
    for i, (name, c) in enumerate(curves.items()):
        t = np.asarray(c["time"]) / f
        lw = 2.2 if name == "multimodal" else 1.0
        ax.plot(t, c["mean"], color=cmap(i % 10), lw=lw, label=name)
        ax.fill_between(t, c["lower"], c["upper"], color=cmap(i % 10), alpha=0.12)
    ax.axhline(0.5, color="k", lw=0.6, ls="--")
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"horizon ({label})")
    ax.set_ylabel("time-dependent AUC")
    ax.set_title("mean over folds; band: range over folds; dashed: chance", fontsize=8)
    ax.legend(frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return to_data_uri(fig)


def response(r: dict[str, Any]) -> str:
    """ROC curve and binned calibration of the response probability (our model, folds pooled)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(6.2, 2.8))
    a.plot(r["roc"]["fpr"], r["roc"]["tpr"], color="#9467bd", lw=2)
    a.plot([0, 1], [0, 1], "k--", lw=0.8)
    a.set_xlabel("1 − specificity")
    a.set_ylabel("sensitivity")
    a.set_title("ROC (folds pooled)", fontsize=8)
    b.plot([0, 1], [0, 1], "k--", lw=0.8)
    b.plot([c["predicted"] for c in r["calibration"]], [c["observed"] for c in r["calibration"]], "o-",
           color="#9467bd")
    for c in r["calibration"]:
        b.annotate(f"n={c['n']}", (c["predicted"], c["observed"]), xytext=(3, -9), textcoords="offset points",
                   fontsize=6)
    b.set_xlim(0, 1)
    b.set_ylim(0, 1)
    b.set_xlabel("predicted response probability")
    b.set_ylabel("observed response rate")
    b.set_title("calibration (quintiles of prediction)", fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)
