"""Deep-ensemble pipelines: training K members, checkpoints per member, saving / loading, reports."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multimodal.errors import IntegrityError
from multimodal.model import MultimodalEnsemble, MultimodalModel
from multimodal.pipeline import ENSEMBLE_PIPELINE_FORMAT, ModelConfig, Pipeline
from multimodal.training import TrainingConfig

MODEL = ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2)
TRAINING = TrainingConfig(epochs=2, batch_size=8, progress=False)


def _fit(small_cohort: Path, ensemble: int, out_dir: Path | None = None):
    from multimodal.experiment import load_cohort, load_experiment, make_adapters

    cfg = load_experiment(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml",
                          [f"data.manifest={small_cohort}", "adapters.pathology.max_patches=32"])
    c = load_cohort(cfg.data)
    ids = c.patient_ids
    from multimodal.explain.reference import attribution_reference

    pipe, fit = Pipeline.fit(c, ids[:30], val_ids=ids[30:], adapters=make_adapters(cfg),
                             model_config=replace(MODEL, ensemble=ensemble), training=TRAINING, task=cfg.task, seed=4,
                             out_dir=out_dir, attribution_reference=attribution_reference)
    return pipe, fit, c


@pytest.fixture(scope="module")
def ensemble_fit(small_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "ckpt"
    return (*_fit(small_cohort, 2, out), out)


def test_members_train_from_their_own_seeds_and_are_averaged(ensemble_fit, small_cohort):
    pipe, fit, c, _ = ensemble_fit
    assert isinstance(pipe.model, MultimodalEnsemble) and pipe.model.num_members == 2
    assert [e["seed"] for e in pipe.metadata["ensemble"]] == [4, 1004]
    assert [e["best_epoch"] for e in pipe.metadata["ensemble"]] == [r.best_epoch for r in fit.members]
    a, b = (dict(m.named_parameters()) for m in pipe.model.members)
    assert any(not np.allclose(a[k].detach(), b[k].detach()) for k in a)
    ids = c.patient_ids[30:]
    ens = pipe.predict(c, ids)
    members = [replace(pipe, model=m).predict(c, ids) for m in pipe.model.members]
    for col in ("risk", "response_prob_arm_0", "response_prob_arm_1", "surv_2"):
        np.testing.assert_allclose(ens[col], (members[0][col] + members[1][col]) / 2, rtol=1e-5, atol=1e-6)
    # member 0 is exactly the single model trained with the same seed: an ensemble of one changes nothing
    single, single_fit, _ = _fit(small_cohort, 1)
    assert isinstance(single.model, MultimodalModel) and single_fit.members == []
    assert "ensemble" not in single.metadata
    pd.testing.assert_frame_equal(single.predict(c, ids), members[0])


def test_each_member_checkpoints_and_resumes_from_its_own_folder(ensemble_fit, small_cohort):
    pipe, _, c, out = ensemble_fit
    assert (out / "best_model.safetensors").is_file() and (out / "member_1" / "best_model.safetensors").is_file()
    again, fit, _ = _fit(small_cohort, 2, out)  # every member's checkpoint says done: nothing is retrained
    assert all(r.resumed_from is not None for r in fit.members)
    ids = c.patient_ids[30:]
    pd.testing.assert_frame_equal(again.predict(c, ids), pipe.predict(c, ids))


def test_saved_ensemble_round_trips_and_rejects_a_tampered_member_count(ensemble_fit, tmp_path):
    pipe, _, c, _ = ensemble_fit
    from multimodal.report.model_card import write_model_card

    d = pipe.save_pretrained(tmp_path / "pipe", model_card=write_model_card)
    meta = json.loads((d / "pipeline.json").read_text())
    assert (meta["format"], meta["ensemble_members"]) == (ENSEMBLE_PIPELINE_FORMAT, 2)
    assert "Deep ensemble of 2 members" in (d / "MODEL_CARD.md").read_text()
    loaded = Pipeline.from_pretrained(d)
    assert isinstance(loaded.model, MultimodalEnsemble) and loaded.model.num_members == 2
    ids = c.patient_ids[30:]
    pd.testing.assert_frame_equal(loaded.predict(c, ids), pipe.predict(c, ids))
    for bad, match in ((3, "weights do not match"), ("two", "positive integer"), (0, "positive integer")):
        (d / "pipeline.json").write_text(json.dumps({**meta, "ensemble_members": bad}))
        with pytest.raises(IntegrityError, match=match):
            Pipeline.from_pretrained(d, verify=False)  # pipeline.json is not among the checksummed files


def test_ensemble_explanation_is_complete_and_reports_render(ensemble_fit, tmp_path):
    from multimodal.explain.risk import explain_patient

    pipe, _, c, _ = ensemble_fit
    pid = c.patient_ids[33]
    res = explain_patient(pipe, c, pid, n_steps=256, mc_samples=4)
    contrib = res.modality_contributions
    assert sum(contrib["values"].values()) == pytest.approx(contrib["f_all"] - contrib["f_none"], abs=1e-5)
    assert contrib["f_all"] == pytest.approx(res.risk_score, abs=1e-6)
    assert res.completeness["ig_relative_error"] < 0.01
    assert len(res.response) == 2 and all(0 <= r["lower"] <= r["upper"] <= 1 for r in res.response)
    assert res.model["ensemble_members"] == 2
    from multimodal.report.patient import render_html

    html = render_html(res)
    assert "(mean of 2 trained models)" in html


def test_ensemble_band_spans_the_members(ensemble_fit):
    """The MC band of an ensemble comes from each member's own dropout passes: it covers the members' predictions."""
    import torch

    from multimodal.data import PatientDataset, collate_patients
    from multimodal.explain.risk import _mc_predictions

    pipe, _, c, _ = ensemble_fit
    pipe.bind(c)
    batch = collate_patients([PatientDataset(c, pipe.adapters, [c.patient_ids[33]])[0]])
    outs = _mc_predictions(pipe.model, batch, samples=5, seed=0)
    assert len(outs) == 5 * 2
    draws = torch.stack([o.risk[0] for o in outs])
    with torch.no_grad():
        members = [float(m(batch).risk[0]) for m in pipe.model.members]
    assert draws.min() <= min(members) + 0.5 * abs(members[0] - members[1])
    assert draws.max() >= max(members) - 0.5 * abs(members[0] - members[1])
    assert all(not m.training for m in pipe.model.modules())  # dropout switched back off


def test_one_accelerator_for_every_member_is_refused_before_any_training(small_cohort):
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.training import make_accelerator

    cfg = load_experiment(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml",
                          [f"data.manifest={small_cohort}"])
    c = load_cohort(cfg.data)
    with pytest.raises(ValueError, match=r"accelerator= with model.ensemble=2 is not supported"):
        Pipeline.fit(c, c.patient_ids[:30], adapters=make_adapters(cfg), model_config=replace(MODEL, ensemble=2),
                     training=TRAINING, task=cfg.task, accelerator=make_accelerator(TRAINING))


def test_attribution_reference_is_stored_unless_the_pipeline_is_only_scored(ensemble_fit, small_cohort):
    from multimodal.experiment import load_cohort, load_experiment, make_adapters

    pipe = ensemble_fit[0]
    assert set(pipe.metadata["attribution_reference"]) == {"genomics"}  # the ensemble's own mean attributions
    cfg = load_experiment(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml",
                          [f"data.manifest={small_cohort}", "adapters.pathology.max_patches=32"])
    c = load_cohort(cfg.data)
    scored, _ = Pipeline.fit(c, c.patient_ids[:30], val_ids=c.patient_ids[30:], adapters=make_adapters(cfg),
                             model_config=MODEL, training=replace(TRAINING, epochs=1), task=cfg.task,
                             attribution_reference=False)
    assert "reference_risks" in scored.metadata and "attribution_reference" not in scored.metadata
