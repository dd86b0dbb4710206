"""Recalibration on the inner-validation patients (pipeline.json, predict, old pipelines) and calibration in cv
summaries."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TRAIN_OVERRIDES
from scipy.stats import rankdata

from multimodal.errors import IntegrityError
from multimodal.pipeline import ModelConfig, Pipeline, apply_recalibration, write_pipeline_json
from multimodal.training import TrainingConfig

REPO = Path(__file__).resolve().parents[2]
MODEL = ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2)
TRAINING = TrainingConfig(epochs=2, batch_size=16, progress=False)
N_VAL = 40


@pytest.fixture(scope="module")
def cohort_120(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    out = tmp_path_factory.mktemp("cohort120") / "syn"
    # one slide per patient: with several, a 16-patch training sample can leave a slide with none, which the
    # neighbour-context patch stream (adapters/pathology.py, _context_stream) does not handle yet
    return generate_synthetic_cohort(out, SyntheticConfig(patients=120, seed=5, patches_per_slide=40, embed_dim=16,
                                                          n_genes=60, n_pathways=6, slides_per_patient=(1, 1)))


def _fit(manifest: Path, training: TrainingConfig = TRAINING, *, val: bool = True):
    from multimodal.experiment import load_cohort, load_experiment, make_adapters

    cfg = load_experiment(REPO / "configs" / "demo.yaml",
                          [f"data.manifest={manifest}", "adapters.pathology.max_patches=16"])
    c = load_cohort(cfg.data)
    ids = c.patient_ids
    pipe, _ = Pipeline.fit(c, ids[:-N_VAL], val_ids=ids[-N_VAL:] if val else None, adapters=make_adapters(cfg),
                           model_config=MODEL, training=training, task="both", seed=2, attribution_reference=False)
    return pipe, c


@pytest.fixture(scope="module")
def fitted(cohort_120):
    return _fit(cohort_120)


def _raw(pipe: Pipeline, c, ids) -> pd.DataFrame:
    """The model's predictions without recalibration (a pipeline saved before recalibration existed)."""
    meta = {k: v for k, v in pipe.metadata.items() if k != "recalibration"}
    return replace(pipe, metadata=meta).predict(c, ids)


def test_maps_are_fitted_on_the_inner_validation_and_recorded(fitted):
    pipe, _ = fitted
    rec = pipe.metadata["recalibration"]
    assert rec["fitted_on"] == "inner validation" and rec["n_val"] == N_VAL
    assert rec["response"]["slope"] > 0 and np.isfinite(rec["response"]["intercept"])
    surv = rec["survival"]
    assert surv["slope"] > 0 and np.isfinite(surv["intercepts"]).all() and surv["n"] == N_VAL
    assert len(surv["intercepts"]) == len(surv["bin_ends"]) == len(pipe.model.config.bin_edges) + 1
    assert surv["reference_time"] in surv["bin_ends"]
    json.dumps(rec)  # goes into pipeline.json as it is


def test_predict_applies_the_maps_and_keeps_every_ranking(fitted):
    pipe, c = fitted
    ids = c.patient_ids
    cal, raw = pipe.predict(c, ids), _raw(pipe, c, ids)
    pd.testing.assert_frame_equal(cal, apply_recalibration(raw, pipe.metadata["recalibration"]))
    for col in ("risk", "risk_arm_0", "risk_arm_1"):
        pd.testing.assert_series_equal(cal[col], raw[col])
    prob_cols = ["response_prob", "response_prob_arm_0", "response_prob_arm_1"]
    surv_cols = sorted((k for k in cal.columns if k.startswith("surv_")), key=lambda k: int(k[5:]))
    assert not np.allclose(cal[prob_cols], raw[prob_cols]) and not np.allclose(cal[surv_cols], raw[surv_cols])
    for col in prob_cols + surv_cols:  # monotone maps: the same order (AUROC / c-index unchanged)
        np.testing.assert_array_equal(rankdata(cal[col]), rankdata(raw[col]))
    s = cal[surv_cols].to_numpy(float)
    assert np.all((s >= 0) & (s <= 1)) and np.all(np.diff(s, axis=1) <= 0)
    assert cal[prob_cols].to_numpy().min() >= 0 and cal[prob_cols].to_numpy().max() <= 1


def test_saved_maps_round_trip_and_old_pipelines_still_load(fitted, tmp_path):
    from multimodal.api import load_pipeline

    pipe, c = fitted
    ids = c.patient_ids[:10]
    d = pipe.save_pretrained(tmp_path / "pipe")
    loaded = load_pipeline(d)
    assert loaded.metadata["recalibration"] == pipe.metadata["recalibration"]
    pd.testing.assert_frame_equal(loaded.predict(c, ids), pipe.predict(c, ids))
    # a pipeline written before recalibration existed: no key, raw predictions
    meta = json.loads((d / "pipeline.json").read_text())
    del meta["metadata"]["recalibration"]
    write_pipeline_json(d, meta)  # sealed, as such a pipeline was written
    old = load_pipeline(d)
    assert "recalibration" not in old.metadata
    pd.testing.assert_frame_equal(old.predict(c, ids), _raw(pipe, c, ids))
    # a tampered map is refused
    meta["metadata"]["recalibration"] = {"survival": {"intercept": 0.0, "slope": -2.0}}
    (d / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="checksum mismatch"):  # an edited pipeline.json is refused
        Pipeline.from_pretrained(d)
    write_pipeline_json(d, meta)  # even sealed again, a map that reverses the risk order is refused
    with pytest.raises(IntegrityError, match="positive slope"):
        Pipeline.from_pretrained(d)


def test_switched_off_or_without_inner_validation_the_reason_is_recorded(cohort_120):
    one_epoch = replace(TRAINING, epochs=1)
    off, c = _fit(cohort_120, replace(one_epoch, recalibrate=False))
    assert off.metadata["recalibration"] == {"skipped": "training.recalibrate is false"}
    pd.testing.assert_frame_equal(off.predict(c, c.patient_ids[:5]), _raw(off, c, c.patient_ids[:5]))
    no_val, _ = _fit(cohort_120, replace(one_epoch, val_fraction=0.0), val=False)
    assert "no inner validation" in no_val.metadata["recalibration"]["skipped"]


def test_too_few_validation_patients_skip_the_maps(fitted):
    from multimodal.pipeline import fit_recalibration

    pipe, c = fitted
    few = _raw(pipe, c, c.patient_ids[-8:])
    rec = fit_recalibration(few, c, pipe.model.config)
    assert "too few" in rec["response"]["skipped"] and "too few" in rec["survival"]["skipped"]


# ---- the patient report shows what predict shows ---------------------------------------------------------------------
def _with_recalibration(pipe: Pipeline, rec: dict | None) -> Pipeline:
    meta = {k: v for k, v in pipe.metadata.items() if k != "recalibration"}
    return replace(pipe, metadata=meta if rec is None else {**meta, "recalibration": rec})


def _known_map(pipe: Pipeline) -> dict:
    """A clearly non-identity map (intercepts alternate in sign, slopes far from 1)."""
    k = len(pipe.model.config.bin_edges) + 1
    return {"fitted_on": "inner validation", "n_val": N_VAL, "response": {"intercept": 0.7, "slope": 1.8},
            "survival": {"intercepts": [0.4 * (-1) ** j for j in range(k)], "slope": 1.6}}


def _report_values(res) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Survival at the bin ends, risk at each interior bin edge, response per arm; and the band's lower bounds."""
    surv = np.asarray(res.survival["survival"][1:])
    at_edges = np.array([h["risk"] for h in res.risks_at_horizons])
    resp = np.array([r["probability"] for r in res.response])
    lower = np.concatenate([res.survival["lower"][1:], [r["lower"] for r in res.response]])
    return surv, at_edges, resp, lower


@pytest.mark.parametrize("which", ["fitted", "known"])
def test_patient_report_shows_predicts_recalibrated_probabilities(fitted, which):
    from multimodal.calibration import recalibrate_response, recalibrate_survival
    from multimodal.explain.risk import explain_patient
    from multimodal.pipeline import check_recalibration

    pipe, c = fitted
    rec = pipe.metadata["recalibration"] if which == "fitted" else _known_map(pipe)
    check_recalibration({"recalibration": rec}, where="test")
    cal_pipe, raw_pipe = _with_recalibration(pipe, rec), _with_recalibration(pipe, None)
    pid, edges = c.patient_ids[3], [float(e) for e in pipe.model.config.bin_edges]
    arms = [f"response_prob_arm_{a}" for a in range(len(pipe.metadata["treatment_arms"]))]
    surv_cols = [f"surv_{j}" for j in range(len(edges) + 1)]
    # mc_samples=1: the band is that one dropout pass, so a band mapped pass by pass is the mapped raw band
    kw = {"horizons": edges, "mc_samples": 1, "n_steps": 4, "top_k": 3}
    cal, raw = explain_patient(cal_pipe, c, pid, **kw), explain_patient(raw_pipe, c, pid, **kw)
    for res, p in ((cal, cal_pipe), (raw, raw_pipe)):  # with the map: predict's columns; without: the raw outputs
        row = p.predict(c, c.patient_ids).set_index("patient_id").loc[pid]
        surv, at_edges, resp, _ = _report_values(res)
        np.testing.assert_allclose(surv, row[surv_cols].to_numpy(float), rtol=0, atol=1e-6)
        np.testing.assert_allclose(at_edges, 1 - row[surv_cols[:-1]].to_numpy(float), rtol=0, atol=1e-6)
        assert [r["arm"] for r in res.response] == pipe.metadata["treatment_arms"]
        np.testing.assert_allclose(resp, row[arms].to_numpy(float), rtol=0, atol=1e-6)
    c_surv, _, c_resp, c_lower = _report_values(cal)
    r_surv, _, r_resp, r_lower = _report_values(raw)
    assert not np.allclose(c_surv, r_surv, atol=1e-3) and not np.allclose(c_resp, r_resp, atol=1e-3)
    n_bins = len(surv_cols)
    np.testing.assert_allclose(c_lower[:n_bins], recalibrate_survival(r_lower[None, :n_bins], rec)[0], atol=1e-9)
    np.testing.assert_allclose(c_lower[n_bins:], recalibrate_response(r_lower[n_bins:], rec), atol=1e-9)
    assert cal.model["recalibrated"] == ["response", "survival"] and raw.model["recalibrated"] == []
    assert "recalibrated on the inner-validation patients" in cal.survival["note"]
    # the risk score, its place among the reference risks and the attributions are the model's, untouched
    assert (cal.risk_score, cal.percentile, cal.risk_group) == (raw.risk_score, raw.percentile, raw.risk_group)
    assert cal.modality_contributions == raw.modality_contributions and cal.evidence == raw.evidence


def test_model_card_says_how_probabilities_were_recalibrated(fitted):
    from multimodal.report.model_card import render_model_card

    pipe, _ = fitted
    card = render_model_card(pipe)
    assert f"- Probabilities are recalibrated on the {N_VAL} inner-validation patients (survival slope " in card
    part = {**_known_map(pipe), "response": {"skipped": "too few inner validation patients: 30 with 4 in the rarer "
                                                         "response class (need 20 with 5)"}}
    card = render_model_card(_with_recalibration(pipe, part))
    assert ("(survival slope 1.600; response not recalibrated: too few inner validation patients: 30 with 4 in the "
            "rarer response class (need 20 with 5)); risk scores and attributions are the model's own.") in card
    off = render_model_card(_with_recalibration(pipe, {"skipped": "training.recalibrate is false"}))
    assert "- Probabilities are not recalibrated: training.recalibrate is false." in off
    assert "recalibrat" not in render_model_card(_with_recalibration(pipe, None))  # a pipeline that predates it


# ---- calibration in a cv summary -------------------------------------------------------------------------------------
def test_cv_summary_reports_calibration_slope_and_ici_with_bootstrap_cis(small_cohort, demo_config, tmp_path):
    from multimodal.cli.main import main

    run = tmp_path / "run"
    sets = [*TRAIN_OVERRIDES, f"data.manifest={small_cohort}", "evaluation.folds=2", "evaluation.ablations=false",
            "evaluation.baselines=[coxph_clinical, coxnet]", "model.ensemble=1", "training.average_epochs=1"]
    argv = ["cv", str(demo_config), "--out", str(run)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    # a survival + response study also runs each survival baseline's response counterpart (response metrics only)
    response_only = {"logistic_clinical", "enet_logistic"}
    assert set(summary["methods"]) == {"multimodal", "coxph_clinical", "coxnet", *response_only}
    assert "Austin" in summary["protocol"]["calibration"]
    for name in response_only:
        m = summary["methods"][name]["mean"]
        assert m["response_ici"] is not None and 0 <= m["response_ici"] <= 1, name
    for name, m in summary["methods"].items():
        if name in response_only:
            continue
        for key in ("calibration_slope", "ici"):
            assert key in m["mean"] and f"{key}_bootstrap" in m["ci95"] and key in m["ci95"], (name, key)
            assert all(key in f for f in m["folds"]) and all("calibration" in f for f in m["folds"])
        assert m["mean"]["ici"] is not None and 0 <= m["mean"]["ici"] <= 1, name
        lo, hi = m["ci95"]["ici_bootstrap"]
        assert 0 <= lo <= hi <= 1, name
        lo, hi = m["ci95"]["calibration_slope_bootstrap"]
        assert lo is not None and lo <= hi, name
        assert {"c_index", "c_index_uno", "ibs", "td_auc"} <= set(m["mean"])  # the existing keys stay
    ours = summary["methods"]["multimodal"]
    assert {"response_calibration_slope", "response_ici"} <= set(ours["mean"])  # task both: the response's too
    header = next(line for line in (run / "summary.md").read_text().splitlines() if line.startswith("| method"))
    assert "| calibration_slope |" in header and "| ici |" in header
    preds = pd.read_parquet(run / "predictions.parquet")
    surv = preds[~preds["method"].isin(response_only)]  # response-only baselines predict no survival
    assert surv["event_prob_at_horizon"].between(0, 1).all() and (surv["calibration_horizon"] > 0).all()
