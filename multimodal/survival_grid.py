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
    """S(t|x) = S0(t)^exp(risk) with the Breslow baseline estimated on the training fold."""
    order = np.argsort(train_time)
    t, e, r = train_time[order], train_event[order], np.exp(train_risk[order] - train_risk.max())
    at_risk = np.cumsum(r[::-1])[::-1]
    uniq = np.unique(t[e])
    h0 = np.array([e[t == u].sum() / at_risk[np.searchsorted(t, u)] for u in uniq])
    cum = np.concatenate([[0.0], np.cumsum(h0)])
    idx = np.searchsorted(uniq, grid, side="right")
    base = cum[idx]
    return np.exp(-np.outer(np.exp(risk - train_risk.max()), base))
