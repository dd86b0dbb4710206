"""The pooled stack (model.stack): the pooled-feature classical models as the survival offset, inside the pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from multimodal.baselines import CoxnetBaseline, CoxnetConfig, GBSABaseline, GBSAConfig, TabularPreprocessor
from multimodal.pipeline import ModelConfig, Pipeline
from multimodal.pooled import PooledFeatures, PooledFeaturesConfig
from multimodal.stack import PooledStack, fit_pooled_stack
from multimodal.training import TrainingConfig

REPO = Path(__file__).resolve().parents[2]
SMALL = PooledFeaturesConfig(pca_components=4, clusters=3, fit_patches_per_patient=40, gene_sets="omics/pathways.gmt")
MODEL = ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2, stack="pooled_enet_gb")


@pytest.fixture(scope="module")
def cohort_and_config(start_cohort):
    return start_cohort


def test_pooled_features_and_preprocessor_round_trip_through_json_and_arrays(cohort_and_config):
    c, _ = cohort_and_config
    ids = c.patient_ids
    pooled = PooledFeatures(SMALL).fit(c, ids[:120])
    x = pooled.transform(c, ids)
    assert {col.split(":", 1)[0] for col in x.columns} == set(c.modalities)  # slides, genomics, EHR and clinical
    meta, arrays = pooled.state()
    import json

    again = PooledFeatures.from_state(json.loads(json.dumps(meta)), {k: v.copy() for k, v in arrays.items()})
    pd.testing.assert_frame_equal(again.transform(c, ids), x)

    prep = TabularPreprocessor(clip=5.0).fit(x.iloc[:120])
    pmeta, parrays = prep.state()
    prep2 = TabularPreprocessor.from_state(json.loads(json.dumps(pmeta)), parrays)
    assert prep.categorical_  # the clinical table's categoricals (one-hot columns) travel too
    pd.testing.assert_frame_equal(prep2.transform(x.iloc[120:]), prep.transform(x.iloc[120:]))


def test_the_candidates_score_exactly_as_the_study_baselines_and_survive_save_load(cohort_and_config, tmp_path):
    c, _ = cohort_and_config
    ids = c.patient_ids
    t, e = c.survival_arrays(ids[:120])
    fit = fit_pooled_stack(c, ids[:120], "pooled_enet_gb", SMALL, seed=0)
    stack = fit.stack
    assert [cand.name for cand in stack.candidates] == ["coxnet", "gbsa"] and stack.n_nonzero > 0
    x_test = stack.pooled.transform(c, ids[120:])
    scores = stack.scores(x_test)
    cox = CoxnetBaseline(CoxnetConfig(seed=0)).fit(fit.x, t, e)
    # sksurv predicts on its centred design: the same linear predictor up to one constant (the centring absorbs it)
    assert np.ptp(scores[:, 0] - cox.predict_risk(x_test)) < 1e-9
    gb = GBSABaseline(GBSAConfig(seed=0)).fit(fit.x, t, e)  # the trees as arrays give scikit-learn's predictions
    np.testing.assert_allclose(scores[:, 1], gb.predict_risk(x_test), rtol=1e-6, atol=1e-6)
    # the offset is a log hazard ratio: non-negative Cox weights of the cross-fitted scores, which carry signal here
    assert (stack.weights >= 0).all() and stack.weights.sum() > 0
    off = stack.offsets(c, ids[120:])
    stack.save(tmp_path / "s")
    back = PooledStack.load(tmp_path / "s")
    assert back.offsets(c, ids[120:]) == pytest.approx(off, abs=1e-12)
    # a patient's offset is exactly its listed terms + the rest + the constant
    parts = stack.contributions(c, ids[130], top=5)
    total = sum(p["contribution"] for p in parts["terms"]) + parts["rest"] + parts["constant"]
    assert total == pytest.approx(off[ids[130]], abs=1e-9) and parts["offset"] == pytest.approx(off[ids[130]])
    assert {p["candidate"] for p in parts["terms"]} == {"coxnet", "gbsa"}

    from multimodal.errors import IntegrityError

    (tmp_path / "s" / "stack.json").write_text('{"version": 1, "kind": "other"}')
    with pytest.raises(IntegrityError, match="pooled stack"):
        PooledStack.load(tmp_path / "s")


def test_cross_fitted_offsets_never_see_the_patients_own_outcome(cohort_and_config):
    """Changing one patient's survival time (its event kept, so the folds stay the same) leaves its own cross-fitted
    score unchanged; other folds' scores move. (The weights and the standardization use every patient: compare the
    candidate's cross-fitted score itself.)"""
    c, _ = cohort_and_config
    ids = c.patient_ids[:120]
    before = fit_pooled_stack(c, ids, "pooled_enet", SMALL, seed=0)
    pid = ids[7]
    original = c.survival_arrays

    def moved(pids):  # the same cohort with patient pid surviving 10x longer
        tt, ee = original(pids)
        tt = np.array(tt, dtype=float)
        tt[[i for i, p in enumerate(pids) if p == pid]] *= 10
        return tt, ee

    c.survival_arrays = moved
    try:
        after = fit_pooled_stack(c, ids, "pooled_enet", SMALL, seed=0)
    finally:
        c.survival_arrays = original

    b, a = (dict(zip(ids, f.cross[:, 0], strict=True)) for f in (before, after))
    assert a[pid] == pytest.approx(b[pid], abs=1e-9)
    assert any(abs(a[p] - b[p]) > 1e-6 for p in ids if p != pid)


def test_pipeline_with_the_stack_starts_as_it_and_keeps_it_when_training_cannot_beat_it(cohort_and_config, tmp_path):
    from scipy.stats import spearmanr

    from multimodal.experiment import make_adapters
    from multimodal.metrics import harrell_c

    c, cfg = cohort_and_config
    ids = c.patient_ids
    pipe, fit = Pipeline.fit(c, ids[:100], val_ids=ids[100:130], adapters=make_adapters(cfg), model_config=MODEL,
                             training=TrainingConfig(epochs=2, batch_size=16, lr=0.0, progress=False),
                             task="survival", seed=1, attribution_reference=False)
    assert fit.best_epoch == -1 and [h["epoch"] for h in fit.history] == [-1, 0, 1]
    assert pipe.stack is not None and pipe.stack.n_train == 130  # refitted on inner training + inner validation
    assert pipe.metadata["trunk_scale"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert pipe.metadata["stack"]["n_train"] == 100 and pipe.metadata["stack"]["n_train_final"] == 130
    test = ids[130:]
    pred = pipe.predict(c, test)
    off = pipe.stack.offsets(c, test)
    # trunk at zero: the risk is a monotone function of the stack's linear predictor
    assert spearmanr(pred["risk"], [off[p] for p in test]).statistic == pytest.approx(1.0)
    t, e = c.survival_arrays(test)
    assert harrell_c(t, e, pred["risk"].to_numpy(float)) > 0.55

    pipe.save_pretrained(tmp_path / "p")
    back = Pipeline.from_pretrained(tmp_path / "p")
    assert back.stack is not None
    pd.testing.assert_frame_equal(back.predict(c, test), pred)
    # explanations carry the linear part exactly (the attributions only see the trunk's part)
    from multimodal.explain.risk import explain_patient
    from multimodal.report.patient import render_html

    res = explain_patient(back, c, test[0], mc_samples=0, n_steps=4)
    assert res.stack_terms is not None and res.stack_terms["offset"] == pytest.approx(off[test[0]], abs=1e-9)
    assert 0 < len(res.stack_terms["terms"]) <= 11  # coxnet's ten largest and gbsa's term
    assert res.stack_terms["terms"][0]["feature"] in html_escaped(render_html(res))
    # the offset enters the forward: a pipeline without its stack predicts something else
    bare = Pipeline(back.adapters, back.model, back.metadata)
    assert not np.allclose(bare.predict(c, test)["risk"].to_numpy(float), pred["risk"].to_numpy(float))


def test_the_one_standard_error_rule_takes_the_smallest_scale_within_one_se() -> None:
    from multimodal.wide_init import one_se_choice

    rng = np.random.default_rng(0)
    base = rng.normal(1.0, 0.3, 60)
    # the full trunk lowers the mean loss by 0.01, with a per-patient spread of sd 0.1 around that: its paired SE
    # (0.1 / sqrt(59) ~= 0.013) is larger than the gain, so the rule keeps the stack alone (scale 0)
    pattern = np.tile([-0.1, 0.1], 30)
    noisy = {lam: base - 0.01 * lam + pattern * lam for lam in (0.0, 0.25, 0.5, 0.75, 1.0)}
    best = min(noisy, key=lambda k: noisy[k].mean())
    assert best == 1.0 and one_se_choice(noisy) == 0.0
    # a clear gain, the same for every patient: the SE is ~0, so the best scale is kept
    clear = {lam: base - 0.2 * lam for lam in (0.0, 0.5, 1.0)}
    assert one_se_choice(clear) == 1.0
    # the paired SE: scale 0.5 is within one SE of 1.0, scale 0 is not
    d = np.tile([0.0, 0.2], 30)  # mean 0.1, paired SE 0.1 / sqrt(60) * sqrt(60 / 59) ~= 0.013
    rule = {0.0: base + 0.1, 0.5: base + 0.01 + d - d.mean(), 1.0: base}
    assert one_se_choice(rule) == 0.5
    # non-finite losses are left out
    rule[0.0][0] = np.nan
    assert one_se_choice(rule) == 0.5


def test_loss_1se_selects_epochs_by_loss_and_shrinks_the_trunk_by_the_1se_rule(cohort_and_config, monkeypatch):
    import multimodal.wide_init as wi
    from multimodal.experiment import make_adapters

    c, cfg = cohort_and_config
    ids = c.patient_ids
    seen: dict[float, np.ndarray] = {}
    real = wi.one_se_choice

    def spy(losses):
        seen.update(losses)
        return real(losses)

    monkeypatch.setattr(wi, "one_se_choice", spy)
    train = TrainingConfig(epochs=3, batch_size=16, lr=0.003, progress=False, select_metric="loss_1se")
    pipe, fit = Pipeline.fit(c, ids[:100], val_ids=ids[100:130], adapters=make_adapters(cfg), model_config=MODEL,
                             training=train, task="survival", seed=1, attribution_reference=False)
    assert all("val_loss" in h for h in fit.history if h["epoch"] >= 0)  # epochs chosen by the validation loss
    assert sorted(seen) == [0.0, 0.25, 0.5, 0.75, 1.0] and all(v.shape == (30,) for v in seen.values())
    # each scale's recorded score is minus its patients' mean loss, and the rule's choice is what the model keeps
    for lam, v in seen.items():
        assert fit.trunk_scale_scores[f"{lam:g}"] == pytest.approx(-float(np.mean(v)), rel=1e-5)
    assert fit.trunk_scale == real(seen) == pipe.metadata["trunk_scale"]


def test_the_stack_serves_a_cox_head_and_every_ensemble_member(cohort_and_config):
    from multimodal.experiment import make_adapters

    c, cfg = cohort_and_config
    ids = c.patient_ids
    mcfg = dataclasses.replace(MODEL, survival="cox", ensemble=2, stack="pooled_enet")
    pipe, fit = Pipeline.fit(c, ids[:100], val_ids=ids[100:130], adapters=make_adapters(cfg), model_config=mcfg,
                             training=TrainingConfig(epochs=2, batch_size=16, lr=0.01, progress=False),
                             task="survival", seed=1, attribution_reference=False)
    assert all(r.history[0]["epoch"] == -1 for r in fit.members)  # each member must beat the same start
    pred = pipe.predict(c, ids[130:])
    off = pipe.stack.offsets(c, ids[130:])
    # the Cox head's risk is its log-hazard: the offset plus the trunk's term, which starts at exactly zero
    gap = pred["risk"].to_numpy(float) - np.array([off[p] for p in ids[130:]])
    assert np.isfinite(gap).all()
    def trunk_is_zero(m) -> bool:
        last = [x for x in m.survival_head.modules() if isinstance(x, torch.nn.Linear)][-1]
        return float(last.weight.detach().abs().sum()) == 0.0

    if all(trunk_is_zero(m) for m in pipe.model.members):  # the start kept (or the trunk scaled to 0) by both
        np.testing.assert_allclose(gap, 0.0, atol=1e-5)
    else:
        assert np.ptp(gap) > 0


def test_a_structure_stack_adds_a_twin_that_alone_reads_the_structure_features(cohort_and_config, tmp_path):
    from multimodal.pooled import STRUCTURE
    from multimodal.stack import stack_structure

    c, _ = cohort_and_config
    ids = c.patient_ids
    assert stack_structure("pooled_enet_gb_structure") == STRUCTURE and stack_structure("pooled_enet_gb") == ()
    with pytest.raises(ValueError, match="structure"):  # the kind needs the families in its pooled features
        fit_pooled_stack(c, ids[:120], "pooled_enet_structure", SMALL, seed=0)
    cfg = dataclasses.replace(SMALL, structure=STRUCTURE)
    fit = fit_pooled_stack(c, ids[:120], "pooled_enet_gb_structure", cfg, seed=0, weights="fitted")
    stack = fit.stack
    assert [cand.name for cand in stack.candidates] == ["coxnet", "gbsa", "coxnet_structured"]
    extra = set(stack.pooled.structure_columns())
    assert extra and any(col.startswith("pathology:nbr") for col in extra)
    assert any(col.endswith(":change90d") for col in extra) and any("*" in col for col in extra)
    for cand in stack.candidates:  # the item-1 candidates never read a structure column; the twin does
        read = set(cand.preprocessor.columns_)
        assert bool(read & extra) == (cand.name == "coxnet_structured"), cand.name
    # the twin on the full table is the item-1 coxnet fitted on every column
    t, e = c.survival_arrays(ids[:120])
    x_test = stack.pooled.transform(c, ids[120:])
    cox = CoxnetBaseline(CoxnetConfig(seed=0)).fit(fit.x, t, e)
    assert np.ptp(stack.scores(x_test)[:, 2] - cox.predict_risk(x_test)) < 1e-9
    assert (stack.weights >= 0).all() and stack.weights.sum() > 0
    off = stack.offsets(c, ids[120:])
    stack.save(tmp_path / "s")
    assert PooledStack.load(tmp_path / "s").offsets(c, ids[120:]) == pytest.approx(off, abs=1e-12)
    parts = stack.contributions(c, ids[125], top=4)
    total = sum(p["contribution"] for p in parts["terms"]) + parts["rest"] + parts["constant"]
    assert total == pytest.approx(off[ids[125]], abs=1e-9)
    from multimodal.pooled import describe_column

    assert all(t["label"] == describe_column(t["feature"]) for t in parts["terms"] if t["value"] is not None)
    # the pipeline asks for the families the kind needs
    from multimodal.api import check_experiment
    from multimodal.experiment import load_experiment

    check_experiment(load_experiment(REPO / "configs" / "demo.yaml", ["model.stack=pooled_enet_structure"]))


def test_stack_config_is_checked() -> None:
    from multimodal.api import check_experiment
    from multimodal.errors import ConfigError
    from multimodal.experiment import load_experiment

    for bad in (["model.stack=ridge"], ["model.wide=true", "model.wide_init=cox", "model.stack=pooled_enet"],
                ["model.stack=pooled_enet", "model.stack_weights=mean"]):
        cfg = load_experiment(REPO / "configs" / "demo.yaml", bad)
        with pytest.raises(ConfigError, match="model.stack"):
            check_experiment(cfg)
    # one config serves every task: the stack feeds the response head of a response study
    check_experiment(load_experiment(REPO / "configs" / "demo.yaml", ["task=response", "model.stack=pooled_enet_gb",
                                                                      "evaluation.baselines=[enet_logistic]"]))


def html_escaped(html: str) -> str:
    import html as h

    return h.unescape(html)


def test_a_response_stack_scores_as_the_study_classifiers_and_is_the_models_start(cohort_and_config, tmp_path):
    from scipy.stats import spearmanr

    from multimodal.baselines import (
        EnetLogisticBaseline,
        EnetLogisticConfig,
        GradientBoostingBaseline,
        GradientBoostingConfig,
    )
    from multimodal.experiment import make_adapters

    c, cfg = cohort_and_config
    labelled = [p for p in c.patient_ids if not np.isnan(float(c.patients.loc[p, "response"]))]
    fit = fit_pooled_stack(c, labelled[:110], "pooled_enet_gb", SMALL, head="response", seed=0)
    stack = fit.stack
    assert stack.head == "response" and [k.name for k in stack.candidates] == ["enet_logistic", "gradient_boosting"]
    y = c.patients.loc[labelled[:110], "response"].to_numpy(int)
    x_test = stack.pooled.transform(c, labelled[110:])
    scores = stack.scores(x_test)
    lr = EnetLogisticBaseline(EnetLogisticConfig(seed=0)).fit(fit.x, y)
    gb = GradientBoostingBaseline(GradientBoostingConfig(seed=0)).fit(fit.x, y)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    np.testing.assert_allclose(scores[:, 0], logit(lr.predict_proba(x_test)[:, 1]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(scores[:, 1], logit(gb.predict_proba(x_test)[:, 1]), rtol=1e-6, atol=1e-6)
    stack.save(tmp_path / "r")
    assert PooledStack.load(tmp_path / "r").offsets(c, labelled[110:]) == pytest.approx(
        stack.offsets(c, labelled[110:]), abs=1e-12)

    mcfg = MODEL
    pipe, res = Pipeline.fit(c, labelled[:90], val_ids=labelled[90:115], adapters=make_adapters(cfg),
                             model_config=mcfg, task="response", seed=1, attribution_reference=False,
                             training=TrainingConfig(epochs=2, batch_size=16, lr=0.0, progress=False,
                                                     select_metric="loss"))
    assert res.best_epoch == -1 and pipe.stack.head == "response" and pipe.model.survival_head is None
    test = labelled[115:]
    pred = pipe.predict(c, test)
    off = pipe.stack.offsets(c, test)
    # the response heads start at zero: the probability is a monotone map of the stack's log-odds
    assert spearmanr(pred["response_prob"], [off[p] for p in test]).statistic == pytest.approx(1.0)


def test_a_response_stack_needs_a_binary_response(cohort_and_config, monkeypatch):
    from multimodal.errors import InputError
    from multimodal.experiment import make_adapters

    c, cfg = cohort_and_config
    monkeypatch.setattr(c, "response_classes", 3)
    with pytest.raises(InputError, match="binary response"):
        Pipeline.fit(c, c.patient_ids[:60], adapters=make_adapters(cfg), task="response", model_config=MODEL,
                     training=TrainingConfig(epochs=1, progress=False))


def test_the_meta_learners_keep_weights_non_negative_and_equal_weights_equal() -> None:
    from multimodal.stack import _equal_weights, _logistic_meta, _meta_weights

    rng = np.random.default_rng(0)
    n = 400
    z = rng.normal(size=(n, 2))
    lp = 1.0 * z[:, 0] - 0.7 * z[:, 1]  # candidate 1 is anti-predictive: a negative weight, so it is dropped
    time = rng.exponential(np.exp(-lp))
    event = np.ones(n, dtype=bool)
    w = _meta_weights(z, time, event)
    assert w[0] > 0.5 and w[1] == 0.0
    we, intercept = _equal_weights(z, time, event, response=False)
    assert we[0] == we[1] and intercept == 0.0
    assert _meta_weights(-z[:, :1], time, event)[0] == 0.0  # no candidate with signal: weight 0, the trunk alone
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.3 + 2 * z[:, 0] - 1.5 * z[:, 1])))).astype(int)
    wl, b = _logistic_meta(z, y)
    assert wl[0] > 1.0 and wl[1] == 0.0 and 0.0 < b < 1.0
