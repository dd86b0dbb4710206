"""``task: both``: the study runs the response baselines next to the survival ones, scored on the response."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal.baselines import RESPONSE_COUNTERPARTS, baseline_task, study_baselines

REPO = Path(__file__).resolve().parents[2]


def test_study_baselines_add_the_response_counterparts():
    names = ("coxph_clinical", "coxnet", "rsf", "gbsa", "attention_mil")
    assert study_baselines(names, "survival") == list(names)
    both = study_baselines(names, "both")
    assert both == [*names, "logistic_clinical", "enet_logistic", "random_forest", "gradient_boosting"]
    assert study_baselines(("coxnet", "enet_logistic"), "both") == ["coxnet", "enet_logistic"]  # named once
    assert baseline_task("logistic_clinical", "both") == "response"
    assert baseline_task("attention_mil", "both") == "survival"
    assert baseline_task("coxnet", "response") == "response"
    assert set(RESPONSE_COUNTERPARTS.values()) <= set(study_baselines(names, "both"))


@pytest.fixture(scope="module")
def both_study(tmp_path_factory):
    from multimodal.cohorts import Cohort
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.experiment import load_experiment
    from multimodal.study import Study

    manifest = generate_synthetic_cohort(tmp_path_factory.mktemp("both") / "c", SyntheticConfig(
        patients=60, seed=3, patches_per_slide=20, embed_dim=8, n_genes=40, n_pathways=4))
    cohort = Cohort.from_manifest(manifest)
    cfg = load_experiment(REPO / "configs" / "demo.yaml", [
        "task=both", "evaluation.folds=3", "evaluation.bootstrap=0", "evaluation.baselines=[coxph_clinical]"])
    return Study(cfg, cohort=cohort)


def test_both_study_fits_and_scores_the_response_baseline(both_study):
    st = both_study
    names = [n for n, _ in st.methods()]
    assert "coxph_clinical" in names and "logistic_clinical" in names
    fold = st.folds()[0]
    surv = st._fit_baseline("coxph_clinical", fold)
    resp = st._fit_baseline("logistic_clinical", fold)
    assert "risk" in surv.predictions.columns and "response_prob" not in surv.predictions.columns
    assert "risk" not in resp.predictions.columns  # a response probability is not a survival risk
    prob = resp.predictions["response_prob"].to_numpy(float)
    assert np.isfinite(prob).all() and ((prob >= 0) & (prob <= 1)).all()
    m = st._score(resp, fold)
    assert 0.0 <= m["auroc"] <= 1.0 and "c_index" not in m and "response_calibration_slope" in m
    ms = st._score(surv, fold)
    assert 0.0 <= ms["c_index"] <= 1.0 and "auroc" not in ms
