"""Stacking inside the model (model.wide_init: cox): the wide path starts as an elastic-net Cox fit, then is frozen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal.metrics import harrell_c
from multimodal.model.wide import flat_weights
from multimodal.pipeline import ModelConfig, Pipeline, build_model
from multimodal.training import TrainingConfig
from multimodal.wide_init import fit_wide_cox, start_from_wide

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort_and_adapters(tmp_path_factory: pytest.TempPathFactory):
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.experiment import load_cohort, load_experiment, make_adapters

    out = tmp_path_factory.mktemp("wide_init") / "syn"
    manifest = generate_synthetic_cohort(out, SyntheticConfig(patients=160, seed=4, patches_per_slide=40, embed_dim=16,
                                                              n_genes=60, n_pathways=6))
    cfg = load_experiment(REPO / "configs" / "demo.yaml", [f"data.manifest={manifest}", "adapters.pathology.max_patches=16"])
    c = load_cohort(cfg.data)
    ids = c.patient_ids[:120]
    adapters = {m: a.fit(c, ids) for m, a in make_adapters(cfg).items()}
    return c, adapters, ids


def test_the_model_starts_as_the_fitted_linear_model(cohort_and_adapters):
    c, adapters, ids = cohort_and_adapters
    model = build_model(ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, wide=True), adapters, c, ids,
                        task="survival")
    theta = fit_wide_cox(model, c, adapters, ids, seed=0)
    assert torch.isfinite(theta).all() and theta.abs().sum() > 0
    start_from_wide(model, theta)
    torch.testing.assert_close(flat_weights(model.wide), theta)
    assert not any(p.requires_grad for p in model.wide.parameters())
    pipe = Pipeline(adapters, model.eval(), {"time_unit": c.time_unit})
    pred = pipe.predict(c, ids)
    t, e = c.survival_arrays(ids)
    # the deep part is exactly zero at the start: the risk is the linear model's, which fits its own training data
    assert harrell_c(t, e, pred["risk"].to_numpy(float)) > 0.7
    with torch.no_grad():
        model.wide.parts["genomics"].w.zero_()
    assert not np.allclose(pipe.predict(c, ids)["risk"].to_numpy(float), pred["risk"].to_numpy(float))


def test_pipeline_fit_shares_one_linear_fit_across_members_and_keeps_it_frozen(cohort_and_adapters):
    c, adapters, ids = cohort_and_adapters
    from multimodal.experiment import load_experiment, make_adapters

    cfg = load_experiment(REPO / "configs" / "demo.yaml", [f"data.manifest={c.manifest_path}",
                                                           "adapters.pathology.max_patches=16"])
    mcfg = ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, wide=True, wide_init="cox", ensemble=2)
    pipe, _ = Pipeline.fit(c, ids[:100], val_ids=ids[100:], adapters=make_adapters(cfg), model_config=mcfg,
                           training=TrainingConfig(epochs=2, batch_size=16, progress=False), task="survival", seed=1,
                           attribution_reference=False)
    a, b = (flat_weights(m.wide) for m in pipe.model.members)
    torch.testing.assert_close(a, b)
    assert a.abs().sum() > 0


def test_wide_init_needs_the_wide_path() -> None:
    from multimodal.api import check_experiment
    from multimodal.errors import ConfigError
    from multimodal.experiment import load_experiment

    cfg = load_experiment(REPO / "configs" / "demo.yaml", ["model.wide=false", "model.wide_init=cox"])
    with pytest.raises(ConfigError, match="wide_init"):
        check_experiment(cfg)
