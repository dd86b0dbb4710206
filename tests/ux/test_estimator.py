"""MultimodalSurvivalEstimator: scikit-learn conventions (clone, GridSearchCV), outputs, both kinds of X."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sksurv.util import Surv

from multimodal.errors import ConfigError, InputError
from multimodal.estimator import MultimodalSurvivalEstimator
from multimodal.metrics import harrell_c


@pytest.fixture(autouse=True)
def _one_torch_thread(_torch_threads):
    """One intra-op thread: on a busy shared machine OpenMP threads spin-wait for each other and a tiny model trains
    10-100x slower with 2 threads than with 1."""
    import torch

    torch.set_num_threads(1)
    yield


FAST = {"epochs": 3, "d_model": 16, "depth": 1, "num_latents": 2, "batch_size": 16}


def _data(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Clinical + omics columns with a strong planted effect (age, stage III, TP53, one expression gene)."""
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n)
    stage = rng.choice(["I", "II", "III"], n)
    tp53 = rng.integers(0, 2, n)
    g = rng.normal(size=(n, 4))
    lp = 0.08 * (age - 60) + 1.5 * (stage == "III") + 1.0 * tp53 + 1.0 * g[:, 0]
    t = rng.exponential(365 * np.exp(-lp))
    c = rng.exponential(3 * 365, n)
    X = pd.DataFrame({"age": age, "stage": stage, "TP53_mut": tp53, **{f"G{i}_rnaseq": g[:, i] for i in range(4)}},
                     index=[f"id{i % 7}" for i in range(n)])  # duplicate index labels: rows are positional
    return X, Surv.from_arrays(event=t <= c, time=np.minimum(t, c))


@pytest.fixture(scope="module")
def fitted():
    import torch

    torch.set_num_threads(1)  # module scope runs before the per-test thread fixture
    X, y = _data()
    return MultimodalSurvivalEstimator(**FAST, random_state=1).fit(X, y), X, y


def test_clone_keeps_params_and_drops_fit(fitted):
    est, _, _ = fitted
    c = clone(est)
    assert c.get_params() == est.get_params()
    assert c.get_params()["d_model"] == 16 and c.get_params()["random_state"] == 1
    assert not hasattr(c, "pipeline_")
    with pytest.raises(NotFittedError):
        c.predict(fitted[1])
    assert est.model_config().d_model == 16 and est.training_config().epochs == 3  # mapped onto the core configs


def test_fit_builds_both_modalities_and_predicts(fitted):
    est, X, y = fitted
    assert set(est.pipeline_.adapters) == {"clinical", "genomics"}  # *_mut / *_rnaseq columns became omics
    assert est.n_features_in_ == X.shape[1] and list(est.feature_names_in_) == list(X.columns)
    risk = est.predict(X)
    assert risk.shape == (len(X),) and np.isfinite(risk).all()
    np.testing.assert_allclose(est.predict(X.iloc[::-1]), risk[::-1], rtol=1e-5, atol=1e-6)  # row order kept
    assert est.score(X, y) == pytest.approx(harrell_c(y["time"], y["event"], risk))


def test_learns_the_planted_signal():
    X, y = _data(80)
    est = MultimodalSurvivalEstimator(**{**FAST, "epochs": 12}, lr=1e-2, val_fraction=0.0).fit(X, y)
    assert est.fit_result_.best_epoch == 11  # no validation: the last epoch is kept
    assert est.score(X, y) > 0.65
    X_new, y_new = _data(200, seed=5)  # fresh patients from the same model: the signal generalizes
    assert est.score(X_new, y_new) > 0.6


def test_survival_function_array_and_step_functions(fitted):
    est, X, _ = fitted
    s = est.predict_survival_function(X.head(4), return_array=True)
    assert s.shape == (4, len(est.unique_times_))
    assert ((s >= 0) & (s <= 1)).all() and (np.diff(s, axis=1) <= 1e-9).all()  # a survival curve never rises
    fns = est.predict_survival_function(X.head(2))
    np.testing.assert_allclose(fns[1](est.unique_times_[:5]), s[1, :5])


def test_cox_head_uses_breslow_survival():
    X, y = _data()
    est = MultimodalSurvivalEstimator(**FAST, survival="cox").fit(X, y)
    s = est.predict_survival_function(X.head(3), return_array=True)
    assert s.shape == (3, len(est.unique_times_)) and (np.diff(s, axis=1) <= 1e-9).all()
    # higher risk -> lower survival everywhere under proportional hazards
    r = est.predict(X.head(3))
    hi, lo = int(np.argmax(r)), int(np.argmin(r))
    assert (s[hi] <= s[lo] + 1e-12).all()


def test_grid_search_over_one_hyperparameter():
    X, y = _data()
    search = GridSearchCV(MultimodalSurvivalEstimator(**{**FAST, "epochs": 2}), {"lr": [1e-3, 1e-2]}, cv=2).fit(X, y)
    assert search.best_params_["lr"] in (1e-3, 1e-2)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert all(0.0 <= v <= 1.0 for v in search.cv_results_["mean_test_score"])
    assert search.best_estimator_.predict(X).shape == (len(X),)


def test_patient_ids_of_a_bound_cohort(tmp_path):
    from multimodal.cohorts import Cohort
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    manifest = generate_synthetic_cohort(tmp_path / "c", SyntheticConfig(patients=40, seed=2, patches_per_slide=32,
                                                                           embed_dim=8, n_genes=60, n_pathways=8))
    cohort = Cohort.from_manifest(manifest)
    ids = np.array(cohort.patient_ids)
    est = MultimodalSurvivalEstimator(**{**FAST, "epochs": 1}, cohort=str(manifest)).fit(ids[:30])  # y from cohort
    assert set(est.pipeline_.adapters) == {"pathology", "genomics", "ehr", "clinical"}
    assert est.predict(ids[30:]).shape == (10,)
    t, e = cohort.survival_arrays(list(ids[30:]))
    assert 0.0 <= est.score(ids[30:]) <= 1.0
    assert est.score(ids[30:], Surv.from_arrays(e, t)) == est.score(ids[30:])
    with pytest.raises(InputError, match="not in the bound cohort"):
        est.predict(["NOPE"])


def test_bad_inputs_are_input_errors(fitted):
    est, X, y = fitted
    with pytest.raises(InputError, match="structured array"):
        MultimodalSurvivalEstimator(**FAST).fit(X, np.ones(len(X)))
    with pytest.raises(InputError, match="different columns"):
        est.predict(X.drop(columns=["age"]))
    with pytest.raises(InputError, match="Reshape your data"):  # NumPy X is 2-d (tests/ux/test_estimator_conventions.py)
        MultimodalSurvivalEstimator(**FAST).fit(X["age"].to_numpy(), y)
    with pytest.raises(ConfigError):
        MultimodalSurvivalEstimator(**FAST, lr=-1.0).fit(X, y)
    with pytest.raises(ConfigError):
        MultimodalSurvivalEstimator(**{**FAST, "d_model": 18}, num_heads=4).fit(X, y)


def test_declaring_one_clinical_column_keeps_the_others():
    X, y = _data()
    X = X[["age", "stage"]].assign(grade=np.arange(len(X)) % 3 + 1)  # integer-coded, declared categorical
    est = MultimodalSurvivalEstimator(**{**FAST, "epochs": 1}, categorical=["grade"]).fit(X, y)
    names = set(est.pipeline_.adapters["clinical"].vocabulary)
    assert set(est.pipeline_.adapters) == {"clinical"}
    assert any(n.startswith("age") for n in names) and any(n.startswith("stage=") for n in names)
    assert {"grade=1", "grade=2", "grade=3"} <= names
