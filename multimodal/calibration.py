"""Apply a pipeline's recalibration maps (``metadata["recalibration"]``, fitted on the inner-validation patients by
:func:`multimodal.pipeline.fit_recalibration`) to raw model outputs.

One place for both consumers, so they show the same probabilities: :meth:`multimodal.pipeline.Pipeline.predict`
(prediction tables) and :func:`multimodal.explain.risk.explain_patient` (``risk_result.json`` and the report). Risk
scores are never mapped (both maps are monotone: every ranking is kept), nor are attributions (they explain the
model's raw output).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from multimodal.errors import IntegrityError

__all__ = ["fitted_map", "map_intercepts", "recalibrate_response", "recalibrate_survival", "recalibrated_parts"]


def fitted_map(entry: Any) -> bool:
    """A fitted map: a slope and an intercept (response) or one intercept per bin (survival)."""
    return isinstance(entry, dict) and "slope" in entry and ("intercept" in entry or "intercepts" in entry)


def map_intercepts(entry: Mapping[str, Any]) -> Any:
    return entry["intercepts"] if "intercepts" in entry else entry["intercept"]


def recalibrated_parts(recalibration: Mapping[str, Any] | None) -> list[str]:
    """Which outputs (``"response"``, ``"survival"``) the recalibration maps change."""
    rec = recalibration or {}
    return [part for part in ("response", "survival") if fitted_map(rec.get(part))]


def recalibrate_response(prob: Any, recalibration: Mapping[str, Any] | None) -> np.ndarray:
    """Binary response probabilities (any shape; one map for every arm) through the fitted Platt map
    ``expit(a + b logit p)``; unchanged (as float64) without one."""
    from multimodal.metrics import apply_logistic_recalibration

    p = np.asarray(prob, dtype=float)
    resp = (recalibration or {}).get("response")
    if not fitted_map(resp):
        return p.copy()
    return apply_logistic_recalibration(p, resp["intercept"], resp["slope"])


def recalibrate_survival(surv: Any, recalibration: Mapping[str, Any] | None) -> np.ndarray:
    """Survival per bin, shape (B, K) (S at the end of each of the K bins, per row), through the fitted map
    ``log H'(t_k) = a_k + b log H(t_k)``; unchanged (as float64) without one. Rows stay in [0, 1], non-increasing."""
    from multimodal.metrics import apply_survival_recalibration

    s = np.asarray(surv, dtype=float)
    if s.ndim != 2:
        raise ValueError(f"recalibrate_survival: expected a (patients, bins) array, got shape {s.shape}")
    entry = (recalibration or {}).get("survival")
    if not fitted_map(entry) or s.shape[1] == 0:
        return s.copy()
    a = np.asarray(map_intercepts(entry), dtype=float)
    if a.ndim and a.shape != (s.shape[1],):
        raise IntegrityError(f"recalibration.survival has {a.size} intercepts for {s.shape[1]} survival bins")
    return apply_survival_recalibration(s, a, entry["slope"])
