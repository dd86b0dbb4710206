"""Reading MEDS 0.4 data shards with polars: file discovery, dtype checks and one canonical lazy scan.

A MEDS directory holds ``data/**/*.parquet`` shards with the columns (formats-and-apis §2.1)::

    subject_id: int64 (not null) | time: timestamp[us] (null = static) | code: string | numeric_value: float32 (opt.)

:func:`scan_meds` checks every shard's parquet footer (no data is read) and returns one ``pl.LazyFrame`` with exactly
these four columns in canonical dtypes (``time`` cast to microseconds, ``numeric_value`` added as nulls where a shard
lacks it, ``code`` as ``String``). Row order is *not* part of the contract: polars 2's streaming engine does not keep
it, so every consumer sorts explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from multimodal.errors import InputError, Problem

DATA_SUBDIR = "data"
COLUMNS = ("subject_id", "time", "code", "numeric_value")
_HINT = "MEDS 0.4 DataSchema: subject_id int64, time timestamp[us], code string, numeric_value float32"


@dataclass(frozen=True)
class ShardInfo:
    """One data shard and what its footer says about casts needed."""

    path: Path
    time_unit: str
    has_numeric_value: bool
    code_is_plain_string: bool
    numeric_is_float32: bool


def meds_files(root: Path) -> list[Path]:
    """The data shards under ``root/data`` (sorted), or an :class:`InputError` naming the folder."""
    data = Path(root) / DATA_SUBDIR
    if not data.is_dir():
        raise InputError(
            "MEDS directory has no data/ folder",
            file=data,
            field="data",
            hint="MEDS 0.4 layout: <root>/data/<split>/<shard>.parquet + <root>/metadata/",
        )
    files = sorted(p for p in data.rglob("*.parquet") if p.is_file())
    if not files:
        raise InputError("no parquet files under data/", file=data, field="data", hint=_HINT)
    return files


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def shard_problems(path: Path) -> tuple[ShardInfo | None, list[Problem]]:
    """Check one shard's column dtypes from its parquet footer."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        return None, [Problem(f"cannot read parquet footer: {exc}", file=str(path), field="schema")]
    problems: list[Problem] = []

    def bad(field: str, expected: str, actual: object) -> None:
        msg = f"MEDS column {field!r} has dtype {actual}, expected {expected}"
        problems.append(Problem(msg, file=str(path), field=field, hint=_HINT))

    for col in ("subject_id", "time", "code"):
        if col not in schema.names:
            problems.append(Problem(f"MEDS data shard lacks column {col!r}", file=str(path), field=col, hint=_HINT))
    names = set(schema.names)
    if "subject_id" in names and not pa.types.is_int64(schema.field("subject_id").type):
        bad("subject_id", "int64", schema.field("subject_id").type)
    time_t = schema.field("time").type if "time" in names else None
    if time_t is not None and not (pa.types.is_timestamp(time_t) and time_t.tz is None):
        bad("time", "timestamp[us] without time zone", time_t)
    code_t = schema.field("code").type if "code" in names else None
    code_ok = code_t is not None and (
        _is_string(code_t) or (pa.types.is_dictionary(code_t) and _is_string(code_t.value_type))
    )
    if code_t is not None and not code_ok:
        bad("code", "string", code_t)
    num_t = schema.field("numeric_value").type if "numeric_value" in names else None
    if num_t is not None and not (pa.types.is_floating(num_t) or pa.types.is_null(num_t)):
        bad("numeric_value", "float32", num_t)
    if problems:
        return None, problems
    assert time_t is not None and code_t is not None
    info = ShardInfo(
        path=path,
        time_unit=time_t.unit,
        has_numeric_value=num_t is not None,
        code_is_plain_string=pa.types.is_string(code_t) or pa.types.is_large_string(code_t),
        numeric_is_float32=num_t is not None and pa.types.is_float32(num_t),
    )
    return info, []


def check_shards(files: Sequence[Path]) -> list[ShardInfo]:
    """Footer checks of every shard; all problems found are raised together."""
    infos: list[ShardInfo] = []
    problems: list[Problem] = []
    for f in files:
        info, probs = shard_problems(f)
        problems += probs
        if info is not None:
            infos.append(info)
    if problems:
        raise InputError(problems=problems)
    return infos


def _canonical(info: ShardInfo) -> pl.LazyFrame:
    lf = pl.scan_parquet(info.path)
    num = pl.col("numeric_value").cast(pl.Float32) if info.has_numeric_value else pl.lit(None, pl.Float32)
    return lf.select(
        pl.col("subject_id"),
        pl.col("time").cast(pl.Datetime("us")),
        pl.col("code").cast(pl.String),
        num.alias("numeric_value"),
    )


def scan_meds(root: Path) -> pl.LazyFrame:
    """One lazy frame over all shards of ``root`` with the canonical MEDS columns and dtypes.

    Raises:
        InputError: no data/ folder, no shards, or a shard with a missing column or a wrong dtype (file and field
            named; every problem listed).
    """
    infos = check_shards(meds_files(root))
    canonical = all(
        i.time_unit == "us" and i.has_numeric_value and i.code_is_plain_string and i.numeric_is_float32 for i in infos
    )
    if canonical:  # the common case: one multi-file scan (string/large_string are both String in polars)
        return pl.scan_parquet([i.path for i in infos]).select(
            "subject_id", "time", pl.col("code").cast(pl.String), "numeric_value"
        )
    return pl.concat([_canonical(i) for i in infos], how="vertical")


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
