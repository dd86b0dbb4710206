"""The cohort report of a ``multimodal cv`` run: computation of the curves/tables, then rendering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from multimodal.io import atomic_path, write_text_atomic
from multimodal.report import figures


def risk_groups(preds: pd.DataFrame, n_groups: int = 3) -> pd.Series:
    """Tertile (by default) of each patient's risk within its own fold (models differ across folds)."""
    labels = ["low", "intermediate", "high"] if n_groups == 3 else [f"G{i + 1}" for i in range(n_groups)]
    out = pd.Series(index=preds.index, dtype=object)
    for _, g in preds.groupby("fold"):
        ranks = g["risk"].rank(method="first")
        out.loc[g.index] = pd.qcut(ranks, n_groups, labels=labels).astype(str)
    return out


def km_by_group(preds: pd.DataFrame) -> dict[str, Any]:
    from sksurv.compare import compare_survival
    from sksurv.nonparametric import kaplan_meier_estimator

    groups = risk_groups(preds)
    curves = {}
    t_all = preds["time"].to_numpy(float)
    at_times = np.quantile(t_all, [0, 0.25, 0.5, 0.75]).round(0)
    at_risk = {}
    for gname in ["low", "intermediate", "high"]:
        sel = (groups == gname).to_numpy()
        if sel.sum() == 0:
            continue
        t, e = preds["time"].to_numpy(float)[sel], preds["event"].to_numpy(bool)[sel]
        x, s = kaplan_meier_estimator(e, t)
        curves[gname] = {"time": x.tolist(), "survival": s.tolist()}
        at_risk[gname] = [int((t >= a).sum()) for a in at_times]
    y = np.array(list(zip(preds["event"].astype(bool), preds["time"].astype(float), strict=True)),
                 dtype=[("event", bool), ("time", float)])
    chisq, p = compare_survival(y, groups.to_numpy())
    return {"curves": curves, "logrank_chisq": float(chisq), "logrank_p": float(p), "at_risk_times": at_times.tolist(),
            "at_risk": at_risk}


def compute_cohort_report(run_dir: Path) -> dict[str, Any]:
    from multimodal.study import comparison_text, main_metric, method_ci

    summary = json.loads((run_dir / "summary.json").read_text())
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    data: dict[str, Any] = {"summary": summary, "task": summary.get("task")}
    # the main metric's 95% CI (a bootstrap over patients within folds) and the paired comparison with the baselines
    data["main_metric"] = main_metric(summary.get("task"))
    data["main_ci"] = {name: method_ci(m, data["main_metric"]) or [None, None]
                       for name, m in summary["methods"].items()}
    data["comparison"] = comparison_text(summary.get("comparison"))
    ours = preds[preds["method"] == "multimodal"].reset_index(drop=True)
    if summary.get("task") != "response" and not ours.empty:
        data["km"] = km_by_group(ours)
    rows = []
    for name, m in summary["methods"].items():
        for f in m["folds"]:
            rows.append({"method": name, "fold": f["fold"], **{k: f.get(k) for k in m["mean"]}})
    data["fold_rows"] = rows
    cal = [f.get("calibration") for f in summary["methods"].get("multimodal", {}).get("folds", [])]
    data["calibration"] = [
        {"predicted": [b["predicted"] for b in c["bins"]], "observed": [b["observed"] for b in c["bins"]]}
        for c in cal if isinstance(c, dict) and c.get("bins")
    ]
    tda = {}
    for name, m in summary["methods"].items():
        pts = [(h, a) for f in m["folds"] for h, a in zip(f.get("td_auc_horizons") or [], f.get("td_auc_values") or [],
                                                            strict=False)]
        if pts:
            tda[name] = pts
    data["td_auc"] = tda
    return data


def _km_figure(km: dict[str, Any], unit: str) -> str:
    fig, ax = figures.plt.subplots(figsize=(5, 3.2))
    colors = {"low": "#2ca02c", "intermediate": "#ff7f0e", "high": "#d62728"}
    for g, c in km["curves"].items():
        ax.step(c["time"], c["survival"], where="post", label=g, color=colors.get(g))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"time ({unit})")
    ax.set_ylabel("survival (Kaplan–Meier)")
    ax.set_title(f"by predicted risk group (log-rank p = {km['logrank_p']:.2g})", fontsize=9)
    ax.legend(frameon=False)
    return figures.to_data_uri(fig)


def _calibration_figure(cal: list[dict[str, Any]]) -> str | None:
    fig, ax = figures.plt.subplots(figsize=(3.4, 3.2))
    n = 0
    for c in cal:
        pred, obs = c.get("predicted"), c.get("observed")
        if pred and obs:
            ax.plot(pred, obs, "o-", alpha=0.7, ms=3)
            n += 1
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("predicted event probability")
    ax.set_ylabel("observed (Kaplan–Meier)")
    if n == 0:
        figures.plt.close(fig)
        return None
    return figures.to_data_uri(fig)


def _tdauc_figure(tda: dict[str, list[tuple[float, float]]], unit: str) -> str | None:
    if not tda:
        return None
    fig, ax = figures.plt.subplots(figsize=(4.4, 3.0))
    for name, pts in tda.items():
        a = np.array(sorted(pts))
        ax.plot(a[:, 0], a[:, 1], "o", ms=3, alpha=0.7, label=name)
    ax.axhline(0.5, color="k", lw=0.6, ls="--")
    ax.set_xlabel(f"horizon ({unit})")
    ax.set_ylabel("time-dependent AUC")
    ax.legend(frameon=False, fontsize=7)
    return figures.to_data_uri(fig)


def render_cohort_html(data: dict[str, Any]) -> str:
    unit = data["summary"].get("protocol", {}).get("time_unit", "")
    fig = {
        "km": _km_figure(data["km"], unit) if data.get("km") else None,
        "calibration": _calibration_figure(data.get("calibration", [])),
        "td_auc": _tdauc_figure(data.get("td_auc", {}), unit),
    }
    env = Environment(loader=PackageLoader("multimodal.report", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("cohort.html").render(d=data, s=data["summary"], fig=fig)


def write_cohort_report(run_dir: Path, out_dir: Path, *, pdf: bool = True) -> dict[str, Path]:
    data = compute_cohort_report(run_dir)
    html = render_cohort_html(data)
    out = {"html": write_text_atomic(out_dir / "cohort_report.html", html)}
    if pdf:
        from weasyprint import HTML

        with atomic_path(out_dir / "cohort_report.pdf") as tmp:
            HTML(string=html).write_pdf(str(tmp))
        out["pdf"] = out_dir / "cohort_report.pdf"
    return out
