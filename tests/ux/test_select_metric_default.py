"""``training.select_metric`` defaults to a response metric (AUROC) for ``task: response``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from multimodal.training import TrainingConfig, selection_metric

REPO = Path(__file__).resolve().parents[2]


def test_auto_resolves_by_task():
    assert TrainingConfig().select_metric == "auto"
    assert selection_metric("auto", "response") == "auroc"
    assert selection_metric("auto", "survival") == "c_index"
    assert selection_metric("auto", "both") == "c_index"
    assert selection_metric("loss", "response") == "loss"


def test_response_model_selects_epochs_on_inner_validation_auroc(tmp_path):
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.pipeline import ModelConfig, Pipeline

    manifest = generate_synthetic_cohort(tmp_path / "c", SyntheticConfig(
        patients=80, seed=1, patches_per_slide=20, embed_dim=8, n_genes=40, n_pathways=4))
    cfg = load_experiment(REPO / "configs" / "demo.yaml", [f"data.manifest={manifest}"])
    c = load_cohort(cfg.data)
    known = [p for p in c.patient_ids if not np.isnan(float(c.patients.loc[p, "response"]))]
    train, val = known[:-30], known[-30:]
    pipe, fit = Pipeline.fit(c, train, val_ids=val, adapters=make_adapters(cfg, ["clinical"]),
                             model_config=ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2),
                             training=TrainingConfig(epochs=1, batch_size=16, progress=False, recalibrate=False),
                             task="response", seed=0, attribution_reference=False)
    y = c.patients.loc[val, "response"].astype(int).to_numpy()
    prob = pipe.predict(c, val)["response_prob"].to_numpy(float)
    assert fit.history[0]["val_score"] == pytest.approx(roc_auc_score(y, prob), abs=1e-6)
