"""What a pipeline remembers of its training patients, for reports (``pipeline.json`` → ``training_patients``,
``training_survival``): who they were, as salted hashes, and their Kaplan–Meier survival.

* :func:`patients_record` / :func:`was_training_patient`: a report flags a patient who was one of the model's training
  patients (its prediction is a training-set prediction and looks better than it would for a new patient). Only
  hashes are kept, ``sha256(salt:id)`` cut to 16 hex digits, so pipeline.json lists no patient id. A hash hides an id
  from a reader who cannot guess it; ids from a public, enumerable list (TCGA barcodes) can be recovered by trying
  them, as for any pseudonym.
* :func:`survival_record` / :func:`survival_at`: the training patients' Kaplan–Meier estimate, the "cohort average"
  a patient's predicted survival is shown beside (rather than the KM of whatever manifest is being scored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from multimodal.cohorts.cohort import Cohort

__all__ = ["MAX_KM_POINTS", "MIN_PATIENTS_FOR_AVERAGE", "patients_record", "survival_at", "survival_record",
           "was_training_patient"]

#: Fewest patients with a known outcome for a cohort average to be shown.
MIN_PATIENTS_FOR_AVERAGE = 10
#: The Kaplan–Meier steps kept: every step up to this many, else this many (the estimate at each kept time is exact).
MAX_KM_POINTS = 1000
_SCHEME = "sha256(salt + ':' + patient_id), first 16 hex digits"


def _hash(salt: str, patient_id: str) -> str:
    return hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()[:16]


def patients_record(patient_ids: Sequence[str], cohort_name: str, seed: int) -> dict[str, Any]:
    """Salted hashes of ``patient_ids`` (sorted, so the record does not reveal the training order). The salt is
    derived from the cohort name and seed, so the same training writes the same record."""
    salt = hashlib.sha256(f"{cohort_name}:{seed}:training-patients".encode()).hexdigest()[:16]
    return {"scheme": _SCHEME, "salt": salt, "n": len(patient_ids),
            "hashes": sorted(_hash(salt, str(p)) for p in patient_ids)}


def was_training_patient(record: dict[str, Any] | None, patient_id: str) -> bool | None:
    """True / False when ``record`` (:func:`patients_record`) says, None without a record (an older pipeline)."""
    if not record or "salt" not in record or "hashes" not in record:
        return None
    return _hash(str(record["salt"]), str(patient_id)) in set(record["hashes"])


def survival_record(cohort: Cohort, patient_ids: Sequence[str]) -> dict[str, Any] | None:
    """The Kaplan–Meier estimate of ``patient_ids`` with a known outcome: ``{"times", "survival", "n_patients",
    "n_events", "max_time"}`` (the step times and S just after each), or None below
    :data:`MIN_PATIENTS_FOR_AVERAGE` such patients or without an event."""
    from sksurv.nonparametric import kaplan_meier_estimator

    ids = list(patient_ids)
    known = cohort.outcome_known(ids)
    if int(known.sum()) < MIN_PATIENTS_FOR_AVERAGE:
        return None
    t, e = cohort.survival_arrays(ids)
    t, e = t[known], e[known]
    if not e.any():
        return None
    x, s = kaplan_meier_estimator(e, t)
    if len(x) > MAX_KM_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, MAX_KM_POINTS).round().astype(int))
        x, s = x[keep], s[keep]
    return {"times": [float(v) for v in x], "survival": [float(v) for v in s], "n_patients": int(known.sum()),
            "n_events": int(e.sum()), "max_time": float(t.max())}


def survival_at(record: dict[str, Any], times: Sequence[float]) -> list[float | None]:
    """S(t) of a :func:`survival_record` at ``times`` (1 before the first step; None past the last follow-up, where
    the estimate is undefined)."""
    x = np.asarray(record["times"], dtype=float)
    s = np.asarray(record["survival"], dtype=float)
    idx = np.searchsorted(x, np.asarray(times, dtype=float), side="right") - 1
    vals = [1.0 if i < 0 else float(s[i]) for i in idx]
    return [v if t <= float(record["max_time"]) else None for v, t in zip(vals, times, strict=True)]
