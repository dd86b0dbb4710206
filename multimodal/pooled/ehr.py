"""Pooled EHR features: count / last value / slope per code and (``kinetics``) the change over a look-back window,
from events at or before the prediction time only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import MedsSource
from multimodal.pooled.config import PooledFeaturesConfig

__all__ = ["EhrSummaries", "meds_events"]

_US_PER_DAY = 86_400e6


def meds_events(cohort: Cohort, modality: str, ids: Sequence[str]) -> tuple[list[str], Any]:
    """(patients of ``ids`` with MEDS data, their events at or before the prediction time) via the EHR reading path."""
    import polars as pl

    from multimodal.adapters.ehr import prediction_times
    from multimodal.adapters.meds_io import collect_events, scan_meds

    src = cohort.modalities[modality]
    assert isinstance(src, MedsSource)
    pids = [p for p in dict.fromkeys(map(str, ids)) if p in src.subject_ids]
    pt = prediction_times(cohort, pids, modality=modality)
    subjects = pl.DataFrame({
        "subject_id": pl.Series([src.subject_ids[p] for p in pids], dtype=pl.Int64),
        "pidx": pl.Series(np.arange(len(pids), dtype=np.int32)),
        "pt": pl.Series(pt, dtype=pl.Int64).cast(pl.Datetime("us")),
    })
    return pids, collect_events(scan_meds(src.root), subjects, code_prefix_depth=None, root=src.root)


class EhrSummaries:
    """Per vocabulary code: count, last value and slope over days, from events up to the prediction time."""

    def __init__(self, modality: str, config: PooledFeaturesConfig) -> None:
        self.modality = modality
        self.config = config

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> EhrSummaries:
        pids, ev = meds_events(cohort, self.modality, train_ids)
        _, patients = ev.code_counts(np.ones(len(ev.pidx), dtype=bool))
        has_value = np.bincount(ev.raw[np.isfinite(ev.value)], minlength=len(ev.codes)) > 0
        order = sorted((i for i in range(len(ev.codes)) if patients[i] >= self.config.ehr_min_patients),
                       key=lambda i: (-int(patients[i]), ev.codes[i]))[: self.config.ehr_max_codes]
        self.codes_ = tuple(ev.codes[i] for i in order)
        self.numeric_ = tuple(bool(has_value[i]) for i in order)
        finite = np.isfinite(ev.value)
        nonpositive = np.bincount(ev.raw[finite & (ev.value <= 0)], minlength=len(ev.codes)) > 0
        self.positive_ = tuple(bool(has_value[i] and not nonpositive[i]) for i in order)  # kinetics on the log scale
        self.n_train_patients_ = len(pids)
        return self

    @property
    def kinetics(self) -> bool:
        return "kinetics" in self.config.structure

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"kind": "ehr", "codes": list(self.codes_), "numeric": list(self.numeric_),
                 "positive": list(self.positive_), "n_train_patients": self.n_train_patients_}, {})

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> EhrSummaries:
        self.codes_ = tuple(str(c) for c in meta["codes"])
        self.numeric_ = tuple(bool(v) for v in meta["numeric"])
        self.positive_ = tuple(bool(v) for v in meta.get("positive", [False] * len(self.codes_)))
        self.n_train_patients_ = int(meta["n_train_patients"])
        if not len(self.codes_) == len(self.numeric_) == len(self.positive_):
            raise ValueError("pooled EHR state: 'codes', 'numeric' and 'positive' differ in length")
        return self

    def _change_name(self, code: str) -> str:
        return f"{code}:change{self.config.kinetics_window_days:g}d"

    def columns(self) -> list[str]:
        cols = []
        for code, numeric in zip(self.codes_, self.numeric_, strict=True):
            cols += [f"{code}:count"] + ([f"{code}:last", f"{code}:slope"] if numeric else [])
        return cols + self.structure_columns()

    def structure_columns(self) -> list[str]:
        if not self.kinetics:
            return []
        return [self._change_name(c) for c, numeric in zip(self.codes_, self.numeric_, strict=True) if numeric]

    def transform(self, cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
        from multimodal.adapters.ehr import code_trends

        pids, ev = meds_events(cohort, self.modality, ids)
        v = len(self.codes_)
        index = {c: j for j, c in enumerate(self.codes_)}
        raw_to_j = np.array([index.get(c, -1) for c in ev.codes], dtype=np.int64)
        j = raw_to_j[ev.raw] if len(ev.raw) else np.zeros(0, dtype=np.int64)
        known = j >= 0
        count = np.zeros((len(pids), v))
        np.add.at(count, (ev.pidx[known], j[known]), 1.0)
        ok = known & np.isfinite(ev.value)
        last = _latest(ev.pidx, j, ev.value, ok, (len(pids), v))
        slope = np.full((len(pids), v), np.nan)
        timed = ok & ~ev.static
        p, c, s, _ = code_trends(ev.pidx[timed], j[timed].astype(np.int32), ev.dt_us[timed] / _US_PER_DAY,
                                 ev.value[timed].astype(np.float64), 2)
        slope[p, c] = s
        blocks = []
        for jj, numeric in enumerate(self.numeric_):
            blocks += [count[:, jj]] + ([last[:, jj], slope[:, jj]] if numeric else [])
        if self.kinetics:
            before = _latest(ev.pidx, j, ev.value, timed & (ev.dt_us <= -self.config.kinetics_window_days * _US_PER_DAY),
                             (len(pids), v))
            for jj, numeric in enumerate(self.numeric_):
                if numeric:
                    a, b = last[:, jj], before[:, jj]
                    if self.positive_[jj]:
                        with np.errstate(divide="ignore", invalid="ignore"):
                            blocks.append(np.where((a > 0) & (b > 0), np.log(a / b), np.nan))
                    else:
                        blocks.append(a - b)
        mat = np.column_stack(blocks) if blocks else np.zeros((len(pids), 0))
        table = pd.DataFrame(mat, index=pd.Index(pids), columns=self.columns())
        return table.reindex([str(i) for i in ids])


def _latest(pidx: np.ndarray, j: np.ndarray, value: np.ndarray, ok: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(patients, codes): the latest value of each code among the rows ``ok`` (rows sorted by patient, then time)."""
    out = np.full(shape, np.nan)
    rows = np.flatnonzero(ok)[::-1]  # the first seen backwards is the latest
    key = pidx[rows].astype(np.int64) * max(shape[1], 1) + j[rows]
    _, first = np.unique(key, return_index=True)
    out[pidx[rows[first]], j[rows[first]]] = value[rows[first]]
    return out
