"""MEDS 0.4 data shards: file discovery, dtype and value checks, and one canonical lazy scan (polars).

A MEDS directory holds ``data/**/*.parquet`` shards with the columns (formats-and-apis §2.1)::

    subject_id: int64 (not null) | time: timestamp[us] (null = static) | code: string | numeric_value: float32 (opt.)

:func:`scan_meds` checks every shard's parquet footer (no data is read) and returns one ``pl.LazyFrame`` with exactly
these four columns in canonical dtypes (``time`` cast to microseconds, ``numeric_value`` added as nulls where a shard
lacks it, ``code`` as ``String``). Row order is *not* part of the contract: polars 2's streaming engine does not keep
it, so every consumer sorts explicitly; unsorted shards are valid.

Values every row must have (checked by :func:`content_problems`, run by :func:`scan_meds` and by ``validate``): a
non-null ``subject_id`` and ``code``, and a ``numeric_value`` that is not infinite (null or NaN = no value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    problems = content_problems([i.path for i in infos])
    if problems:
        raise InputError(problems=problems)
    if canonical:  # the common case: one multi-file scan (string/large_string are both String in polars)
        return pl.scan_parquet([i.path for i in infos]).select(
            "subject_id", "time", pl.col("code").cast(pl.String), "numeric_value"
        )
    return pl.concat([_canonical(i) for i in infos], how="vertical")


#: Rows of a shard named per problem kind before the rest are counted.
_EXAMPLES = 3


def content_problems(files: Sequence[Path]) -> list[Problem]:
    """Null ``subject_id`` / ``code`` and infinite ``numeric_value`` rows of each shard (three columns read, one
    problem per shard and kind, naming the count and a few subject ids and codes). Footers must be valid."""
    out: list[Problem] = []
    for path in files:
        names = set(pq.read_schema(path).names)
        lf = pl.scan_parquet(path)
        checks = {"subject_id": pl.col("subject_id").is_null(), "code": pl.col("code").is_null()}
        if "numeric_value" in names:
            checks["numeric_value"] = pl.col("numeric_value").cast(pl.Float64).is_infinite().fill_null(False)
        try:
            counts = lf.select(*(e.sum().alias(k) for k, e in checks.items())).collect().row(0, named=True)
        except Exception as exc:  # noqa: BLE001 - data pages that do not read: the shard's fault
            out.append(Problem(f"cannot read MEDS shard: {type(exc).__name__}: {exc}", file=str(path), field="schema"))
            continue
        for col, n in counts.items():
            if not n:
                continue
            bad = lf.filter(checks[col]).select("subject_id", pl.col("code").cast(pl.String)).head(_EXAMPLES)
            rows = bad.collect().rows()
            what = {"subject_id": "a null subject_id", "code": "a null code",
                    "numeric_value": "an infinite numeric_value"}[col]
            subjects = [r[0] for r in rows if r[0] is not None]
            codes = [r[1] for r in rows if r[1] is not None]
            detail = (f"; e.g. subject_id {subjects}" if subjects else "") + (f", codes {codes}" if codes else "")
            out.append(Problem(f"{int(n)} MEDS row(s) with {what}{detail}", file=str(path), field=col,
                               patient=str(subjects[0]) if len(set(subjects)) == 1 and col != "subject_id" else None,
                               hint="MEDS 0.4: subject_id and code are never null; numeric_value is a finite number "
                                    "or null"))
    return out
