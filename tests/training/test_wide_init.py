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
def cohort_and_adapters(start_cohort):
    from multimodal.experiment import make_adapters

    c, cfg = start_cohort
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


def test_the_fitted_start_is_a_candidate_of_the_selection_rule(cohort_and_adapters):
    """With lr=0 no epoch can beat the start (ties -> the earlier): the selected model is the start, epoch -1; with a
    training rate the start is still scored and recorded first, so training must beat it on inner validation."""
    c, adapters, ids = cohort_and_adapters
    from multimodal.experiment import load_experiment, make_adapters

    cfg = load_experiment(REPO / "configs" / "demo.yaml", [f"data.manifest={c.manifest_path}",
                                                           "adapters.pathology.max_patches=16"])
    mcfg = ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, wide=True, wide_init="cox")
    frozen, fit = Pipeline.fit(c, ids[:100], val_ids=ids[100:], adapters=make_adapters(cfg), model_config=mcfg,
                               training=TrainingConfig(epochs=2, batch_size=16, lr=0.0, progress=False),
                               task="survival", seed=1, attribution_reference=False)
    assert fit.best_epoch == -1 and frozen.metadata["best_epoch"] == -1
    assert fit.history[0]["epoch"] == -1 and np.isfinite(fit.history[0]["val_score"])
    assert [h["epoch"] for h in fit.history] == [-1, 0, 1]
    # the start kept: the deep part's last layer is still exactly zero
    last = [m for m in frozen.model.survival_head.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert float(last.weight.detach().abs().sum()) == 0.0

    _, plain = Pipeline.fit(c, ids[:100], val_ids=ids[100:], adapters=make_adapters(cfg),
                            model_config=ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, wide=True),
                            training=TrainingConfig(epochs=2, batch_size=16, lr=0.0, progress=False),
                            task="survival", seed=1, attribution_reference=False)
    assert plain.best_epoch == 0 and plain.history[0]["epoch"] == 0  # no fitted start: no epoch -1


def test_the_start_is_a_complete_survival_model_with_fitted_baseline_hazards(cohort_and_adapters):
    """The per-bin baseline logits minimize the head's own loss with the linear term as offset: any perturbation of
    them, and the all-zero baseline, give a higher loss on the patients they were fitted on."""
    from multimodal.model.losses import discrete_time_nll, discretize_times
    from multimodal.wide_init import _design, fit_start_baseline

    c, adapters, ids = cohort_and_adapters
    model = build_model(ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, wide=True, num_bins=4), adapters,
                        c, ids, task="survival")
    theta = fit_wide_cox(model, c, adapters, ids, seed=0)
    base = fit_start_baseline(model, c, adapters, ids, theta)
    assert base is not None and base.shape == model.survival_head.baseline.shape and torch.isfinite(base).all()
    offset = torch.from_numpy(_design(model, c, adapters, ids, 16) @ theta.double().numpy()).float()
    t, e = c.survival_arrays(ids)
    head = model.survival_head
    bins = discretize_times(torch.as_tensor(t, dtype=torch.float32), head.edges)
    ev = torch.as_tensor(e, dtype=torch.bool)

    def loss(b: torch.Tensor) -> float:
        return float(discrete_time_nll(b.unsqueeze(0) + offset.unsqueeze(1), bins, ev, alpha=head.alpha))

    best = loss(base)
    assert best < loss(torch.zeros_like(base)) - 1e-3
    for k in range(base.numel()):
        for d in (-0.2, 0.2):
            bumped = base.clone()
            bumped[k] += d
            assert loss(bumped) > best
    start_from_wide(model, theta, base)
    torch.testing.assert_close(model.survival_head.baseline.detach(), base)
    # a Cox head has no baseline to fit
    cox = build_model(ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, wide=True, survival="cox"), adapters,
                      c, ids, task="survival")
    assert fit_start_baseline(cox, c, adapters, ids, theta) is None


def test_the_trunk_trains_against_cross_fitted_linear_terms(cohort_and_adapters):
    """Each training patient's offset comes from a fit without that patient: it differs from the full fit's term, is
    less optimistic on the patients it scores (lower in-sample c-index than the full fit), and replaces the wide path
    in training only."""
    from multimodal.data import PatientDataset, collate_patients
    from multimodal.wide_init import _design, cross_fitted_offsets

    c, adapters, ids = cohort_and_adapters
    model = build_model(ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, wide=True), adapters, c, ids,
                        task="survival")
    theta = fit_wide_cox(model, c, adapters, ids, seed=0)
    offsets = cross_fitted_offsets(model, c, adapters, ids, seed=0)
    assert sorted(offsets) == sorted(ids) and all(np.isfinite(v) for v in offsets.values())
    full = _design(model, c, adapters, ids, 16) @ theta.double().numpy()
    oof = np.array([offsets[p] for p in ids])
    t, e = c.survival_arrays(ids)
    assert not np.allclose(oof, full)
    assert harrell_c(t, e, oof) < harrell_c(t, e, full)
    assert cross_fitted_offsets(model, c, adapters, ids, seed=0) == offsets  # seeded

    start_from_wide(model, theta)
    ds = PatientDataset(c, adapters, ids[:8], train=True, offsets=offsets)
    batch = collate_patients([ds[i] for i in range(8)], time_unit=c.time_unit)
    torch.testing.assert_close(batch.offset, torch.tensor(oof[:8], dtype=torch.float32))
    with torch.no_grad():
        model.survival_head.baseline.zero_()
        model.train()
        torch.testing.assert_close(model(batch).risk, batch.offset)
        model.eval()  # in evaluation the offset is ignored: the wide path's full fit scores (all patches read)
        scoring = PatientDataset(c, adapters, ids[:8], train=False, offsets=offsets)
        eval_batch = collate_patients([scoring[i] for i in range(8)], time_unit=c.time_unit)
        assert eval_batch.offset is not None
        torch.testing.assert_close(model(eval_batch).risk.double(), torch.tensor(full[:8]), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="no offset"):
        PatientDataset(c, adapters, ids[:8], train=True, offsets={ids[0]: 0.0})
