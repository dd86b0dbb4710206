"""Survival curves on a grid from a Cox model's risks: the Breslow baseline (scikit-survival's BreslowEstimator)
against the textbook estimator written out by hand, with and without tied times."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.survival_grid import breslow_survival_on_grid


def _by_hand(train_risk, train_time, train_event, risk, grid):  # noqa: ANN001, ANN202
    """H0(t) = sum over event times u <= t of d(u) / sum_{j at risk at u} exp(risk_j); S = exp(-H0 exp(risk))."""
    uniq = np.unique(train_time[train_event])
    h = [train_event[train_time == u].sum() / np.exp(train_risk[train_time >= u]).sum() for u in uniq]
    cum = np.concatenate([[0.0], np.cumsum(h)])
    return np.exp(-np.outer(np.exp(risk), cum[np.searchsorted(uniq, grid, side="right")]))


@pytest.mark.parametrize("ties", [False, True])
def test_breslow_curves_equal_the_textbook_estimator(ties: bool) -> None:
    rng = np.random.default_rng(int(ties))
    n = 150
    risk_train = rng.normal(size=n)
    time = rng.integers(1, 40, n).astype(float) if ties else rng.exponential(10.0, n)
    event = rng.random(n) < 0.5
    grid = np.linspace(0.0, time.max() * 1.3, 50)  # before the first event and past the last follow-up too
    risk = rng.normal(size=20)
    got = breslow_survival_on_grid(risk_train, time, event, risk, grid)
    assert got.shape == (20, 50) and np.all(got[:, 0] == 1.0)
    assert np.all(np.diff(got, axis=1) <= 1e-15)  # non-increasing
    np.testing.assert_allclose(got, _by_hand(risk_train, time, event, risk, grid), rtol=1e-10, atol=1e-12)


def test_large_log_hazards_do_not_overflow() -> None:
    time, event = np.array([1.0, 2.0, 3.0, 4.0]), np.array([True, True, False, True])
    s = breslow_survival_on_grid(np.array([800.0, 801.0, 799.0, 800.5]), time, event, np.array([800.0]),
                                 np.array([0.5, 2.5, 5.0]))
    assert np.all(np.isfinite(s)) and s[0, 0] == 1.0 and 0.0 < s[0, 1] < 1.0
