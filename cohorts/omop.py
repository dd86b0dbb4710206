"""OMOP CDM (v5.3 / v5.4 tables as CSV, CSV.gz or parquet, in a folder or a .zip) -> a MEDS 0.4 directory, with polars.

The mapping follows the maintained OMOP -> MEDS ETL, meds_etl (``src/meds_etl/omop.py``; reference/formats-and-apis.md
§2.3), written here against MEDS 0.4 (meds_etl itself pins MEDS 0.3.3):

* ``subject_id = person_id``.
* ``person``: ``MEDS_BIRTH`` at ``birth_datetime`` (else ``year/month/day_of_birth``, a missing month or day = 1), and
  the gender, race and ethnicity concepts as events at the birth time.
* ``death``: ``MEDS_DEATH`` at ``death_datetime`` / ``death_date``.
* event tables (``visit_occurrence``, ``condition_occurrence``, ``drug_exposure``, ``procedure_occurrence``,
  ``device_exposure``, ``measurement``, ``observation``, ``specimen``): the time is the first of
  ``<x>_start_datetime``, ``<x>_start_date``, ``<x>_datetime``, ``<x>_date``; **a date without a time moves to 23:59:59
  of that day** (an event known only by its day is not visible earlier that day: a leakage guard).
* ``code``: ``<x>_source_concept_id`` when it is set and not 0, else ``<x>_concept_id``, mapped through the ``concept``
  table to ``"<vocabulary_id>/<concept_code>"`` (``LOINC/29463-7``, ``SNOMED/44054006``); the concept's name becomes
  the code's ``description`` in ``metadata/codes.parquet``. A row whose concept id is 0 or empty is dropped (no code).
  Where meds_etl drops a concept id missing from the ``concept`` table, it is kept here as ``OMOP_CONCEPT_ID/<id>``
  (vocabulary extracts are often partial), and counted; the OMOP Gender and Race concepts are built in
  (:data:`PERSON_VOCABULARY`: ``Gender/F``, ``Race/5`` ...) for extracts that lack them, as the Synthea sample does.
* ``value_as_number`` -> ``numeric_value`` (float32); ``value_as_string`` else ``value_source_value`` ->
  ``text_value``; extra columns ``table``, ``visit_id``, ``unit`` (``unit_source_value``) and ``end`` (the
  ``<x>_end_datetime`` / ``<x>_end_date``).

Not converted: ``visit_detail`` (it repeats the visits), ``note`` (free text), era and cost tables. Output:
``data/<k>.parquet`` shards (every subject in one shard, rows sorted by subject and time, null-time rows first),
``metadata/codes.parquet`` (every code in the data), ``metadata/dataset.json``. Written atomically.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from multimodal.errors import InputError

log = logging.getLogger(__name__)

#: Event tables and the prefix of their columns (``<prefix>_concept_id``, ``<prefix>_start_datetime``, ...).
EVENT_TABLES: dict[str, str] = {
    "visit_occurrence": "visit",
    "condition_occurrence": "condition",
    "drug_exposure": "drug",
    "procedure_occurrence": "procedure",
    "device_exposure": "device",
    "measurement": "measurement",
    "observation": "observation",
    "specimen": "specimen",
}
PERSON_CONCEPTS = ("gender", "race", "ethnicity")
BIRTH_CODE, DEATH_CODE = "MEDS_BIRTH", "MEDS_DEATH"
UNMAPPED_PREFIX = "OMOP_CONCEPT_ID/"
#: The OMOP Gender and Race vocabularies' standard concepts (concept_id: (code, name)), used where a partial CONCEPT
#: extract lacks them (the person table's most common concepts).
PERSON_VOCABULARY: dict[int, tuple[str, str]] = {
    8507: ("Gender/M", "MALE"), 8532: ("Gender/F", "FEMALE"),
    8657: ("Race/1", "American Indian or Alaska Native"), 8515: ("Race/2", "Asian"),
    8516: ("Race/3", "Black or African American"), 8557: ("Race/4", "Native Hawaiian or Other Pacific Islander"),
    8527: ("Race/5", "White"),
}
MEDS_VERSION = "0.4"
_END_OF_DAY = pl.duration(hours=23, minutes=59, seconds=59)
DATA_SCHEMA = pa.schema([
    pa.field("subject_id", pa.int64(), nullable=False),
    pa.field("time", pa.timestamp("us")),
    pa.field("code", pa.string(), nullable=False),
    pa.field("numeric_value", pa.float32()),
    pa.field("text_value", pa.large_string()),
    pa.field("table", pa.string()),
    pa.field("visit_id", pa.int64()),
    pa.field("unit", pa.string()),
    pa.field("end", pa.timestamp("us")),
])


@dataclass
class ConversionReport:
    """What a conversion did: subjects, events per table, rows dropped (no concept) and concepts kept unmapped."""

    subjects: int = 0
    events: dict[str, int] = field(default_factory=dict)
    dropped_no_concept: dict[str, int] = field(default_factory=dict)
    unmapped_concepts: int = 0
    shards: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"subjects": self.subjects, "events": dict(self.events), "dropped_no_concept": self.dropped_no_concept,
                "unmapped_concepts": self.unmapped_concepts, "shards": self.shards}


# ---- reading the source -----------------------------------------------------------------------------------------------
def _tables(src: Path) -> dict[str, Path]:
    """{lower-case table name: file} of an OMOP folder (``.csv``, ``.csv.gz``, ``.parquet``; macOS ``._`` files and
    ``__MACOSX`` skipped)."""
    out: dict[str, Path] = {}
    for p in sorted(src.rglob("*")):
        if not p.is_file() or p.name.startswith("._") or "__MACOSX" in p.parts:
            continue
        name = p.name.lower()
        for suffix in (".csv.gz", ".csv", ".parquet"):
            if name.endswith(suffix):
                out.setdefault(name[: -len(suffix)], p)
    return out


def _scan(path: Path) -> pl.LazyFrame:
    """A table as strings with lower-case column names (types are cast where used: OMOP CSVs vary)."""
    if path.name.lower().endswith(".parquet"):
        lf = pl.scan_parquet(path)
        lf = lf.select(pl.all().cast(pl.String))
    else:
        lf = pl.scan_csv(path, infer_schema=False, encoding="utf8-lossy")
    return lf.rename(lambda c: c.strip().lower())


def _datetime(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().str.to_datetime(time_unit="us", strict=False)


def _end_of_date(col: str) -> pl.Expr:
    """A date column as 23:59:59 of that day (a datetime column's own time is kept by :func:`_datetime`)."""
    return pl.col(col).str.strip_chars().str.slice(0, 10).str.to_date(strict=False).cast(pl.Datetime("us")) + _END_OF_DAY


def _event_time(columns: list[str], *prefixes: str, end: bool = False) -> pl.Expr | None:
    """The first of ``<p>_start_datetime``, ``<p>_start_date``, ``<p>_datetime``, ``<p>_date`` (``end``: the
    ``_end_`` pair) for the first prefix that has one (``drug_exposure_start_date`` vs ``condition_start_date``);
    dates at 23:59:59."""
    for prefix in prefixes:
        names = [f"{prefix}_end_datetime", f"{prefix}_end_date"] if end else [
            f"{prefix}_start_datetime", f"{prefix}_start_date", f"{prefix}_datetime", f"{prefix}_date"]
        exprs = [(_datetime(n) if n.endswith("datetime") else _end_of_date(n)) for n in names if n in columns]
        if exprs:
            return pl.coalesce(exprs)
    return None


def _int(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)


# ---- the conversion ---------------------------------------------------------------------------------------------------
def convert_omop(src: str | Path, out: str | Path, *, shard_size: int = 10_000, overwrite: bool = False,
                 dataset_name: str | None = None) -> ConversionReport:
    """Convert the OMOP CDM tables in ``src`` (a folder or a .zip of CSV / CSV.gz / parquet tables) into the MEDS 0.4
    directory ``out`` (module docstring); ``shard_size`` subjects per data shard."""
    from multimodal.io import atomic_dir

    source = Path(src)
    if not source.exists():
        raise InputError("OMOP source not found", file=source, hint="give a folder of OMOP CDM tables or a .zip of them")
    if shard_size < 1:
        raise InputError(f"expected a shard size >= 1, got {shard_size}", field="shard_size")
    with tempfile.TemporaryDirectory(prefix="omop-") as tmp_src:
        folder = source
        if source.is_file():
            if not zipfile.is_zipfile(source):
                raise InputError("not a folder or a .zip of OMOP tables", file=source)
            with zipfile.ZipFile(source) as zf:
                zf.extractall(tmp_src)
            folder = Path(tmp_src)
        tables = _tables(folder)
        for needed in ("person", "concept"):
            if needed not in tables:
                raise InputError(f"no {needed.upper()} table ({needed}.csv, .csv.gz or .parquet)", file=source,
                                 field=needed, hint="the OMOP CDM tables PERSON and CONCEPT (the vocabulary) are "
                                 "needed; export them with the clinical tables")
        events, descriptions, report = _events(tables)
        name = dataset_name or _dataset_name(tables) or source.stem
        with atomic_dir(out, overwrite=overwrite) as tmp:
            report.shards = _write(events, tmp, shard_size)
            _write_metadata(events, descriptions, tmp, name, report)
    return report


def _events(tables: dict[str, Path]) -> tuple[pl.DataFrame, pl.DataFrame, ConversionReport]:
    """Every event of the source as one frame in the data schema, sorted; the codes' descriptions; the report."""
    report = ConversionReport()
    person = _scan(tables["person"])
    pcols = person.collect_schema().names()
    if "person_id" not in pcols:
        raise InputError("PERSON table has no person_id column", file=tables["person"], field="person_id")
    birth = _birth_time(pcols)
    person = person.with_columns(subject_id=_int("person_id"), time=birth)
    bad = person.filter(pl.col("subject_id").is_null()).select(pl.len()).collect().item()
    if bad:
        raise InputError(f"{bad} PERSON row(s) without a numeric person_id", file=tables["person"], field="person_id")
    parts: list[pl.LazyFrame] = [person.select("subject_id", "time", code=pl.lit(BIRTH_CODE), table=pl.lit("person"))]
    for what in PERSON_CONCEPTS:
        cid = f"{what}_concept_id"
        if cid in pcols:
            src_id = f"{what}_source_concept_id"
            concept = _concept_choice(pcols, cid, src_id)
            parts.append(person.select("subject_id", "time", concept_id=concept, table=pl.lit("person")))
    if "death" in tables:
        death = _scan(tables["death"])
        dcols = death.collect_schema().names()
        t = _event_time(dcols, "death")
        if t is not None:
            parts.append(death.select(subject_id=_int("person_id"), time=t, code=pl.lit(DEATH_CODE),
                                      table=pl.lit("death")))
    for table, prefix in EVENT_TABLES.items():
        if table not in tables:
            continue
        lf = _scan(tables[table])
        cols = lf.collect_schema().names()
        t = _event_time(cols, table, prefix)
        end = _event_time(cols, table, prefix, end=True)
        cid = f"{prefix}_concept_id"
        if t is None or cid not in cols or "person_id" not in cols:
            log.warning("OMOP table %s lacks %s, person_id or a date column: skipped", table, cid)
            continue
        extra = {
            "numeric_value": pl.col("value_as_number").cast(pl.Float64, strict=False) if "value_as_number" in cols
            else pl.lit(None, pl.Float64),
            "text_value": pl.coalesce([pl.col(c) for c in ("value_as_string", "value_source_value") if c in cols])
            if {"value_as_string", "value_source_value"} & set(cols) else pl.lit(None, pl.String),
            "visit_id": _int("visit_occurrence_id") if "visit_occurrence_id" in cols else pl.lit(None, pl.Int64),
            "unit": pl.col("unit_source_value") if "unit_source_value" in cols else pl.lit(None, pl.String),
            "end": end if end is not None else pl.lit(None, pl.Datetime("us")),
        }
        parts.append(lf.select(subject_id=_int("person_id"), time=t,
                               concept_id=_concept_choice(cols, cid, f"{prefix}_source_concept_id"),
                               table=pl.lit(table), **extra))
    frame = pl.concat([p.collect() for p in parts], how="diagonal_relaxed")
    for c, dtype in (("code", pl.String), ("concept_id", pl.Int64), ("numeric_value", pl.Float64),
                     ("text_value", pl.String), ("visit_id", pl.Int64), ("unit", pl.String),
                     ("end", pl.Datetime("us"))):
        if c not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype).alias(c))
    frame = frame.filter(pl.col("subject_id").is_not_null())
    has_code = pl.col("code").is_not_null() | (pl.col("concept_id").is_not_null() & (pl.col("concept_id") != 0))
    dropped = frame.filter(~has_code).group_by("table").len()
    report.dropped_no_concept = {r["table"]: int(r["len"]) for r in dropped.iter_rows(named=True)}
    frame = frame.filter(has_code)
    frame, report.unmapped_concepts = _map_concepts(frame, tables["concept"])
    fixed = pl.DataFrame({"code": [BIRTH_CODE, DEATH_CODE], "description": ["Birth", "Death"]})
    descriptions = pl.concat([fixed, frame.filter(pl.col("description").is_not_null()).select("code", "description")]
                             ).unique("code", keep="first")
    frame = frame.with_columns(pl.col("numeric_value").cast(pl.Float32)).select(
        [f.name for f in DATA_SCHEMA]).sort(["subject_id", "time", "code"], nulls_last=False, maintain_order=True)
    report.subjects = int(frame["subject_id"].n_unique())
    report.events = {r["table"]: int(r["len"]) for r in frame.group_by("table").len().sort("table").iter_rows(named=True)}
    return frame, descriptions, report


def _birth_time(cols: list[str]) -> pl.Expr:
    """``birth_datetime``, else ``year_of_birth`` / ``month_of_birth`` / ``day_of_birth`` (missing month or day = 1)."""
    parts = []
    if "birth_datetime" in cols:
        parts.append(_datetime("birth_datetime"))
    if "year_of_birth" in cols:
        def num(c: str) -> pl.Expr:
            return _int(c).fill_null(1) if c in cols else pl.lit(1, pl.Int64)

        parts.append(pl.datetime(_int("year_of_birth"), num("month_of_birth"), num("day_of_birth"), time_unit="us"))
    return pl.coalesce(parts) if parts else pl.lit(None, pl.Datetime("us"))


def _concept_choice(cols: list[str], concept: str, source: str) -> pl.Expr:
    """``source`` when set and not 0, else ``concept`` (as Int64; 0 = no concept)."""
    own = _int(concept)
    if source not in cols:
        return own
    s = _int(source)
    return pl.when(s.is_not_null() & (s != 0)).then(s).otherwise(own)


def _map_concepts(frame: pl.DataFrame, concept_file: Path) -> tuple[pl.DataFrame, int]:
    """Codes ``"<vocabulary_id>/<concept_code>"`` from the CONCEPT table (``OMOP_CONCEPT_ID/<id>`` for ids it lacks),
    with a ``description`` column (the concept name)."""
    concept = _scan(concept_file)
    needed = {"concept_id", "vocabulary_id", "concept_code"}
    missing = needed - set(concept.collect_schema().names())
    if missing:
        raise InputError(f"CONCEPT table lacks column(s) {sorted(missing)}", file=concept_file, field=sorted(missing)[0])
    names = concept.collect_schema().names()
    vocab = concept.select(
        concept_id=_int("concept_id"),
        mapped=pl.col("vocabulary_id").str.strip_chars() + "/" + pl.col("concept_code").str.strip_chars(),
        description=pl.col("concept_name") if "concept_name" in names else pl.lit(None, pl.String),
    ).unique("concept_id", keep="first").collect()
    builtin = pl.DataFrame({"concept_id": list(PERSON_VOCABULARY), "mapped": [v[0] for v in PERSON_VOCABULARY.values()],
                            "description": [v[1] for v in PERSON_VOCABULARY.values()]},
                           schema={"concept_id": pl.Int64, "mapped": pl.String, "description": pl.String})
    vocab = pl.concat([vocab, builtin.join(vocab, on="concept_id", how="anti")])
    frame = frame.join(vocab, on="concept_id", how="left")
    unmapped = frame.filter(pl.col("code").is_null() & pl.col("mapped").is_null())["concept_id"].n_unique()
    frame = frame.with_columns(code=pl.coalesce(
        "code", "mapped", pl.lit(UNMAPPED_PREFIX) + pl.col("concept_id").cast(pl.String)))
    return frame, int(unmapped)


def _dataset_name(tables: dict[str, Path]) -> str | None:
    if "cdm_source" not in tables:
        return None
    df = _scan(tables["cdm_source"]).head(1).collect()
    if "cdm_source_name" in df.columns and len(df) and df["cdm_source_name"][0]:
        return str(df["cdm_source_name"][0])
    return None


# ---- writing ----------------------------------------------------------------------------------------------------------
def _write(frame: pl.DataFrame, root: Path, shard_size: int) -> int:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    subjects = frame["subject_id"].unique().sort().to_list()
    shards = 0
    for k, start in enumerate(range(0, max(len(subjects), 1), shard_size)):
        ids = subjects[start:start + shard_size]
        part = frame.filter(pl.col("subject_id").is_in(ids))
        table = part.to_arrow().cast(DATA_SCHEMA)
        pq.write_table(table, data / f"{k}.parquet")
        shards += 1
    return shards


def _write_metadata(frame: pl.DataFrame, descriptions: pl.DataFrame, root: Path, name: str,
                    report: ConversionReport) -> None:
    from multimodal import __version__

    meta = root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    codes = frame.select("code").unique().sort("code")
    described = codes.join(descriptions, on="code", how="left")
    pq.write_table(pa.table({
        "code": pa.array(described["code"].to_list(), pa.string()),
        "description": pa.array(described["description"].to_list(), pa.string()),
        "parent_codes": pa.array([[] for _ in range(len(described))], pa.list_(pa.string())),
    }), meta / "codes.parquet")
    dataset = {"dataset_name": name, "dataset_version": "", "etl_name": "multimodal convert omop",
               "etl_version": __version__, "meds_version": MEDS_VERSION,
               "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "omop_conversion": report.to_dict()}
    (meta / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")

