"""MultimodalSurvivalEstimator follows scikit-learn / scikit-survival conventions: NumPy and DataFrame X (so it sits
in a scikit-learn Pipeline), random_state (seed deprecated), StepFunction outputs for S and H, honest tags, and the
scikit-learn conformance checks that apply to a survival estimator."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn.utils.estimator_checks as checks
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.functions import StepFunction
from sksurv.util import Surv

from multimodal.errors import InputError
from multimodal.estimator import MultimodalSurvivalEstimator

FAST = {"epochs": 2, "d_model": 8, "depth": 1, "num_latents": 2, "num_heads": 2, "batch_size": 16}


def _data(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    t = rng.exponential(365 * np.exp(-X[:, 0]))
    c = rng.exponential(3 * 365, n)
    return X, Surv.from_arrays(event=t <= c, time=np.minimum(t, c))


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    return MultimodalSurvivalEstimator(**FAST, random_state=3).fit(X, y), X, y


def test_numpy_x_in_a_scikit_learn_pipeline():
    X, y = _data()
    pipe = make_pipeline(StandardScaler(), MultimodalSurvivalEstimator(**FAST, random_state=0)).fit(X * 50 + 7, y)
    risk = pipe.predict(X[:5] * 50 + 7)
    assert risk.shape == (5,) and np.isfinite(risk).all()
    est = pipe[-1]
    assert est.n_features_in_ == 3 and not hasattr(est, "feature_names_in_")
    with pytest.raises(InputError, match="X has 2 features, but MultimodalSurvivalEstimator is expecting 3"):
        est.predict(X[:, :2])
    with pytest.raises(ValueError, match="Reshape your data"):
        est.predict(X[:, 0])


def test_numpy_and_dataframe_give_the_same_model(fitted):
    est, X, y = fitted
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    other = MultimodalSurvivalEstimator(**FAST, random_state=3).fit(frame, y)
    np.testing.assert_allclose(other.predict(frame), est.predict(X), rtol=1e-5, atol=1e-6)
    assert list(other.feature_names_in_) == ["x0", "x1", "x2"]
    np.testing.assert_allclose(other.predict(X), other.predict(frame), rtol=1e-6)  # array rows, fitted names


def test_random_state_and_the_deprecated_seed(fitted):
    est, X, y = fitted
    again = MultimodalSurvivalEstimator(**FAST, random_state=3).fit(X, y)
    np.testing.assert_allclose(again.predict(X), est.predict(X), rtol=1e-6)
    assert est.random_state_ == 3 and est.get_params()["seed"] is None
    with pytest.warns(FutureWarning, match="use random_state"):
        old = MultimodalSurvivalEstimator(**FAST, seed=3).fit(X, y)
    np.testing.assert_allclose(old.predict(X), est.predict(X), rtol=1e-6)
    other = MultimodalSurvivalEstimator(**FAST, random_state=4).fit(X, y)
    assert not np.allclose(other.predict(X), est.predict(X))


def test_nan_in_x_is_allowed_and_tagged(fitted):
    est, X, y = fitted
    assert est.__sklearn_tags__().input_tags.allow_nan is True
    assert est.__sklearn_tags__().target_tags.required is True
    Xn = X.copy()
    Xn[::7, 1] = np.nan
    risk = MultimodalSurvivalEstimator(**FAST).fit(Xn, y).predict(Xn)
    assert np.isfinite(risk).all()
    with pytest.raises(InputError, match="infinity"):
        est.predict(np.where(np.isnan(Xn), np.inf, Xn))


def test_survival_and_cumulative_hazard_functions(fitted):
    est, X, _ = fitted
    surv = est.predict_survival_function(X[:4])
    haz = est.predict_cumulative_hazard_function(X[:4])
    assert surv.dtype == object and all(isinstance(f, StepFunction) for f in [*surv, *haz])
    H = est.predict_cumulative_hazard_function(X[:4], return_array=True)
    S = est.predict_survival_function(X[:4], return_array=True)
    assert H.shape == S.shape == (4, len(est.unique_times_))
    np.testing.assert_allclose(H, -np.log(np.clip(S, 1e-12, 1)), rtol=1e-10)
    assert (np.diff(H, axis=1) >= -1e-12).all() and (H >= 0).all()
    t = est.unique_times_[len(est.unique_times_) // 2]
    np.testing.assert_allclose([f(t) for f in haz], H[:, len(est.unique_times_) // 2], rtol=1e-10)
    np.testing.assert_array_equal(haz[0].x, est.unique_times_)


#: scikit-learn's checks that need no fit, and those that fit (run with a numeric y mapped to an all-event survival
#: outcome, time = |y| + 1: scikit-learn's checks generate regression / class targets). Left out, as they do not
#: apply: check_estimators_nan_inf (only for allow_nan=False), check_methods_subset_invariance (batched float32
#: inference differs from one-row inference at ~1e-7, tighter than the check's tolerance), and the classifier /
#: regressor / transformer checks.
NO_FIT = ["check_no_attributes_set_in_init", "check_parameters_default_constructible", "check_get_params_invariance",
          "check_set_params", "check_estimators_unfitted", "check_estimator_repr", "check_estimator_cloneable",
          "check_estimator_tags_renamed", "check_valid_tag_types", "check_do_not_raise_errors_in_init_or_set_params",
          "check_mixin_order", "check_estimator_sparse_array", "check_complex_data", "check_requires_y_none"]
WITH_FIT = ["check_positive_only_tag_during_fit", "check_fit2d_1sample", "check_fit2d_1feature", "check_n_features_in",
            "check_dont_overwrite_parameters", "check_fit_idempotent", "check_fit2d_predict1d", "check_dtype_object",
            "check_dict_unchanged", "check_n_features_in_after_fitting", "check_estimators_dtypes",
            "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_methods_sample_order_invariance",
            "check_estimators_pickle", "check_f_contiguous_array_estimator", "check_fit_check_is_fitted",
            "check_readonly_memmap_input", "check_pipeline_consistency"]


class _NumericTarget(MultimodalSurvivalEstimator):
    """The estimator, fed scikit-learn's generated numeric targets as all-event survival outcomes."""

    @staticmethod
    def _surv(y):
        t = np.abs(np.asarray(y, float)).ravel() + 1.0 + np.arange(len(np.asarray(y).ravel())) * 1e-3
        return Surv.from_arrays(event=np.ones(len(t), bool), time=t)

    def fit(self, X, y=None):
        return super().fit(X, None if y is None else self._surv(y))

    def score(self, X, y=None):
        return super().score(X, None if y is None else self._surv(y))


@pytest.mark.parametrize("check", NO_FIT + WITH_FIT)
def test_scikit_learn_conformance(check):
    est = (_NumericTarget if check in WITH_FIT else MultimodalSurvivalEstimator)(
        epochs=1, d_model=8, num_latents=2, num_heads=2, val_fraction=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(checks, check)(type(est).__name__, est)
