"""The cohort report of a ``multimodal cv`` run: computation of the tables and curves (here), figures
(:mod:`multimodal.report.cohort_figures`), rendering (``templates/cohort.html``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from multimodal.explain.key_findings import units_per_year
from multimodal.io import atomic_path, write_text_atomic
from multimodal.report import cohort_figures

GROUPS = ("low", "intermediate", "high")
#: Metrics of the methods table, by family (shown where the summary has them).
SURVIVAL_METRICS = ("c_index", "c_index_uno", "td_auc", "ibs", "calibration_slope", "ici")
RESPONSE_METRICS = ("auroc", "auprc", "response_calibration_slope", "response_ici")


def risk_groups(preds: pd.DataFrame, n_groups: int = 3) -> pd.Series:
    """Tertile (by default) of each patient's risk within its own fold (models differ across folds)."""
    labels = list(GROUPS) if n_groups == 3 else [f"G{i + 1}" for i in range(n_groups)]
    out = pd.Series(index=preds.index, dtype=object)
    for _, g in preds.groupby("fold"):
        ranks = g["risk"].rank(method="first")
        out.loc[g.index] = pd.qcut(ranks, n_groups, labels=labels).astype(str)
    return out


def hazard_ratios(time: np.ndarray, event: np.ndarray, groups: np.ndarray,
                  strata: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Cox hazard ratio (95% Wald CI) of each risk group against ``low`` (Breslow ties), stratified by ``strata``
    (the fold: each fold's model and patients have their own baseline hazard) when given."""
    from multimodal.metrics import _cox_fit, _cox_terms, _stratified_cox_terms

    others = [g for g in GROUPS[1:] if (groups == g).any()]
    if not others or not (groups == "low").any() or not event.any():
        return {}
    x = np.column_stack([(groups == g).astype(float) for g in others])
    try:
        beta = _cox_fit(x, time, event, "hazard ratio by risk group", strata)
        terms = _cox_terms(x, time, event) if strata is None else _stratified_cox_terms(x, time, event, strata)
        info = terms(beta)[2]
        se = np.sqrt(np.diag(np.linalg.inv(info)))
    except Exception:  # noqa: BLE001 - a group without events: no finite estimate, the table says n/a
        return {}
    return {g: {"hr": float(np.exp(b)), "lower": float(np.exp(b - 1.96 * s)), "upper": float(np.exp(b + 1.96 * s))}
            for g, b, s in zip(others, beta, se, strict=True) if np.isfinite(b) and np.isfinite(s)}


def km_by_group(preds: pd.DataFrame) -> dict[str, Any]:
    """Kaplan–Meier curves with 95% log-log bands per risk group, the log-rank test, hazard ratios vs ``low`` and
    the numbers at risk at the plot's tick times."""
    from sksurv.compare import compare_survival
    from sksurv.nonparametric import kaplan_meier_estimator

    groups = risk_groups(preds)
    t_all = preds["time"].to_numpy(float)
    e_all = preds["event"].to_numpy(bool)
    at_times = np.linspace(0, float(np.quantile(t_all, 0.9)), 5)
    curves, at_risk = {}, {}
    for gname in GROUPS:
        sel = (groups == gname).to_numpy()
        if sel.sum() == 0:
            continue
        t, e = t_all[sel], e_all[sel]
        if e.any():
            x, s, ci = kaplan_meier_estimator(e, t, conf_type="log-log")
            lo, hi = np.nan_to_num(ci[0], nan=0.0), np.nan_to_num(ci[1], nan=1.0)
        else:
            x, s = np.array([t.max()]), np.array([1.0])
            lo, hi = s.copy(), s.copy()
        curves[gname] = {"time": x.tolist(), "survival": s.tolist(), "lower": lo.tolist(), "upper": hi.tolist(),
                         "n": int(sel.sum()), "events": int(e.sum())}
        at_risk[gname] = [int((t >= a).sum()) for a in at_times]
    y = np.array(list(zip(e_all, t_all, strict=True)), dtype=[("event", bool), ("time", float)])
    chisq, p = compare_survival(y, groups.to_numpy())
    return {"curves": curves, "logrank_chisq": float(chisq), "logrank_p": float(p), "at_risk_times": at_times.tolist(),
            "at_risk": at_risk, "hazard_ratios": hazard_ratios(t_all, e_all, groups.to_numpy(),
                                                               preds["fold"].to_numpy() if "fold" in preds else None),
            "hazard_ratio_model": "Cox model stratified by fold" if "fold" in preds else "Cox model"}


def describe_cohort(preds: pd.DataFrame, coverage: dict[str, int] | None, task: str | None) -> list[tuple[str, str]]:
    """Rows of the cohort description: patients, events, follow-up, response, modality coverage."""
    from sksurv.nonparametric import kaplan_meier_estimator

    n = len(preds)
    rows = [("patients (in the reporting folds)", f"{n}")]
    if task != "response" and "time" in preds:
        t, e = preds["time"].to_numpy(float), preds["event"].to_numpy(bool)
        rows.append(("events", f"{int(e.sum())} ({100 * e.mean():.0f} %)"))
        # median follow-up by the reverse Kaplan–Meier method (censoring as the event)
        x, s = kaplan_meier_estimator(~e, t) if (~e).any() else (np.array([t.max()]), np.array([0.0]))
        below = np.nonzero(s <= 0.5)[0]
        med = f"{x[below[0]]:.0f}" if below.size else f"> {x[-1]:.0f}"
        rows.append(("median follow-up (reverse Kaplan–Meier)", med))
        rows.append(("follow-up range", f"{t.min():.0f}–{t.max():.0f}"))
    if task in ("response", "both") and "response" in preds and preds["response"].notna().any():
        r = preds["response"].dropna()
        rows.append(("patients with a recorded response", f"{len(r)}; responders {int((r > 0).sum())} "
                                                          f"({100 * (r > 0).mean():.0f} %)"))
    for m, k in (coverage or {}).items():
        rows.append((f"with {m}", f"{k} ({100 * k / max(n, 1):.0f} %)"))
    if coverage is None:
        rows.append(("modality coverage", "not available (the run's cohort could not be reopened)"))
    return rows


def _reopen(run: dict[str, Any]) -> Any:
    """The run's cohort, reopened from its manifest (None when the run did not use one or it is gone)."""
    data = (run.get("config") or {}).get("data") or {}
    manifest = data.get("manifest")
    if data.get("layout") != "manifest" or not manifest or not Path(manifest).is_file():
        return None
    from multimodal.cohorts.cohort import Cohort
    from multimodal.errors import MultimodalError

    try:
        return Cohort.from_manifest(manifest, outcomes="optional")
    except (MultimodalError, OSError):
        return None


def calibration_panels(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One panel per fold of our model: the fold's calibration horizon, its bins with counts, slope and ICI."""
    out = []
    for f in summary["methods"].get("multimodal", {}).get("folds", []):
        c = f.get("calibration")
        if isinstance(c, dict) and c.get("bins"):
            out.append({"fold": f.get("fold"), "horizon": c.get("horizon"), "slope": c.get("slope"), "ici": c.get("ici"),
                        "bins": c["bins"]})
    return out


def td_auc_curves(summary: dict[str, Any], methods: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per method: the td-AUC of each fold interpolated onto a common time grid (where every fold has values), its
    mean and the range over folds."""
    out = {}
    for name in methods:
        folds = [(np.asarray(f.get("td_auc_horizons") or [], float), np.asarray(f.get("td_auc_values") or [], float))
                 for f in summary["methods"][name]["folds"]]
        folds = [(h, v) for h, v in folds if len(h) >= 2 and len(h) == len(v)]
        if not folds:
            continue
        lo_t, hi_t = max(h.min() for h, _ in folds), min(h.max() for h, _ in folds)
        if hi_t <= lo_t:
            continue
        grid = np.linspace(lo_t, hi_t, 25)
        vals = np.stack([np.interp(grid, h[np.argsort(h)], v[np.argsort(h)]) for h, v in folds])
        out[name] = {"time": grid.tolist(), "mean": vals.mean(0).tolist(), "lower": vals.min(0).tolist(),
                     "upper": vals.max(0).tolist(), "n_folds": len(folds)}
    return out


def methods_table(summary: dict[str, Any]) -> dict[str, Any]:
    """Every method's metrics with their 95% CIs, and the paired difference (with CI) of our model's main metric
    against each baseline."""
    from multimodal.study import main_metric, method_ci

    methods = summary["methods"]
    keys = [k for k in (*SURVIVAL_METRICS, *RESPONSE_METRICS) if any(k in m.get("mean", {}) for m in methods.values())]
    comp = summary.get("comparison") or {}
    vs = comp.get("vs") or {}
    rows = []
    for name, m in methods.items():
        cells = {}
        for k in keys:
            v = m.get("mean", {}).get(k)
            ci = method_ci(m, k)
            cells[k] = {"mean": v, "ci": ci if ci and ci[0] is not None else None}
        d = vs.get(name)
        rows.append({"method": name, "cells": cells, "best_baseline": name == comp.get("best_baseline"),
                     "diff": d.get("diff") if d else None, "diff_ci": (d.get("ci95") if d else None)})
    families = [(fam, [k for k in ks if k in keys]) for fam, ks in (("survival", SURVIVAL_METRICS),
                                                                     ("response", RESPONSE_METRICS))]
    families = [(fam, ks) for fam, ks in families if ks]
    for row in rows:  # a method that reports none of a family's metrics gets no row in that family's table
        row["has"] = {fam: any(row["cells"][k]["mean"] is not None for k in ks) for fam, ks in families}
    return {"keys": keys, "families": families, "rows": rows,
            "metric": comp.get("metric") or main_metric(summary.get("task")),
            "best_baseline": comp.get("best_baseline")}


def response_section(preds: pd.DataFrame, arms: list[str]) -> dict[str, Any] | None:
    """ROC, binned calibration and per-arm figures of our model's response predictions (None without response)."""
    if "response" not in preds or "response_prob" not in preds:
        return None
    d = preds[preds["response"].notna() & preds["response_prob"].notna()]
    if d.empty or d["response"].nunique() < 2:
        return None
    from sklearn.metrics import roc_curve

    y, p = (d["response"].to_numpy(float) > 0).astype(int), d["response_prob"].to_numpy(float)
    fpr, tpr, _ = roc_curve(y, p)
    q = np.unique(np.quantile(p, np.linspace(0, 1, 6)))
    idx = np.clip(np.searchsorted(q, p, side="right") - 1, 0, max(len(q) - 2, 0))
    bins = [{"n": int((idx == b).sum()), "predicted": float(p[idx == b].mean()), "observed": float(y[idx == b].mean())}
            for b in range(max(len(q) - 1, 1)) if (idx == b).any()]
    per_arm = []
    arm_cols = [c for c in d.columns if c.startswith("response_prob_arm_")]
    if "treatment" in d.columns and arm_cols:
        for a, name in enumerate(arms):
            sel = d["treatment"] == a
            if sel.any() and f"response_prob_arm_{a}" in d:
                per_arm.append({"arm": name, "n": int(sel.sum()), "observed": float(y[sel.to_numpy()].mean()),
                                "predicted": float(d.loc[sel, f"response_prob_arm_{a}"].mean())})
    return {"roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()}, "calibration": bins, "per_arm": per_arm,
            "n": int(len(d)), "responders": int(y.sum())}


def compute_cohort_report(run_dir: Path) -> dict[str, Any]:
    from multimodal.study import comparison_text, main_metric, method_ci

    summary = json.loads((run_dir / "summary.json").read_text())
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    task = summary.get("task")
    data: dict[str, Any] = {"summary": summary, "task": task}
    data["main_metric"] = main_metric(task)
    data["main_ci"] = {name: method_ci(m, data["main_metric"]) or [None, None]
                       for name, m in summary["methods"].items()}
    data["comparison"] = comparison_text(summary.get("comparison"))
    data["methods_table"] = methods_table(summary)
    ours = preds[preds["method"] == "multimodal"].reset_index(drop=True)
    cohort = _reopen(run)
    coverage = None
    if cohort is not None and "patient_id" in ours:
        ids = set(ours["patient_id"].astype(str))
        coverage = {m: len(src.patients() & ids) for m, src in cohort.modalities.items()}
        if cohort.has_treatment() and "treatment" not in ours:
            ours["treatment"] = cohort.patients["treatment"].reindex(ours["patient_id"].astype(str)).to_numpy()
    data["description"] = describe_cohort(ours, coverage, task)
    if task != "response" and not ours.empty:
        data["km"] = km_by_group(ours)
    rows = []
    for name, m in summary["methods"].items():
        for f in m["folds"]:
            rows.append({"method": name, "fold": f["fold"], **{k: f.get(k) for k in m["mean"]}})
    data["fold_rows"] = rows
    data["calibration"] = calibration_panels(summary)
    shown = [n for n in summary["methods"] if n == "multimodal" or not n.startswith("multimodal_")]
    data["td_auc"] = td_auc_curves(summary, shown)
    arms = list(cohort.treatment_arms) if cohort is not None else []
    data["response"] = response_section(ours, arms) if task in ("response", "both") else None
    cfg = run.get("config")
    data["provenance"] = {
        "run_created": run.get("created"), "git_commit": run.get("git_commit"),
        "config_digest": hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]
        if cfg is not None else None,
        "report_date": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d"),
    }
    return data


def render_cohort_html(data: dict[str, Any]) -> str:
    unit = data["summary"].get("protocol", {}).get("time_unit", "")
    per_year = units_per_year(unit)
    fig = {
        "km": cohort_figures.km(data["km"], unit, per_year) if data.get("km") else None,
        "calibration": [cohort_figures.calibration(c, unit, per_year) for c in data.get("calibration", [])],
        "td_auc": cohort_figures.td_auc(data.get("td_auc", {}), unit, per_year),
        "response": cohort_figures.response(data["response"]) if data.get("response") else None,
    }
    env = Environment(loader=PackageLoader("multimodal.report", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template("cohort.html").render(d=data, s=data["summary"], fig=fig, unit=unit,
                                                  per_year=per_year)


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
