"""Calibration metrics (slope, ICI) and the recalibration maps fitted on inner-validation patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from scipy.stats import rankdata

from multimodal.errors import IntegrityError
from multimodal.metrics import (
    UndefinedMetricError,
    apply_logistic_recalibration,
    apply_survival_recalibration,
    auroc,
    calibration_slope,
    fit_logistic_recalibration,
    fit_survival_recalibration,
    harrell_c,
    response_ici,
    response_metrics,
    survival_calibration_slope,
    survival_ici,
)
from multimodal.pipeline import apply_recalibration, check_recalibration

LAMBDA = 0.1  # baseline hazard of the exponential survival model


def _logistic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes from a known logistic model: (true probability, y)."""
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(-0.3, 1.2, n))
    return p, rng.random(n) < p


def _exp_survival(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exponential survival with hazard LAMBDA exp(x), independent censoring: (x, time, event)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(1 / (LAMBDA * np.exp(x)))
    c = rng.exponential(15.0, n)
    return x, np.minimum(t, c), t <= c


def _true_surv(x: np.ndarray, h: float) -> np.ndarray:
    return np.exp(-LAMBDA * h * np.exp(x))


# ---- response ICI ----------------------------------------------------------------------------------------------------
def test_response_ici_is_zero_for_true_probabilities_and_large_when_shifted():
    p, y = _logistic(4000, 0)
    assert response_ici(y, p) < 0.02
    shifted = expit(logit(p) + 1.0)
    assert response_ici(y, shifted) > 0.15
    assert response_ici(y, shifted) == pytest.approx(np.mean(np.abs(shifted - p)), abs=0.03)
    m = response_metrics(y, p)
    assert m["ici"] == pytest.approx(response_ici(y, p)) and 0 <= m["ici"] <= 1


def test_response_ici_undefined_cases():
    with pytest.raises(UndefinedMetricError):
        response_ici([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3])
    with pytest.raises(UndefinedMetricError):
        response_ici([1, 1, 1], [0.2, 0.5, 0.7])
    assert response_metrics([1, 1, 1], [0.2, 0.5, 0.7])["ici"] is None


# ---- survival slope and ICI ------------------------------------------------------------------------------------------
def test_survival_calibration_of_the_true_model_and_of_miscalibrated_ones():
    x, t, e = _exp_survival(3000, 1)
    h = float(np.median(t[e]))
    s = _true_surv(x, h)
    assert survival_ici(t, e, s, h) < 0.02
    assert survival_calibration_slope(t, e, s) == pytest.approx(1.0, abs=0.08)
    # shifted: every predicted risk too high (H doubled): the slope stays 1, the ICI does not
    assert survival_ici(t, e, s**2, h) > 0.1
    assert survival_calibration_slope(t, e, s**2) == pytest.approx(1.0, abs=0.08)
    # overconfident: log H stretched twice around its mean -> slope 1/2; timid: squeezed -> slope 2
    log_h = np.log(-np.log(s))
    stretched = np.exp(-np.exp(log_h.mean() + 2 * (log_h - log_h.mean())))
    squeezed = np.exp(-np.exp(log_h.mean() + 0.5 * (log_h - log_h.mean())))
    assert survival_calibration_slope(t, e, stretched) == pytest.approx(0.5, abs=0.05)
    assert survival_calibration_slope(t, e, squeezed) == pytest.approx(2.0, abs=0.15)
    assert survival_ici(t, e, stretched, h) > 0.05


def test_survival_calibration_undefined_cases():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(UndefinedMetricError):  # one event
        survival_ici(t, [True, False, False, False], [0.9, 0.8, 0.7, 0.6], 2.5)
    with pytest.raises(UndefinedMetricError):  # constant prediction
        survival_calibration_slope(t, [True, True, False, True], [0.5] * 4)


# ---- recalibration: response -----------------------------------------------------------------------------------------
def test_platt_recalibration_fixes_a_squashed_predictor_and_keeps_its_ranking():
    p_val, y_val = _logistic(400, 2)
    p_test, y_test = _logistic(6000, 3)
    squash = 0.4  # probabilities squashed toward 0.5: calibration slope 2.5
    assert calibration_slope(y_test, expit(squash * logit(p_test))) == pytest.approx(1 / squash, rel=0.1)
    fit = fit_logistic_recalibration(y_val, expit(squash * logit(p_val)))
    assert fit["slope"] == pytest.approx(1 / squash, rel=0.25) and fit["n"] == 400
    before = expit(squash * logit(p_test))
    after = apply_logistic_recalibration(before, fit["intercept"], fit["slope"])
    assert calibration_slope(y_test, after) == pytest.approx(1.0, abs=0.15)
    assert response_ici(y_test, after) < response_ici(y_test, before)
    assert abs(auroc(y_test, after) - auroc(y_test, before)) < 1e-9


def test_platt_recalibration_of_a_calibrated_predictor_is_close_to_identity():
    p, y = _logistic(3000, 4)
    fit = fit_logistic_recalibration(y, p)
    assert fit["slope"] == pytest.approx(1.0, abs=0.1) and fit["intercept"] == pytest.approx(0.0, abs=0.1)


def test_the_prior_keeps_a_small_separated_sample_from_a_wild_map():
    y = np.array([0] * 15 + [1] * 15)
    p = np.r_[np.linspace(0.40, 0.49, 15), np.linspace(0.51, 0.60, 15)]  # separated: the MLE slope is infinite
    fit = fit_logistic_recalibration(y, p)
    assert np.isfinite(fit["slope"]) and 1.0 < fit["slope"] < 60
    assert abs(fit["intercept"]) < 3


# ---- recalibration: survival -----------------------------------------------------------------------------------------
EDGES = np.array([3.0, 7.0, 14.0])  # the model's interior cut points: 4 bins
FOLLOW_UP = 40.0  # administrative censoring; the last bin's S is read there


def _binned(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t, e = _exp_survival(n, seed)
    return x, np.minimum(t, FOLLOW_UP), e & (t < FOLLOW_UP)


def _bin_survival(x: np.ndarray, stretch: float = 1.0, shift: float = 0.0) -> np.ndarray:
    """S(t_k | x) at the bin ends of the true model, miscalibrated as log H -> shift + stretch log H."""
    log_h = np.log(LAMBDA * np.r_[EDGES, FOLLOW_UP][None, :] * np.exp(x)[:, None])
    return np.exp(-np.exp(shift + stretch * log_h))


def test_survival_recalibration_fixes_miscalibrated_curves_and_keeps_rankings():
    x_val, t_val, e_val = _binned(500, 5)
    x_te, t_te, e_te = _binned(4000, 6)
    fit = fit_survival_recalibration(_bin_survival(x_val, 0.5, 0.8), t_val, e_val, np.r_[EDGES, FOLLOW_UP])
    assert fit["slope"] == pytest.approx(2.0, rel=0.1) and fit["intercepts"] == pytest.approx([-1.6] * 4, abs=0.3)
    assert fit["n_events"] == int(e_val.sum()) and fit["bin_ends"] == [*EDGES, FOLLOW_UP]
    before = _bin_survival(x_te, 0.5, 0.8)
    after = apply_survival_recalibration(before, fit["intercepts"], fit["slope"])
    assert np.all((after >= 0) & (after <= 1)) and np.all(np.diff(after, axis=1) <= 0)
    for k, h in enumerate(EDGES):  # S at the end of bin k
        assert survival_calibration_slope(t_te, e_te, before[:, k]) == pytest.approx(2.0, abs=0.2)  # too timid
        assert survival_calibration_slope(t_te, e_te, after[:, k]) == pytest.approx(1.0, abs=0.1)
        assert survival_ici(t_te, e_te, after[:, k], h) < 0.02 < 0.1 < survival_ici(t_te, e_te, before[:, k], h)
    for j in range(after.shape[1]):  # every bin keeps the ranking of the patients (ranks: sksurv ties risks < 1e-8)
        np.testing.assert_array_equal(rankdata(after[:, j]), rankdata(before[:, j]))
        c_after, c_before = (harrell_c(t_te, e_te, rankdata(-s[:, j])) for s in (after, before))
        assert abs(c_after - c_before) < 1e-9


def test_survival_recalibration_of_calibrated_curves_is_close_to_identity():
    x, t, e = _binned(3000, 7)
    fit = fit_survival_recalibration(_bin_survival(x), t, e, np.r_[EDGES, FOLLOW_UP])
    assert fit["slope"] == pytest.approx(1.0, abs=0.05) and fit["intercepts"] == pytest.approx([0.0] * 4, abs=0.1)


def test_survival_recalibration_re_estimates_a_wrong_time_shape():
    """A model whose baseline is too steep early and too flat late: one intercept per bin end fixes each."""
    x_val, t_val, e_val = _binned(600, 9)
    x_te, t_te, e_te = _binned(4000, 10)
    shift = np.array([1.0, 0.5, 0.0, -0.5])  # log H off by +1 at the first bin end ... -0.5 at the last

    def wrong(x: np.ndarray) -> np.ndarray:
        return np.exp(-np.exp(shift + np.log(-np.log(_bin_survival(x)))))

    fit = fit_survival_recalibration(wrong(x_val), t_val, e_val, np.r_[EDGES, FOLLOW_UP])
    assert fit["intercepts"] == pytest.approx(-shift, abs=0.3) and fit["slope"] == pytest.approx(1.0, abs=0.15)
    after = apply_survival_recalibration(wrong(x_te), fit["intercepts"], fit["slope"])
    for k, h in enumerate(EDGES):  # bin end 2 was right: it stays right
        assert survival_ici(t_te, e_te, after[:, k], h) < 0.03
        assert survival_ici(t_te, e_te, wrong(x_te)[:, k], h) > (0.03 if shift[k] else 0.0)


def test_apply_survival_recalibration_keeps_curves_valid_at_the_extremes():
    s = np.array([[1.0, 0.9, 0.2, 0.0], [0.999999, 0.5, 0.5, 1e-9]])
    out = apply_survival_recalibration(s, 1.5, 3.0)
    assert np.all((out >= 0) & (out <= 1)) and np.all(np.diff(out, axis=1) <= 0)
    assert out[0, 0] == 1.0 and out[0, 3] == 0.0


# ---- maps on a prediction frame --------------------------------------------------------------------------------------
def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    s = np.sort(rng.uniform(0.05, 0.99, (10, 3)), axis=1)[:, ::-1]
    return pd.DataFrame({"patient_id": [f"p{i}" for i in range(10)], "risk": rng.normal(size=10),
                         **{f"surv_{k}": s[:, k].astype(np.float32) for k in range(3)},
                         "response_prob": rng.uniform(0.1, 0.9, 10).astype(np.float32),
                         "response_prob_arm_0": rng.uniform(0.1, 0.9, 10).astype(np.float32),
                         "response_prob_arm_1": rng.uniform(0.1, 0.9, 10).astype(np.float32)})


def test_apply_recalibration_maps_every_probability_column_and_keeps_risk():
    raw = _frame()
    rec = {"response": {"intercept": 0.3, "slope": 2.0}, "survival": {"intercepts": [-0.2, 0.0, 0.1], "slope": 1.5}}
    out = apply_recalibration(raw, rec)
    pd.testing.assert_series_equal(out["risk"], raw["risk"])
    for c in ("response_prob", "response_prob_arm_0", "response_prob_arm_1"):
        want = apply_logistic_recalibration(raw[c].to_numpy(float), 0.3, 2.0)
        np.testing.assert_allclose(out[c], want, rtol=1e-6)
        assert out[c].dtype == raw[c].dtype
    cols = ["surv_0", "surv_1", "surv_2"]
    want = apply_survival_recalibration(raw[cols].to_numpy(float), [-0.2, 0.0, 0.1], 1.5)
    np.testing.assert_allclose(out[cols], want, rtol=1e-6)
    with pytest.raises(IntegrityError, match="2 intercepts for 3"):
        apply_recalibration(raw, {"survival": {"intercepts": [0.0, 0.1], "slope": 1.0}})
    # no map (pipelines saved before recalibration), a skipped map: unchanged
    for none in (None, {}, {"skipped": "training.recalibrate is false"}, {"response": {"skipped": "x"}}):
        pd.testing.assert_frame_equal(apply_recalibration(raw, none), raw)


def test_check_recalibration_refuses_a_tampered_map():
    check_recalibration({}, where="p")
    check_recalibration({"recalibration": {"skipped": "no inner validation"}}, where="p")
    check_recalibration({"recalibration": {"response": {"skipped": "x"},
                                           "survival": {"intercepts": [0, 0.5], "slope": 1}}}, where="p")
    for bad in ([1, 2], {"survival": {"intercept": 0.0, "slope": -1.0}}, {"response": {"intercept": "a", "slope": 1}},
                {"response": {"slope": 1.0}}, {"survival": {"intercepts": [0.0, float("nan")], "slope": 1.0}},
                {"survival": {"intercepts": [], "slope": 1.0}}):
        with pytest.raises(IntegrityError):
            check_recalibration({"recalibration": bad}, where="p")
