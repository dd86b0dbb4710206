"""The attention-MIL late-fusion baseline: gated attention, learning a planted signal, determinism, no leakage."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if str(Path(__file__).parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from pooled_cohorts import phenotype_cohort, small_synthetic  # noqa: E402

from multimodal.baselines import create_baseline  # noqa: E402
from multimodal.cohorts.sources import SlideRef, SlideSource  # noqa: E402
from multimodal.errors import ConfigError, InputError  # noqa: E402
from multimodal.metrics import auroc, harrell_c  # noqa: E402
from multimodal.mil_baseline import AttentionMILConfig, GatedAttentionPool, MILInputs  # noqa: E402
from multimodal.pooled import PooledFeatures, PooledFeaturesConfig  # noqa: E402

FAST = {"epochs": 25, "patience": 6, "max_patches": 64, "patch_pool": 128}
POOLED = PooledFeaturesConfig(pca_components=4, clusters=3, fit_patches_per_patient=32)


def _planted(root: Path, n: int = 150, seed: int = 0):
    """One slide per patient (a share ``f`` of phenotype-0 patches, 8 % without slides); log-hazard = 3 (f - 0.5)."""
    rng = np.random.default_rng(seed)
    frac = rng.uniform(0.05, 0.95, n)
    mixes = {f"P{i:03d}": (None if i % 12 == 5 else [f, (1 - f) / 2, (1 - f) / 2]) for i, f in enumerate(frac)}
    cohort = phenotype_cohort(root, mixes, n=100, seed=seed)
    t = rng.exponential(np.exp(-3.0 * (frac - 0.5)))
    c = rng.exponential(3.0, n)
    cohort.patients["time"] = np.minimum(t, c)
    cohort.patients["event"] = t <= c
    cohort.patients["response"] = (rng.random(n) < 1 / (1 + np.exp(-6 * (frac - 0.5)))).astype(int)
    return cohort, frac


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    cohort, frac = _planted(tmp_path_factory.mktemp("planted"))
    ids = cohort.patient_ids
    return cohort, frac, ids[:100], ids[100:]


# ---- gated attention -------------------------------------------------------------------------------------------------
def test_gated_attention_pooling_is_ilse_eq9_and_ignores_padding():
    torch.manual_seed(0)
    pool = GatedAttentionPool(5, 8, dropout=0.0, attention_dim=4).eval()
    x = torch.randn(2, 6, 5)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    z, a = pool(x, mask)
    h = pool.embed(x[1, :3])
    logits = pool.attention_w(torch.tanh(pool.attention_v(h)) * torch.sigmoid(pool.attention_u(h))).squeeze(-1)
    expected = torch.softmax(logits, 0)
    torch.testing.assert_close(a[1, :3], expected)
    torch.testing.assert_close(z[1], expected @ h)
    assert torch.allclose(a.sum(1), torch.ones(2)) and (a[1, 3:] == 0).all()
    garbage = x.clone()
    garbage[1, 3:] = 1e4  # padded rows carry no information
    torch.testing.assert_close(pool(garbage, mask)[0], z)
    empty_z, empty_a = pool(torch.zeros(1, 1, 5), torch.zeros(1, 1, dtype=torch.bool))
    assert (empty_z == 0).all() and (empty_a == 0).all()


# ---- learning --------------------------------------------------------------------------------------------------------
def test_learns_a_planted_pathology_signal(planted):
    cohort, frac, train, test = planted
    model = create_baseline("attention_mil", **FAST).fit_cohort(cohort, train, pooled=PooledFeatures(POOLED).fit(
        cohort, train))
    X = model.inputs(cohort, test)
    risk = model.predict_risk(X)
    t, e = cohort.survival_arrays(test)
    pos = {p: i for i, p in enumerate(cohort.patient_ids)}
    oracle = harrell_c(t, e, frac[[pos[p] for p in test]])  # the true log-hazard (about 0.69 here)
    assert harrell_c(t, e, risk) > max(0.6, oracle - 0.08)
    has = [i for i, p in enumerate(test) if cohort.has("pathology", p)]
    assert len(has) < len(test)  # patients without slides: zeros + presence 0, still a finite risk
    assert np.isfinite(risk).all()
    assert np.corrcoef(risk[has], frac[[pos[test[i]] for i in has]])[0, 1] > 0.4
    surv = model.predict_survival(X, np.quantile(t, [0.25, 0.5, 0.75]))
    assert ((surv >= 0) & (surv <= 1)).all() and (np.diff(surv, axis=1) <= 1e-12).all()
    assert np.corrcoef(risk, surv[:, 1])[0, 1] < -0.5
    assert 0 <= model.best_epoch_ < FAST["epochs"] and np.isfinite(model.val_loss_)  # early stopping on inner val


def test_learns_a_planted_response_signal(planted):
    cohort, _, train, test = planted
    model = create_baseline("attention_mil", **FAST).fit_cohort(cohort, train, task="response",
                                                                 pooled=PooledFeatures(POOLED).fit(cohort, train))
    proba = model.predict_proba(model.inputs(cohort, test))
    y = cohort.patients.loc[test, "response"].to_numpy(int)
    assert proba.shape == (len(test), 2) and auroc(y, proba[:, 1]) > 0.65
    with pytest.raises(RuntimeError, match="survival fit"):
        model.predict_survival(model.inputs(cohort, test), [1.0])


def test_runs_on_the_synthetic_cohort_with_every_modality(tmp_path):
    cohort = small_synthetic(tmp_path / "syn", patients=48, seed=1, patches=40)
    ids = cohort.patient_ids
    model = create_baseline("attention_mil", epochs=3).fit_cohort(cohort, ids[:36])
    assert model.bag_modalities_ == ["pathology"]
    assert model.vector_modalities_ == ["genomics", "ehr", "clinical"]
    assert np.isfinite(model.predict_risk(model.inputs(cohort, ids[36:]))).all()


# ---- determinism and leakage -----------------------------------------------------------------------------------------
def test_seeded_deterministic_and_leaves_the_global_rng_alone(planted):
    cohort, _, train, test = planted
    pooled = PooledFeatures(POOLED).fit(cohort, train)
    cfg = {**FAST, "epochs": 4}
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = create_baseline("attention_mil", **cfg).fit_cohort(cohort, train, pooled=pooled)
    assert torch.equal(torch.get_rng_state(), before)
    b = create_baseline("attention_mil", **cfg).fit_cohort(cohort, train, pooled=pooled)
    X = a.inputs(cohort, test)
    np.testing.assert_array_equal(a.predict_risk(X), b.predict_risk(X))
    c = create_baseline("attention_mil", **cfg, seed=1).fit_cohort(cohort, train, pooled=pooled)
    assert not np.array_equal(a.predict_risk(X), c.predict_risk(X))


def test_test_patients_never_influence_the_fit(planted, tmp_path):
    cohort, _, train, test = planted
    cfg = {**FAST, "epochs": 4}
    ref = create_baseline("attention_mil", **cfg).fit_cohort(cohort, train, pooled=PooledFeatures(POOLED).fit(
        cohort, train))
    slides = dict(cohort.modalities["pathology"].slides)
    for pid in test:  # wild bags and extreme outcomes for every held-out patient
        path = tmp_path / f"{pid}.npy"
        np.save(path, np.random.default_rng(1).normal(40.0, 20.0, (300, 8)).astype(np.float32))
        slides[pid] = (SlideRef(pid, f"{pid}_s1", path, "npy"),)
    bad = cohort.subset(cohort.patient_ids)
    bad.modalities["pathology"] = SlideSource(slides=slides)
    bad.patients.loc[test, "time"] = 1e-3
    new = create_baseline("attention_mil", **cfg).fit_cohort(bad, train, pooled=PooledFeatures(POOLED).fit(
        bad, train))
    np.testing.assert_array_equal(ref.predict_risk(ref.inputs(cohort, train)),
                                  new.predict_risk(new.inputs(bad, train)))


# ---- errors ----------------------------------------------------------------------------------------------------------
def test_bad_inputs_and_config(planted):
    cohort, _, train, test = planted
    with pytest.raises(ConfigError, match="dropout"):
        AttentionMILConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="n_epochs"):
        create_baseline("attention_mil", n_epochs=3)
    model = create_baseline("attention_mil", **{**FAST, "epochs": 2})
    with pytest.raises(InputError, match="MILInputs"):
        model.fit(cohort.patients.loc[train], *cohort.survival_arrays(train))
    with pytest.raises(RuntimeError, match="fit_cohort"):
        model.inputs(cohort, test)
    model.fit_cohort(cohort, train, pooled=PooledFeatures(POOLED).fit(cohort, train))
    X = model.inputs(cohort, test)
    wrong_dim = {"pathology": tuple(np.zeros((3, 5), np.float16) for _ in test)}
    with pytest.raises(InputError, match="dim"):
        model.predict_risk(MILInputs(X.patient_ids, wrong_dim, X.table))
    with pytest.raises(InputError, match="slide modality 'pathology'"):
        model.predict_risk(MILInputs(X.patient_ids, {}, X.table))
    with pytest.raises(InputError, match="table rows"):
        MILInputs(X.patient_ids[:-1], {}, X.table)
    with pytest.raises(RuntimeError, match="response fit"):
        model.predict_proba(X)
    with pytest.raises(InputError, match="binary"):
        create_baseline("attention_mil").fit(X, np.arange(len(test)) % 3)
