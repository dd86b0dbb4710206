"""Survival and response metrics: hand-computed values, edge cases, IPCW follow-up handling, bootstrap CIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, logit

from multimodal.errors import InputError
from multimodal.metrics import (
    UndefinedMetricError,
    auprc,
    auroc,
    auto_horizons,
    bootstrap_ci,
    brier,
    calibration_at,
    calibration_slope,
    harrell_c,
    integrated_brier,
    response_metrics,
    summarize_folds,
    survival_metrics,
    td_auc,
    uno_c,
)

TIME = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
EVENT = np.array([True, False, True, True, False])


def _exp_cohort(n: int, seed: int, censor_scale: float | None = 3.0):
    """Exponential survival with hazard exp(x); independent exponential censoring."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-x))
    if censor_scale is None:
        return x, t, np.ones(n, bool)
    c = rng.exponential(censor_scale, n)
    return x, np.minimum(t, c), t <= c


# ---- Harrell ---------------------------------------------------------------------------------------------------------
def test_harrell_hand_computed():
    # comparable pairs (i has the event, j outlives i): (0,1) (0,2) (0,3) (0,4) (2,3) (2,4) (3,4) = 7
    assert harrell_c(TIME, EVENT, [0.9, 0.5, 0.7, 0.3, 0.1]) == 1.0
    # risk[3] = 0.8 > risk[2] = 0.7 makes pair (2,3) discordant: 6/7
    assert harrell_c(TIME, EVENT, [0.9, 0.5, 0.7, 0.8, 0.1]) == pytest.approx(6 / 7)
    # plus a tie in risk on pair (0,1): counts 1/2 -> 5.5/7
    assert harrell_c(TIME, EVENT, [0.9, 0.9, 0.7, 0.8, 0.1]) == pytest.approx(5.5 / 7)


def test_harrell_perfect_anti_and_constant():
    _, t, e = _exp_cohort(60, 0)
    assert harrell_c(t, e, -t) == 1.0
    assert harrell_c(t, e, t) == 0.0
    assert harrell_c(t, e, np.zeros_like(t)) == 0.5
    assert isinstance(harrell_c(t, e, -t), float)


def test_harrell_undefined_and_bad_input():
    with pytest.raises(UndefinedMetricError, match="censored"):
        harrell_c(TIME, np.zeros(5, bool), TIME)
    with pytest.raises(UndefinedMetricError, match="comparable"):
        harrell_c([5.0, 1.0], [True, False], [0.0, 1.0])
    with pytest.raises(InputError, match="risk has 4 samples"):
        harrell_c(TIME, EVENT, [1, 2, 3, 4])
    with pytest.raises(InputError, match="0-1"):
        harrell_c(TIME, [0, 1, 2, 1, 0], TIME)
    with pytest.raises(InputError, match="non-finite"):
        harrell_c(TIME, EVENT, [1, 2, np.nan, 4, 5])


# ---- Uno / td-AUC / IBS ----------------------------------------------------------------------------------------------
def test_uno_equals_harrell_without_censoring():
    x, t, e = _exp_cohort(80, 1, censor_scale=None)
    train_t = np.r_[t, t.max() * 2]  # training follow-up covers the test set
    train_e = np.ones(train_t.shape, bool)
    assert uno_c(train_t, train_e, t, e, x) == pytest.approx(harrell_c(t, e, x), abs=1e-12)


def test_uno_close_to_harrell_with_light_censoring():
    x, t, e = _exp_cohort(400, 2, censor_scale=20.0)
    assert abs(uno_c(t, e, t, e, x) - harrell_c(t, e, x)) < 0.03


def test_uno_when_the_last_training_time_is_censored():
    x, t, e = _exp_cohort(100, 12)
    last = np.argmax(t)
    train_e, test_e = e.copy(), e.copy()
    train_e[last], test_e[last] = False, True  # censoring KM is 0 at the last training time; a test event sits there
    with pytest.warns(UserWarning, match="censoring survival is 0"):
        v = uno_c(t, train_e, t, test_e, x)
    assert 0.5 < v < 1.0


def test_uno_clips_tau_beyond_training_follow_up():
    x, t, e = _exp_cohort(200, 3)
    tr = slice(0, 100)
    te = np.r_[t[100:], t[tr].max() * 5]  # one test patient followed far beyond the training fold
    ee = np.r_[e[100:], True]
    xx = np.r_[x[100:], 3.0]
    with pytest.warns(UserWarning, match="clipped"):
        v = uno_c(t[tr], e[tr], te, ee, xx)
    assert 0.5 < v <= 1.0
    with pytest.warns(UserWarning, match="tau"):
        uno_c(t[tr], e[tr], t[100:], e[100:], x[100:], tau=1e6)


def test_td_auc_perfect_and_auto_horizons():
    x, t, e = _exp_cohort(300, 4)
    train, test = slice(0, 150), slice(150, 300)
    h = auto_horizons(t[train], e[train], t[test], e[test])
    assert len(h) >= 5 and h == sorted(h)
    assert min(h) >= t[test].min() and max(h) < min(t[test].max(), t[train].max())
    res = td_auc(t[train], e[train], t[test], e[test], -t[test])
    assert res["horizons"] == h
    assert all(a == pytest.approx(1.0) for a in res["auc"]) and res["mean_auc"] == pytest.approx(1.0)
    informative = td_auc(t[train], e[train], t[test], e[test], x[test])["mean_auc"]
    assert 0.6 < informative < 0.95


def test_td_auc_drops_invalid_horizons_with_warning():
    x, t, e = _exp_cohort(200, 5)
    with pytest.warns(UserWarning, match="dropped horizon"):
        res = td_auc(t, e, t, e, x, horizons=[-1.0, float(np.median(t)), 1e9])
    assert res["horizons"] == [float(np.median(t))]


def test_ibs_orders_perfect_km_and_reversed_predictors():
    _, t, e = _exp_cohort(300, 6, censor_scale=None)
    grid = np.quantile(t, np.linspace(0.05, 0.9, 20))
    perfect = (t[:, None] > grid[None, :]).astype(float)
    km = np.broadcast_to((t[None, :] > grid[:, None]).mean(axis=1), perfect.shape)  # empirical S(t), no censoring
    reversed_ = 1.0 - perfect
    ibs = {name: integrated_brier(t, e, t, e, s, grid) for name, s in (("p", perfect), ("km", km), ("r", reversed_))}
    assert ibs["p"] == pytest.approx(0.0, abs=1e-12)
    assert 0.1 < ibs["km"] < 0.25
    assert ibs["r"] > ibs["km"]


def test_ibs_needs_two_valid_grid_points_and_right_shape():
    _, t, e = _exp_cohort(100, 7)
    with pytest.raises(InputError, match="surv_probs"):
        integrated_brier(t, e, t, e, np.ones((100, 3)), [0.1, 0.2])
    with pytest.raises(UndefinedMetricError, match="valid grid"), pytest.warns(UserWarning):
        integrated_brier(t, e, t, e, np.ones((100, 2)), [0.1, 1e9])


def test_calibration_of_the_true_model():
    x, t, e = _exp_cohort(4000, 8)
    h = float(np.median(t[e]))
    true_surv = np.exp(-np.exp(x) * h)  # exponential model: S(h | x) = exp(-h * exp(x))
    cal = calibration_at(t, e, true_surv, h, bins=5)
    assert len(cal["bins"]) == 5 and sum(b["n"] for b in cal["bins"]) == 4000
    assert cal["slope"] == pytest.approx(1.0, abs=0.15)
    assert cal["intercept"] == pytest.approx(0.0, abs=0.08)
    assert cal["ici"] < 0.05
    json.dumps(cal, allow_nan=False)
    flat = calibration_at(t, e, np.full(4000, 0.5), h)  # constant prediction: one bin, no line
    assert len(flat["bins"]) == 1 and flat["slope"] is None


# ---- response --------------------------------------------------------------------------------------------------------
def test_response_hand_computed():
    y = np.array([0, 0, 1, 1])
    assert auroc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auprc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert brier(y, [0.0, 0.5, 0.5, 1.0]) == pytest.approx(0.125)


def test_calibration_slope_recovers_over_and_under_confidence():
    rng = np.random.default_rng(9)
    p_true = expit(rng.normal(0, 1.5, 20000))
    y = rng.random(20000) < p_true
    assert calibration_slope(y, p_true) == pytest.approx(1.0, abs=0.08)
    assert calibration_slope(y, expit(2 * logit(p_true))) == pytest.approx(0.5, abs=0.05)
    assert calibration_slope(y, expit(0.5 * logit(p_true))) == pytest.approx(2.0, abs=0.15)


def test_response_undefined_cases():
    with pytest.raises(UndefinedMetricError, match="single class"):
        auroc([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(UndefinedMetricError, match="converge"):
        calibration_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])  # separated: slope unbounded
    with pytest.raises(InputError, match="probabilities"):
        brier([0, 1], [0.5, 1.5])
    out = response_metrics([1, 1, 1], [0.2, 0.5, 0.9])
    assert out["auroc"] is None and out["brier"] == pytest.approx((0.64 + 0.25 + 0.01) / 3)


# ---- bundles, bootstrap, folds ---------------------------------------------------------------------------------------
def test_survival_metrics_bundle_is_json_serializable():
    x, t, e = _exp_cohort(300, 10)
    tr, te = slice(0, 200), slice(200, 300)
    grid = auto_horizons(t[tr], e[tr], t[te], e[te])
    surv = np.exp(-np.exp(x[te])[:, None] * np.asarray(grid)[None, :])
    out = survival_metrics(t[te], e[te], x[te], train_time=t[tr], train_event=e[tr], surv_probs=surv, grid=grid)
    assert set(out) >= {"c_index", "c_index_uno", "td_auc", "ibs"}
    for key in ("c_index", "c_index_uno", "td_auc"):
        assert type(out[key]) is float and 0.6 < out[key] < 0.95, key
    assert type(out["ibs"]) is float and 0 < out["ibs"] < 0.25
    json.dumps(out, allow_nan=False)
    none = survival_metrics(t[:5], np.zeros(5, bool), x[:5])
    assert none["c_index"] is None and none["td_auc"] is None and none["ibs"] is None


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    widths = []
    for n in (60, 540):
        x, t, e = _exp_cohort(n, 11)
        ci = bootstrap_ci(harrell_c, t, e, x, n_boot=150, seed=1)
        assert ci["estimate"] == harrell_c(t, e, x)
        assert ci["lower"] < ci["estimate"] < ci["upper"]
        assert ci["n_valid"] + ci["n_skipped"] == 150
        widths.append(ci["upper"] - ci["lower"])
        json.dumps(ci, allow_nan=False)
    assert widths[1] < widths[0] / 2  # ~ 1/sqrt(n): 3x narrower expected
    again = bootstrap_ci(harrell_c, t, e, x, n_boot=150, seed=1)
    assert again == ci


def test_bootstrap_skips_undefined_resamples():
    t = np.arange(1.0, 21.0)
    e = np.zeros(20, bool)
    e[0] = True  # one event: many resamples miss it
    ci = bootstrap_ci(harrell_c, t, e, -t, n_boot=200, seed=0)
    assert ci["n_skipped"] > 0 and ci["n_valid"] + ci["n_skipped"] == 200
    assert ci["estimate"] == 1.0 and ci["upper"] == 1.0


def test_summarize_folds():
    folds = [{"c_index": 0.6, "ibs": 0.2, "td_auc_values": [1, 2]}, {"c_index": 0.7, "ibs": None}, {"c_index": 0.8}]
    s = summarize_folds(folds)
    assert s["mean"]["c_index"] == pytest.approx(0.7)
    assert s["std"]["c_index"] == pytest.approx(0.1)
    assert "ci95" not in s  # no t-interval over folds: the study's CIs are a bootstrap over patients
    assert s["n"] == {"c_index": 3, "ibs": 1}
    assert s["mean"]["ibs"] == 0.2 and s["std"]["ibs"] is None
    assert "td_auc_values" not in s["mean"]
    assert summarize_folds(folds, ddof=0)["std"]["c_index"] == pytest.approx(np.std([0.6, 0.7, 0.8]))
    json.dumps(s, allow_nan=False)
