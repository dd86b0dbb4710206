"""Honest intervals: every 95 % CI of a study is a bootstrap over patients within folds, bounded to the metric's range,
and our model is compared with the baselines by a paired bootstrap difference (same resamples for both methods)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multimodal.metrics import auroc, harrell_c
from multimodal.study import _grid
from multimodal.study_intervals import (
    IBS_SURV_PREFIX,
    IPCW_BOOTSTRAP,
    METRIC_RANGES,
    FoldBootstrap,
    FoldContext,
    _fold_bootstrap,
    compare_methods,
    paired_difference,
)
from multimodal.study_summary import summary_markdown

REPO = Path(__file__).resolve().parents[2]


def _survival_preds(n: int = 120, folds: int = 2, seed: int = 0) -> tuple[pd.DataFrame, dict[int, FoldContext]]:
    """Hand-made study predictions: ``signal`` is a noisy copy of the true risk, ``noise`` is pure noise; with the folds'
    training contexts and ``S(t | x)`` on each fold's IBS grid."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t_ev, t_cens = rng.exponential(1 / np.exp(x)), rng.exponential(2.0, n)
    time, event = np.minimum(t_ev, t_cens), t_ev <= t_cens
    fold = np.arange(n) % folds
    contexts = {}
    for f in range(folds):
        tr, te = fold != f, fold == f
        grid = _grid(time[tr], time[te], event[te])
        contexts[f] = FoldContext(time[tr], event[tr], grid=grid.tolist())
    frames = []
    for name, risk in (("signal", x + rng.normal(0, 0.5, n)), ("noise", rng.normal(size=n))):
        p = pd.DataFrame({"fold": fold, "method": name, "patient_id": [f"p{i}" for i in range(n)], "time": time,
                          "event": event, "risk": risk})
        for f in range(folds):
            sel = fold == f
            surv = np.exp(-np.outer(np.exp(risk[sel]), contexts[f].grid))
            for j in range(surv.shape[1]):
                p.loc[sel, f"{IBS_SURV_PREFIX}{j}"] = surv[:, j]
        frames.append(p.sample(frac=1.0, random_state=int(seed)))  # row order must not matter: rows are matched by id
    return pd.concat(frames, ignore_index=True), contexts


def test_fold_bootstrap_matches_a_hand_computed_bootstrap():
    preds, _ = _survival_preds(n=60)
    sub = preds[preds["method"] == "signal"]
    ci = _fold_bootstrap(sub, "c_index", 50, 7, task="survival")
    # by hand: the fold's patients sorted by id, drawn with replacement per fold, fold c-indices averaged
    rng = np.random.default_rng(7)
    per_fold = []
    for _, g in sub.groupby("fold"):
        g = g.set_index("patient_id").loc[sorted(g["patient_id"])]
        idx = rng.integers(0, len(g), (50, len(g)))
        per_fold.append([harrell_c(g["time"].to_numpy()[i], g["event"].to_numpy()[i], g["risk"].to_numpy()[i])
                         for i in idx])
    expected = np.quantile(np.mean(per_fold, axis=0), [0.025, 0.975])
    assert ci == pytest.approx(expected.tolist(), abs=1e-12)


def test_fold_bootstrap_covers_every_metric_and_stays_in_range():
    preds, contexts = _survival_preds()
    sub = preds[preds["method"] == "signal"]
    boot = FoldBootstrap(sub, 40, 0, task="survival")
    for key in ("c_index", "c_index_uno", "td_auc", "ibs"):
        lo, hi = boot.ci(sub, key, contexts)
        assert lo is not None and 0.0 <= lo <= hi <= 1.0, key
    assert boot.values(sub, "c_index").shape == (40, 2)
    assert FoldBootstrap(sub, 80, 0).values(sub, "td_auc", contexts).shape == (min(80, IPCW_BOOTSTRAP), 2)
    assert boot.ci(sub, "ibs") == [None, None]  # the IPCW metrics need the training fold
    assert boot.ci(sub, "calibration_slope") == [None, None]  # no calibration columns in these predictions
    # perfect risks: every resample has c-index 1, and the interval is exactly [1, 1] (never above the range)
    perfect = sub.assign(risk=-sub["time"], event=True)
    assert _fold_bootstrap(perfect, "c_index", 30, 0) == [1.0, 1.0]
    # response: AUROC of hand-made probabilities, patients with an unknown response left out
    rng = np.random.default_rng(1)
    y = (rng.random(80) < 0.4).astype(float)
    resp = pd.DataFrame({"fold": np.arange(80) % 2, "patient_id": [f"r{i}" for i in range(80)], "response": y,
                         "response_prob": np.clip(0.3 * y + rng.random(80) * 0.7, 0, 1)})
    resp.loc[:5, "response"] = np.nan
    for key in ("auroc", "auprc", "brier", "ici"):
        lo, hi = _fold_bootstrap(resp, key, 40, 0, task="response")
        assert lo is not None and 0.0 <= lo <= hi <= 1.0, key
    lo, hi = _fold_bootstrap(resp, "auroc", 40, 0, task="response")
    known = resp.dropna()
    point = np.mean([auroc(g["response"], g["response_prob"]) for _, g in known.groupby("fold")])
    assert lo < point < hi


def test_paired_difference_of_a_method_with_itself_is_zero():
    preds, contexts = _survival_preds()
    boot = FoldBootstrap(preds, 40, 3, task="survival")
    for key in ("c_index", "ibs"):
        d = paired_difference(preds, "noise", "noise", key, boot, contexts={"noise": contexts})
        assert d == {"diff": 0.0, "ci95": [0.0, 0.0]}, key


def test_paired_difference_finds_signal_better_than_noise():
    preds, contexts = _survival_preds(n=200)
    boot = FoldBootstrap(preds, 100, 0, task="survival")
    d = paired_difference(preds, "signal", "noise", "c_index", boot)
    assert d["diff"] > 0 and 0 < d["ci95"][0] <= d["diff"] <= d["ci95"][1]
    means = {"multimodal": {"c_index": 0.7}, "noise": {"c_index": 0.5}, "multimodal_ehr": {"c_index": 0.9}}
    ours = pd.concat([preds, preds[preds["method"] == "signal"].assign(method="multimodal")], ignore_index=True)
    cmp = compare_methods(ours, means, FoldBootstrap(ours, 100, 0, task="survival"))
    # the ablation is ours, not a baseline; the single baseline is the best one
    assert cmp["best_baseline"] == "noise" and set(cmp["vs"]) == {"noise"} and cmp["metric"] == "c_index"
    assert cmp["diff"] == pytest.approx(d["diff"]) and cmp["ci95"][0] > 0
    assert compare_methods(ours, {"multimodal": {"c_index": 0.7}}, boot) is None  # no baseline


def test_summary_markdown_shows_cis_and_the_comparison():
    summary = {"cohort": "demo", "task": "survival", "n_folds": 2, "protocol": {"intervals": "bootstrap"},
               "methods": {"multimodal": {"mean": {"c_index": 0.7, "td_auc": 0.72},
                                          "ci95": {"c_index": [0.6, 0.8], "td_auc": [0.61, 0.83]}},
                           "coxnet": {"mean": {"c_index": 0.65}, "ci95": {"c_index": [0.55, 0.75]}}},
               "comparison": {"metric": "c_index", "method": "multimodal", "best_baseline": "coxnet", "diff": 0.05,
                              "ci95": [-0.02, 0.11], "vs": {"coxnet": {"diff": 0.05, "ci95": [-0.02, 0.11]},
                                                             "rsf": {"diff": 0.1, "ci95": [0.01, 0.2]}}}}
    md = summary_markdown(summary)
    row = next(line for line in md.splitlines() if line.startswith("| multimodal |"))
    assert "0.720 (0.610–0.830)" in row and row.endswith("| 0.600–0.800 |")
    line = next(line for line in md.splitlines() if line.startswith("Paired difference"))
    assert "multimodal − coxnet" in line and "+0.050 (95% CI [-0.020, +0.110])" in line and "rsf +0.100" in line


def test_model_card_does_not_repeat_the_bootstrap_alias():
    from multimodal.report.model_card import performance_lines

    lines = performance_lines({"c_index (mean over folds)": 0.61, "c_index 95% CI": [0.55, 0.67],
                               "c_index_bootstrap 95% CI": [0.55, 0.67]})
    assert lines == ["- c_index (mean over folds) with 95% CI: 0.610 (0.550–0.670)"]


# ---- a tiny 2-fold study ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> Path:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.experiment import load_experiment
    from multimodal.study import Study

    base = tmp_path_factory.mktemp("intervals")
    manifest = generate_synthetic_cohort(base / "cohort", SyntheticConfig(
        patients=40, seed=3, patches_per_slide=60, embed_dim=16, n_genes=80, n_pathways=8))
    sets = [f"data.manifest={manifest}", "evaluation.folds=2", "evaluation.ablations=false",
            "evaluation.baselines=[coxph_clinical, coxnet]", "evaluation.bootstrap=20", "model.ensemble=1",
            "training.average_epochs=1", "training.epochs=1", "training.batch_size=8", "training.progress=false",
            "model.d_model=32", "model.num_latents=4", "model.depth=1", "adapters.pathology.max_patches=32"]
    run = base / "run"
    Study(load_experiment(REPO / "configs" / "demo.yaml", sets)).run(run)
    return run


def test_tiny_study_intervals_are_bootstraps_within_range(tiny_study):
    s = json.loads((tiny_study / "summary.json").read_text())
    # a survival + response study runs each survival baseline's response counterpart too (scored on response only)
    response_baselines = {"logistic_clinical", "enet_logistic"}
    assert s["task"] == "both"
    assert set(s["methods"]) == {"multimodal", "coxph_clinical", "coxnet", *response_baselines}
    assert "percentile bootstraps over patients" in s["protocol"]["intervals"]
    for name, m in s["methods"].items():
        keys = ("auroc",) if name in response_baselines else ("c_index", "td_auc", "ibs",
                                                                *(("auroc",) if name == "multimodal" else ()))
        for key in keys:
            lo, hi = m["ci95"][key]
            assert lo is not None and 0.0 <= lo <= hi <= 1.0, (name, key)
        for key, ci in m["ci95"].items():  # every interval within its metric's range
            rng = METRIC_RANGES.get(key.removesuffix("_bootstrap"), (-np.inf, np.inf))
            assert ci[0] is None or rng[0] <= ci[0] <= ci[1] <= rng[1], (name, key)
        if name not in response_baselines:
            assert m["ci95"]["c_index_bootstrap"] == m["ci95"]["c_index"]  # the old name is an alias
    cmp = s["comparison"]
    assert cmp["method"] == "multimodal" and cmp["metric"] == "c_index"
    means = {n: s["methods"][n]["mean"]["c_index"] for n in ("coxph_clinical", "coxnet")}
    assert cmp["best_baseline"] == max(means, key=means.get) and set(cmp["vs"]) == set(means)
    assert cmp["diff"] == pytest.approx(s["methods"]["multimodal"]["mean"]["c_index"] - means[cmp["best_baseline"]])
    assert cmp["ci95"][0] <= cmp["ci95"][1]
    assert any(line.startswith("Paired difference in c_index") for line in (tiny_study / "summary.md").read_text()
               .splitlines())
    # on the study's own predictions: a method against itself differs by exactly 0
    preds = pd.read_parquet(tiny_study / "predictions.parquet")
    survival_rows = ~preds["method"].isin(response_baselines)  # S(t | x) on the IBS grid, for the bootstrap
    assert preds.loc[survival_rows].filter(like=IBS_SURV_PREFIX).notna().all(axis=None)
    assert preds.loc[~survival_rows].filter(like=IBS_SURV_PREFIX).isna().all(axis=None)
    d = paired_difference(preds, "coxnet", "coxnet", "c_index", FoldBootstrap(preds, 20, 0, task="both"))
    assert d == {"diff": 0.0, "ci95": [0.0, 0.0]}


def test_cohort_report_shows_the_bootstrap_ci_and_the_comparison(tiny_study):
    from multimodal.report.cohort import compute_cohort_report, render_cohort_html

    data = compute_cohort_report(tiny_study)
    s = data["summary"]
    assert data["main_metric"] == "c_index" and data["main_ci"]["coxnet"] == s["methods"]["coxnet"]["ci95"]["c_index"]
    html = render_cohort_html(data)
    assert "95% CI (c_index, bootstrap)" in html and 'id="comparison"' in html
    assert f"multimodal − {s['comparison']['best_baseline']}" in html
