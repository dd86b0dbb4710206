"""The researcher-grade cohort report: cohort description, KM with bands / HR / at-risk, calibration at stated
horizons, td-AUC mean with band, every metric with a bounded CI and the paired difference, response, provenance."""

from __future__ import annotations

import json

import numpy as np

from multimodal.cli.main import main


def test_two_fold_intervals_are_bounded(cv_run):
    """With 2 folds a t-interval over folds runs far outside [0, 1]; every reported CI is a bounded bootstrap."""
    from multimodal.report.cohort import compute_cohort_report

    s = json.loads((cv_run / "summary.json").read_text())
    assert s["n_folds"] == 2
    data = compute_cohort_report(cv_run)
    for row in data["methods_table"]["rows"]:
        for k in ("c_index", "auroc", "td_auc"):
            ci = row["cells"].get(k, {}).get("ci")
            if ci is not None:
                assert 0.0 <= ci[0] <= ci[1] <= 1.0, (row["method"], k, ci)


def test_cohort_report_contents(cv_run, tmp_path):
    from multimodal.report.cohort import compute_cohort_report

    out = tmp_path / "cr"
    assert main(["cohort-report", str(cv_run), "--out", str(out), "--no-pdf"]) == 0
    html = (out / "cohort_report.html").read_text()
    data = compute_cohort_report(cv_run)
    desc = dict(data["description"])
    assert desc["patients (in the reporting folds)"] == "40" and "events" in desc
    assert "median follow-up (reverse Kaplan–Meier)" in desc and "with pathology" in desc
    km = data["km"]
    for c in km["curves"].values():
        lo, s, hi = (np.asarray(c[k]) for k in ("lower", "survival", "upper"))
        assert np.all(lo <= s + 1e-9) and np.all(s <= hi + 1e-9)
    assert set(km["hazard_ratios"]) <= {"intermediate", "high"} and km["hazard_ratios"]
    for hr in km["hazard_ratios"].values():
        assert 0 < hr["lower"] <= hr["hr"] <= hr["upper"]
    assert all(len(v) == len(km["at_risk_times"]) for v in km["at_risk"].values())
    assert all(p["horizon"] > 0 and sum(b["n"] for b in p["bins"]) > 0 for p in data["calibration"])
    for name, c in data["td_auc"].items():
        assert np.all(np.asarray(c["lower"]) <= np.asarray(c["mean"]) + 1e-9), name
    mt = data["methods_table"]
    assert mt["best_baseline"] and any(r["diff"] is not None and r["diff_ci"] for r in mt["rows"])
    for needle in ('id="description"', 'id="km"', "hazard ratio vs low", "numbers at risk", 'id="calibration"',
                   'id="td-auc"', "paired difference", 'id="response"', "commit", "config digest",
                   "(best baseline)"):
        assert needle in html, needle
    assert data["response"] is not None and data["response"]["per_arm"]


def test_hazard_ratios_are_stratified_by_fold():
    """Two folds with baseline hazards 10x apart, and more high-risk patients in the worse fold: the fold-stratified
    Cox model recovers the planted hazard ratio 2; pooling the folds confounds it with the fold."""
    from multimodal.report.cohort import hazard_ratios

    rng = np.random.default_rng(0)
    n = 4000
    fold = rng.integers(0, 2, n)
    high = rng.random(n) < np.where(fold == 1, 0.7, 0.3)
    rate = np.where(fold == 1, 1.0, 0.1) * np.where(high, 2.0, 1.0)
    t = rng.exponential(1 / rate)
    c = rng.exponential(10.0, n)
    time, event = np.minimum(t, c), t <= c
    groups = np.where(high, "high", "low")
    strat = hazard_ratios(time, event, groups, fold)["high"]
    pooled = hazard_ratios(time, event, groups)["high"]
    assert strat["lower"] < 2.0 < strat["upper"] and abs(np.log(strat["hr"] / 2.0)) < 0.1
    assert pooled["lower"] > strat["upper"]  # the folds' baselines leak into the unstratified estimate


def test_a_both_study_compares_the_response_with_the_response_baselines(cv_run):
    """task both: besides the c-index comparison, our response against the response baselines on AUROC (the
    survival baselines have none), in summary.json and summary.md."""
    import json

    summary = json.loads((cv_run / "summary.json").read_text())
    assert summary["task"] == "both" and summary["comparison"]["metric"] == "c_index"
    resp = summary["comparison_response"]
    assert resp["metric"] == "auroc" and resp["best_baseline"] == "logistic_clinical"
    assert set(resp["vs"]) == {"logistic_clinical"} and resp["diff"] is not None
    assert -1.0 <= resp["ci95"][0] <= resp["diff"] <= resp["ci95"][1] <= 1.0
    assert "Paired difference in auroc" in (cv_run / "summary.md").read_text()
