"""Training options: bf16 autocast, gradient accumulation, Cox head, bucketing sampler, batch > 1 with padding."""

from __future__ import annotations

import json
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


VAL_LOSSES = [1.0, 2.0, 0.5, 3.0, 4.0, 5.0]  # a fixed selection signal per epoch: epoch 2 is the best


class _Stop(Exception):
    pass


def _averaging_run(small_cohort, monkeypatch, average: int, out: Path | None = None, stop_at: int = 0):
    """fit_model on the small cohort with the inner-validation loss replaced by VAL_LOSSES; returns (model, result,
    the weights at each epoch end)."""
    import multimodal.training as training
    from multimodal.data import PatientDataset
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.pipeline import ModelConfig, build_model

    cfg = load_experiment(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml",
                          [f"data.manifest={small_cohort}", "adapters.pathology.max_patches=32"])
    c = load_cohort(cfg.data)
    train, val = c.patient_ids[:30], c.patient_ids[30:]
    adapters = {m: a.fit(c, train) for m, a in make_adapters(cfg).items()}
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2), adapters, c, train, task=cfg.task)
    states: list[dict[str, torch.Tensor]] = []
    progress = out / "checkpoint" / "progress.json" if out is not None else None
    epoch = [json.loads(progress.read_text())["epoch"] if progress is not None and progress.is_file() else 0]

    def val_loss(net, ds, accelerator, *args):  # noqa: ANN001 - the real inner validation, its value replaced
        states.append({k: v.detach().clone() for k, v in accelerator.unwrap_model(net).state_dict().items()})
        epoch[0] += 1
        return VAL_LOSSES[epoch[0] - 1]

    def on_step(step: int) -> None:
        if stop_at and step == stop_at:
            raise _Stop

    monkeypatch.setattr(training, "_val_loss", val_loss)
    cfg_t = training.TrainingConfig(epochs=6, batch_size=8, patience=6, select_metric="loss", average_epochs=average,
                                    checkpoint_every=1 if out is not None else 0, progress=False)
    res = training.fit_model(model, PatientDataset(c, adapters, train, train=True), PatientDataset(c, adapters, val),
                             cfg_t, time_unit=c.time_unit, out_dir=out, on_step=on_step)
    return model, res, states


@pytest.mark.parametrize("average", [1, 3])
def test_weights_are_averaged_from_the_selected_epoch(small_cohort, monkeypatch, average):
    """average_epochs = n keeps the mean of the weights after the selected epoch and the next n − 1 epochs."""
    model, res, states = _averaging_run(small_cohort, monkeypatch, average)
    assert res.best_epoch == 2 and res.averaged_epochs == average and len(states) == 6
    final = model.state_dict()
    window = states[2: 2 + average]
    for k, v in final.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, torch.stack([s[k] for s in window]).mean(0), msg=k)
    assert any(not torch.equal(states[2][k], states[4][k]) for k in final)  # the epochs' weights differ


def test_weight_average_resumes_exactly_after_an_interruption(small_cohort, monkeypatch, tmp_path):
    ref, _, _ = _averaging_run(small_cohort, monkeypatch, 3)
    with pytest.raises(_Stop):  # 4 optimizer steps per epoch: step 18 is inside epoch 4, while averaging
        _averaging_run(small_cohort, monkeypatch, 3, tmp_path / "run", stop_at=18)
    assert json.loads((tmp_path / "run" / "checkpoint" / "progress.json").read_text())["averaged"] == 2
    model, res, _ = _averaging_run(small_cohort, monkeypatch, 3, tmp_path / "run")
    assert res.resumed_from is not None and (res.best_epoch, res.averaged_epochs) == (2, 3)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)


def test_loader_workers_see_each_epochs_patch_sample(small_cohort):
    """With worker processes the loader must still follow ``set_epoch`` (a persistent worker would keep epoch 0's
    patch sample for ever): the batches equal the in-process loader's, epoch by epoch, and differ between epochs."""
    from multimodal.data import PatientDataset
    from multimodal.training import TrainingConfig, _loader

    pipe, _, c = _fit(small_cohort, epochs=1)
    ds = PatientDataset(c, pipe.adapters, c.patient_ids[:6], train=True)

    def patches(workers: int) -> list[torch.Tensor]:
        loader, sampler = _loader(ds, 6, shuffle=False, seed=0, cfg=TrainingConfig(num_workers=workers),
                                  num_classes=2, time_unit=c.time_unit)
        out = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            ds.set_epoch(epoch)
            out.append(torch.cat([b.streams["pathology"].features.flatten() for b in loader]))
        return out

    in_process, workers = patches(0), patches(1)
    assert not torch.equal(in_process[0], in_process[1])  # max_patches=32 of larger bags: a new sample each epoch
    for a, b in zip(in_process, workers, strict=True):
        assert torch.equal(a, b)
