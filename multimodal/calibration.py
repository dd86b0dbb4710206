"""Recalibration maps of a pipeline (``metadata["recalibration"]``): fitted on the inner-validation patients
(:func:`fit_recalibration`), checked when a pipeline loads (:func:`check_recalibration`), applied to raw model outputs.

One place for both consumers, so they show the same probabilities: :meth:`multimodal.pipeline.Pipeline.predict`
(prediction tables) and :func:`multimodal.explain.risk.explain_patient` (``risk_result.json`` and the report). Risk
scores are never mapped (both maps are monotone: every ranking is kept), nor are attributions (they explain the
model's raw output).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import Cohort
from multimodal.errors import IntegrityError
from multimodal.model.configuration import MultimodalConfig

__all__ = ["apply_recalibration", "arm_surv_columns", "check_recalibration", "fit_recalibration", "fitted_map",
           "map_intercepts", "recalibrate_response", "recalibrate_survival", "recalibrated_parts", "surv_columns"]


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


MIN_RECALIBRATION_PATIENTS = 20
MIN_RECALIBRATION_EVENTS = 5


def fit_recalibration(pred: pd.DataFrame | None, cohort: Cohort, config: MultimodalConfig, *,
                      enabled: bool = True, last_time: float | None = None) -> dict[str, Any]:
    """Recalibration maps fitted on the (unrecalibrated) inner-validation predictions ``pred``, for pipeline.json.

    ``{"response": map, "survival": map}``, each map ``{"intercept", "slope", "n", ...}`` from
    :func:`~multimodal.metrics.fit_logistic_recalibration` / :func:`~multimodal.metrics.fit_survival_recalibration`
    or ``{"skipped": reason}``; ``{"skipped": reason}`` alone when switched off or without inner validation.
    ``last_time`` (the largest training time) is where the last, open, bin's survival is read.
    """
    if not enabled:
        return {"skipped": "training.recalibrate is false"}
    if pred is None or pred.empty:
        return {"skipped": "no inner validation patients (training.val_fraction 0)"}
    return {"fitted_on": "inner validation", "n_val": len(pred),
            "response": _fit_response_map(pred, cohort, config),
            "survival": _fit_survival_map(pred, cohort, config, last_time)}


def _too_few(n: int, n_minor: int, what: str) -> dict[str, Any] | None:
    if n < MIN_RECALIBRATION_PATIENTS or n_minor < MIN_RECALIBRATION_EVENTS:
        return {"skipped": f"too few inner validation patients: {n} with {n_minor} {what} (need "
                           f"{MIN_RECALIBRATION_PATIENTS} with {MIN_RECALIBRATION_EVENTS})"}
    return None


def _fit_response_map(pred: pd.DataFrame, cohort: Cohort, config: MultimodalConfig) -> dict[str, Any]:
    from multimodal.metrics import fit_logistic_recalibration

    if config.response_classes == 0 or "response" not in cohort.patients.columns:
        return {"skipped": "the model has no response head"}
    if "response_prob" not in pred.columns:
        return {"skipped": f"{config.response_classes}-class response: the Platt map is for a binary response"}
    r = cohort.patients.loc[pred["patient_id"], "response"]
    known = r.notna().to_numpy()
    y = r[known].astype(int).to_numpy()
    skip = _too_few(len(y), int(min(y.sum(), len(y) - y.sum())), "in the rarer response class")
    if skip:
        return skip
    return fit_logistic_recalibration(y, pred["response_prob"].to_numpy(float)[known])


def surv_columns(frame: pd.DataFrame) -> list[str]:
    return sorted((c for c in frame.columns if c.startswith("surv_") and c[5:].isdigit()), key=lambda c: int(c[5:]))


def arm_surv_columns(frame: pd.DataFrame, arm: int) -> list[str]:
    """``surv_arm_<arm>_<k>`` columns in bin order (:meth:`Pipeline.predict` with ``survival_per_arm``)."""
    stem = f"surv_arm_{arm}_"
    return sorted((c for c in frame.columns if c.startswith(stem) and c[len(stem):].isdigit()),
                  key=lambda c: int(c[len(stem):]))


def _fit_survival_map(pred: pd.DataFrame, cohort: Cohort, config: MultimodalConfig,
                      last_time: float | None) -> dict[str, Any]:
    from multimodal.metrics import UndefinedMetricError, fit_survival_recalibration

    if config.survival != "discrete":
        why = "a Cox head predicts no survival curves" if config.survival == "cox" else "the model has no survival head"
        return {"skipped": why}
    time, event = cohort.survival_arrays(list(pred["patient_id"]))
    skip = _too_few(len(time), int(event.sum()), "events")
    if skip:
        return skip
    edges = [float(x) for x in config.bin_edges]
    last = max(float(last_time if last_time is not None else time.max()), (edges[-1] if edges else 0.0) + 1e-6)
    try:
        return fit_survival_recalibration(pred[surv_columns(pred)].to_numpy(float), time, event, [*edges, last])
    except UndefinedMetricError as exc:
        return {"skipped": str(exc)}


def apply_recalibration(pred: pd.DataFrame, recalibration: Mapping[str, Any] | None) -> pd.DataFrame:
    """``pred`` with its response probabilities (``response_prob``, ``response_prob_arm_<a>``: one map for every arm)
    and survival columns (``surv_<k>``) recalibrated by the fitted maps; unchanged without them.

    The maps are applied by :func:`multimodal.calibration.recalibrate_response` /
    :func:`~multimodal.calibration.recalibrate_survival`, as in the patient report (:mod:`multimodal.explain.risk`).
    """
    out = pred.copy()
    parts = recalibrated_parts(recalibration)
    if "response" in parts:
        for c in [c for c in out.columns if c == "response_prob" or c.startswith("response_prob_arm_")]:
            out[c] = recalibrate_response(out[c].to_numpy(float), recalibration).astype(out[c].dtype)
    blocks = [surv_columns(out)]  # the patient's own arm, then each arm's (surv_arm_<a>_<k>), one map for all
    for a in range(len(out.columns)):
        arm_cols = arm_surv_columns(out, a)
        if not arm_cols:
            break
        blocks.append(arm_cols)
    for cols in blocks:
        if "survival" in parts and cols:
            cal = recalibrate_survival(out[cols].to_numpy(float), recalibration)
            for j, c in enumerate(cols):
                out[c] = cal[:, j].astype(out[c].dtype)
    return out


def check_recalibration(metadata: Mapping[str, Any], *, where: str) -> None:
    """Refuse a malformed ``recalibration`` entry (a fitted map needs a finite intercept and a positive slope)."""
    rec = metadata.get("recalibration")
    if rec is None:
        return
    if not isinstance(rec, dict):
        raise IntegrityError(f"{where}: 'recalibration' must be a JSON object, got {type(rec).__name__}")
    for part in ("response", "survival"):
        entry = rec.get(part)
        if entry is None or (isinstance(entry, dict) and "skipped" in entry and not fitted_map(entry)):
            continue
        if not fitted_map(entry):
            raise IntegrityError(f"{where}: recalibration.{part} must hold 'intercept(s)' and 'slope' or 'skipped'")
        a, b = map_intercepts(entry), entry["slope"]
        values = [*(a if isinstance(a, list) else [a]), b]
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values)
        if not ok or b <= 0 or a == []:
            raise IntegrityError(f"{where}: recalibration.{part} needs finite intercept(s) and a positive slope, got "
                                 f"{a!r} / {b!r}")
