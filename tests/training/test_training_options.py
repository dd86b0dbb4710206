"""Training options: bf16 autocast, gradient accumulation, Cox head, bucketing sampler, batch > 1 with padding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from multimodal.data import BucketBatchSampler


def _fit(small_cohort, **training):
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.pipeline import ModelConfig, Pipeline
    from multimodal.training import TrainingConfig

    cfg = load_experiment(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml",
                          [f"data.manifest={small_cohort}", "adapters.pathology.max_patches=32"])
    c = load_cohort(cfg.data)
    ids = c.patient_ids
    model_kw = training.pop("model", {})
    pipe, fit = Pipeline.fit(c, ids[:30], val_ids=ids[30:], adapters=make_adapters(cfg),
                             model_config=ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, **model_kw),
                             training=TrainingConfig(**{"epochs": 2, "batch_size": 6, "progress": False, **training}),
                             task=cfg.task)
    return pipe, fit, c


@pytest.mark.parametrize("opts", [{"mixed_precision": "bf16"}, {"grad_accum": 2}, {"model": {"survival": "cox"}},
                                  {"select_metric": "loss"}])
def test_training_options_run_and_predict(small_cohort, opts):
    pipe, fit, c = _fit(small_cohort, **dict(opts))
    assert len(fit.history) == 2 and all(math.isfinite(h["train_loss"]) for h in fit.history)
    pred = pipe.predict(c, c.patient_ids[30:])
    assert np.isfinite(pred["risk"]).all() and len(pred) == 10


def test_bucket_sampler_groups_similar_sizes_and_is_deterministic():
    sizes = list(np.random.default_rng(0).integers(1, 1000, 64))
    s = BucketBatchSampler(sizes, 8, seed=1, bucket_factor=8)
    b1 = list(s)
    assert sorted(i for b in b1 for i in b) == list(range(64))
    assert b1 == list(BucketBatchSampler(sizes, 8, seed=1, bucket_factor=8))
    spread = np.mean([np.ptp([sizes[i] for i in b]) for b in b1])
    rnd = np.mean([np.ptp([sizes[i] for i in b]) for b in np.array_split(np.random.default_rng(2).permutation(64), 8)])
    assert spread < rnd / 3  # bucketing cuts padding
    s.set_epoch(1)
    assert list(s) != b1


def test_collated_batches_pad_with_masks(small_cohort):
    from multimodal.data import PatientDataset, collate_patients

    pipe, _, c = _fit(small_cohort, epochs=1)
    ds = PatientDataset(c, pipe.adapters, c.patient_ids[:5], train=False)
    b = collate_patients([ds[i] for i in range(5)])
    s = b.streams["pathology"]
    n_real = s.mask.sum(1)
    assert s.features.shape[1] == int(n_real.max())
    assert torch.all(s.features[~s.mask] == 0)
