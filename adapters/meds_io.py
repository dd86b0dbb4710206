"""MEDS events for the EHR adapter: code truncation and the one polars plan that collects a cohort's events.

The shard readers (file discovery, dtype and value checks, the canonical scan) live in
:mod:`multimodal.cohorts.formats.meds` and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from multimodal.cohorts.formats.meds import (
    COLUMNS,
    DATA_SUBDIR,
    ShardInfo,
    check_shards,
    content_problems,
    meds_files,
    scan_meds,
    shard_problems,
)
from multimodal.errors import InputError

__all__ = [
    "COLUMNS", "DATA_SUBDIR", "CollectedEvents", "ShardInfo", "check_shards", "collect_events", "content_problems",
    "meds_files", "scan_meds", "shard_problems", "truncate_codes",
]


def truncate_codes(code: pl.Expr, depth: int) -> pl.Expr:
    """Keep the first ``depth`` ``//``-separated parts of each code (``LAB//123//mg`` at depth 2 -> ``LAB//123``)."""
    return code.str.split("//").list.head(depth).list.join("//")


@dataclass(frozen=True)
class CollectedEvents:
    """Every usable event of the bound patients, flat and sorted by (patient, time, code, value).

    Attributes:
        codes: the distinct codes in the bound data (after prefix truncation), sorted; ``raw`` indexes it.
        pidx: (E,) int32 patient row (index into the subject table's patients).
        static: (E,) bool, True for static rows (null time); they come first within a patient.
        dt_us: (E,) int64 event time minus prediction time in microseconds (<= 0; 0 for static rows).
        raw: (E,) int32 index into ``codes``.
        value: (E,) float32 numeric value, NaN where absent.
    """

    codes: list[str]
    pidx: np.ndarray
    static: np.ndarray
    dt_us: np.ndarray
    raw: np.ndarray
    value: np.ndarray

    def code_counts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(events, distinct patients) per code over the rows selected by the boolean mask ``rows``."""
        n = len(self.codes)
        raw = self.raw[rows].astype(np.int64)
        events = np.bincount(raw, minlength=n).astype(np.int64)
        key = self.pidx[rows].astype(np.int64) * max(n, 1) + raw
        key.sort(kind="stable")  # already grouped by patient: cheap
        first = np.ones(len(key), dtype=bool)
        np.not_equal(key[1:], key[:-1], out=first[1:])
        patients = np.bincount(key[first] % max(n, 1), minlength=n).astype(np.int64)
        return events, patients


def collect_events(meds: pl.LazyFrame, subjects: pl.DataFrame, *, code_prefix_depth: int | None,
                   root: Path) -> CollectedEvents:
    """Join prediction times, apply the leakage guard, sort and collect, in one polars plan.

    ``subjects`` has one row per bound patient: ``subject_id`` (Int64), ``pidx`` (Int32) and ``pt`` (Datetime us,
    the prediction time). Only rows with ``time <= pt`` (inclusive) or a null ``time`` (static) survive the filter,
    which runs before anything else, so nothing downstream (tokens, vocabulary, statistics) sees a later row. The code
    table and the event table share one scan (``collect_all``).
    """
    base = meds.join(subjects.lazy(), on="subject_id", how="inner").filter(
        pl.col("time").is_null() | (pl.col("time") <= pl.col("pt"))
    )
    if code_prefix_depth is not None:
        base = base.with_columns(truncate_codes(pl.col("code"), code_prefix_depth).alias("code"))
    # raw = rank of the code string: depends on values only, not on row order (which polars 2 may not keep)
    code_q = base.group_by("code").agg(pl.len()).select(
        "code", (pl.col("code").rank("dense") - 1).cast(pl.Int32).alias("raw")
    )
    event_q = (
        base.join(code_q, on="code", how="inner")
        .select(
            "pidx",
            (pl.col("time") - pl.col("pt")).dt.total_microseconds().alias("dt"),
            "raw",
            pl.col("numeric_value").alias("value"),
        )
        .sort(["pidx", "dt", "raw", "value"], nulls_last=False)  # explicit: polars 2 does not keep row order
    )
    code_df, ev = pl.collect_all([code_q, event_q])
    code_df = code_df.sort("raw", nulls_last=False)
    if code_df["code"].null_count():
        raise InputError(
            "MEDS rows with a null code", file=Path(root) / DATA_SUBDIR, field="code",
            hint="MEDS 0.4 requires a non-null code on every row",
        )
    dt = ev["dt"]
    return CollectedEvents(
        codes=code_df["code"].to_list(),
        pidx=ev["pidx"].to_numpy().astype(np.int32, copy=False),
        static=dt.is_null().to_numpy(),
        dt_us=dt.fill_null(0).to_numpy().astype(np.int64, copy=False),
        raw=ev["raw"].to_numpy().astype(np.int32, copy=False),
        value=ev["value"].cast(pl.Float32).to_numpy().astype(np.float32, copy=False),
    )
