"""Survival curves of a study's predictions on a time grid: discrete-time bins interpolated, Cox via Breslow."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


# ---- survival curves on a grid --------------------------------------------------------------------------------------
def discrete_survival_on_grid(surv_bins: np.ndarray, edges: Sequence[float], t_max: float, grid: np.ndarray) -> np.ndarray:
    """Piecewise-linear S(t) through (0, 1), (edge_1, S_0), ..., (t_max, S_{K-1}) evaluated on ``grid``."""
    knots = np.concatenate([[0.0], np.asarray(edges, float), [max(t_max, (edges[-1] if len(edges) else 0) + 1e-6)]])
    vals = np.concatenate([np.ones((surv_bins.shape[0], 1)), surv_bins], axis=1)
    return np.stack([np.interp(grid, knots, v) for v in vals])


def breslow_survival_on_grid(train_risk: np.ndarray, train_time: np.ndarray, train_event: np.ndarray,
                             risk: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """S(t|x) = S0(t)^exp(risk) with the Breslow baseline estimated on the training fold (scikit-survival's
    :class:`~sksurv.linear_model.coxph.BreslowEstimator`), read as a step function on ``grid``: 0 hazard before the
    first event time, the last cumulative hazard after the last one.

    Risks are shifted by the training maximum on both sides (the product ``H0(t) exp(risk)`` is unchanged), so large
    log hazards cannot overflow."""
    from sksurv.linear_model.coxph import BreslowEstimator

    shift = float(np.max(train_risk))
    est = BreslowEstimator().fit(np.asarray(train_risk, float) - shift, np.asarray(train_event, bool),
                                 np.asarray(train_time, float))
    cum = est.cum_baseline_hazard_
    idx = np.searchsorted(cum.x, np.asarray(grid, float), side="right") - 1
    base = np.where(idx < 0, 0.0, cum.y[np.clip(idx, 0, None)])
    return np.exp(-np.outer(np.exp(np.asarray(risk, float) - shift), base))
