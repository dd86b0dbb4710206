"""Load a cohort manifest into a :class:`~multimodal.cohorts.cohort.Cohort` (DESIGN §4).

Loading is cheap: it parses the manifest, reads the patient table and the small side tables (slide table, clinical
table, MAF columns, AnnData ``obs``, MEDS parquet footers and ``subject_id`` column, split files) and checks that
files exist. It never opens a slide's patch features; :mod:`multimodal.cohorts.validate` does the deep checks.

Outcomes: training, cross-validation and ``validate`` need every patient's ``time`` and ``event`` (``outcomes=
"required"``, the default). Scoring new patients (``predict``, ``explain``, ``report``, ``validate --for-scoring``)
loads with ``outcomes="optional"``: the outcome columns (time, event / censorship, response) may be absent or empty;
such a patient gets ``time`` NaN and ``event`` NA (a nullable boolean column) and simply has no target. Every other
check is the same in both modes.

Patients that a modality source names (AnnData ``obs``, slide table or glob, MAF samples, CNV / wide table rows, MEDS
subjects, clinical table rows) but the patient table lacks are ignored, with one warning per modality naming their
count and a few ids.

Every problem is collected, and :func:`load_manifest_cohort` raises ONE :class:`InputError` listing all of them, each
naming the file, the patient and the field at fault. :func:`resolve_manifest` returns the same findings without
raising, for the validator.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from multimodal.cohorts.clinical_columns import (
    LOADER_LEAKAGE_PATTERNS,
    clinical_feature_table,
    declared_outcome_columns,
    flagged_declared,
    is_identifier_reason,
)
from multimodal.cohorts.cohort import EVENT, PREDICTION_TIME, RESPONSE, TIME, TREATMENT, Cohort, Fold
from multimodal.cohorts.manifest import (
    MODALITY_SPECS,
    ClinicalSpec,
    ManifestSpec,
    MedsSpec,
    OmicsSpec,
    PatientTableSpec,
    SlidesSpec,
    SplitsSpec,
    parse_manifest,
)
from multimodal.cohorts.sources import ClinicalSource, MedsSource, ModalitySource, OmicsSource, SlideRef, SlideSource
from multimodal.config import from_dict, load_yaml
from multimodal.errors import InputError, Problem, short

logger = logging.getLogger(__name__)

#: Problems of one kind listed one by one before the rest are summarised in one line.
MAX_PER_GROUP = 25
#: MAF columns the genomics adapter needs.
MAF_REQUIRED = ("Hugo_Symbol", "Variant_Classification", "Tumor_Sample_Barcode")
#: Slide file suffix -> SlideRef.format ("auto": an h5 file whose layout (TRIDENT / CLAM / STAMP) is read from its keys).
SLIDE_SUFFIX_FORMAT = {".h5": "auto", ".hdf5": "auto", ".pt": "pt", ".pth": "pt", ".npy": "npy",
                       ".safetensors": "safetensors"}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
#: Cell texts pandas reads as missing by default ("NA", "null", "None", ...). Identifier columns keep them as text: a
#: patient may be called "NA"; only an empty cell is a missing identifier.
_DEFAULT_NA = tuple(sorted(STR_NA_VALUES))

#: "required": every patient needs time and event (training, cv, validate); "optional": scoring (predict, explain,
#: report, validate --for-scoring), where outcome columns may be absent or empty.
Outcomes = Literal["required", "optional"]
OUTCOME_MODES: tuple[str, ...] = ("required", "optional")
_OUTCOMES: contextvars.ContextVar[str] = contextvars.ContextVar("multimodal_outcomes", default="required")


@contextlib.contextmanager
def outcome_rules(outcomes: Outcomes) -> Iterator[None]:
    """Within the block, loading that is not told otherwise (``outcomes=None``) uses ``outcomes``.

    For callers that reach :func:`resolve_manifest` through code without the argument, e.g.
    ``with outcome_rules("optional"): validate_manifest(path)`` checks a cohort for scoring.
    """
    token = _OUTCOMES.set(_check_mode(outcomes))
    try:
        yield
    finally:
        _OUTCOMES.reset(token)


def _check_mode(outcomes: str | None) -> str:
    if outcomes is None:
        return _OUTCOMES.get()
    if outcomes not in OUTCOME_MODES:
        raise ValueError(f"outcomes must be one of {OUTCOME_MODES}, got {outcomes!r}")
    return outcomes


# ---- problem collection -----------------------------------------------------------------------------------------
#: Ids named in the one warning about a modality's patients that the patient table lacks.
EXTRA_EXAMPLES = 5


@dataclass
class ExtraPatients:
    """Patients (or MEDS subjects) a modality source names but the patient table lacks, collected while the modality
    resolves; they are ignored and reported in ONE warning per modality (:meth:`ProblemLog.report_extra`)."""

    ids: dict[str, None] = field(default_factory=dict)
    files: dict[str, None] = field(default_factory=dict)
    what: str = "patient(s)"
    #: advice for this source, added to the warning's hint
    advice: str | None = None

    def add(self, pid: Any, file: Any) -> None:
        self.ids.setdefault(str(pid))
        if file is not None:
            self.files.setdefault(str(file))


@dataclass
class ProblemLog:
    """Collects problems and warnings instead of stopping at the first one.

    Problems of one ``group`` (e.g. "negative time") are listed one by one up to ``max_per_group``; the rest are
    counted and summarised by :meth:`finish`, so a cohort of 100k bad rows gives a readable report.
    """

    max_per_group: int = MAX_PER_GROUP
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    _listed: dict[tuple[bool, str], int] = field(default_factory=dict)
    _suppressed: dict[tuple[bool, str], list[Problem]] = field(default_factory=dict)
    #: where the modality being resolved collects the patients the patient table lacks
    extra: ExtraPatients = field(default_factory=ExtraPatients)

    def report_extra(self, modality: str, *, manifest: Any = None) -> None:
        """One warning for the patients collected in :attr:`extra` (their count and a few ids), then start over."""
        ex, self.extra = self.extra, ExtraPatients()
        if not ex.ids:
            return
        ids = sorted(ex.ids)
        files = list(ex.files) or ([str(manifest)] if manifest is not None else [])
        shown = ", ".join(files[:3]) + (f" (and {len(files) - 3} more files)" if len(files) > 3 else "")
        examples = ", ".join(repr(i) for i in ids[:EXTRA_EXAMPLES]) + (" ..." if len(ids) > EXTRA_EXAMPLES else "")
        self.warn(f"{len(ids)} {ex.what} in modality {modality!r} are not in the patient table and are ignored: "
                  f"{examples}", file=shown or None, patient=ids[0] if len(ids) == 1 else None,
                  field=f"modalities.{modality}",
                  hint="add them to the patient table to use their data (patients to score need a row, outcomes may "
                       "be left empty)" + (f"; {ex.advice}" if ex.advice else ""))

    def _add(self, is_warning: bool, prob: Problem, group: str | None) -> None:
        target = self.warnings if is_warning else self.problems
        if group is None:
            target.append(prob)
            return
        key = (is_warning, group)
        n = self._listed.get(key, 0)
        if n < self.max_per_group:
            self._listed[key] = n + 1
            target.append(prob)
        else:
            self._suppressed.setdefault(key, []).append(prob)

    def error(self, message: str, *, file: Any = None, patient: Any = None, field: str | None = None,
              hint: str | None = None, group: str | None = None) -> None:
        self._add(False, _problem(message, file, patient, field, hint), group)

    def warn(self, message: str, *, file: Any = None, patient: Any = None, field: str | None = None,
             hint: str | None = None, group: str | None = None) -> None:
        self._add(True, _problem(message, file, patient, field, hint), group)

    def absorb(self, exc: InputError, *, as_warning: bool = False) -> None:
        for p in exc.problems:
            self._add(as_warning, p, None)

    def finish(self) -> None:
        """Append one summary line per group whose problems were not all listed."""
        for (is_warning, group), rest in self._suppressed.items():
            first = rest[0]
            who = sorted({p.patient for p in rest if p.patient is not None})
            examples = f"; patients {who[:10]}{' ...' if len(who) > 10 else ''}" if who else ""
            msg = f"... and {len(rest)} more like this ({group}){examples}"
            (self.warnings if is_warning else self.problems).append(
                Problem(msg, file=first.file, field=first.field, hint=first.hint)
            )
        self._suppressed.clear()


def _problem(message: str, file: Any, patient: Any, field: str | None, hint: str | None) -> Problem:
    return Problem(message, file=None if file is None else str(file),
                   patient=None if patient is None else str(patient), field=field, hint=hint)


def _did_you_mean(name: str, options: Iterable[str], cutoff: float = 0.6) -> str | None:
    opts = [str(o) for o in options]
    close = difflib.get_close_matches(str(name), opts, n=1, cutoff=cutoff)
    if close:
        return f"did you mean {close[0]!r}?"
    shown = ", ".join(opts[:15]) + (" ..." if len(opts) > 15 else "")
    return f"available: {shown}" if opts else None


# ---- the resolved manifest --------------------------------------------------------------------------------------
@dataclass
class ResolvedManifest:
    """What loading found: the spec, the patient table, the modality sources, and every problem.

    ``patients`` and ``sources`` are filled as far as the input allowed even when there are problems, so that the
    validator can keep checking the rest.
    """

    path: Path
    root: Path
    log: ProblemLog
    #: "required" or "optional" (scoring): see the module docstring
    outcomes: str = "required"
    spec: ManifestSpec | None = None
    patients_file: Path | None = None
    patients: pd.DataFrame | None = None
    treatment_arms: tuple[str, ...] = ()
    sources: dict[str, ModalitySource] = field(default_factory=dict)
    splits: list[Fold] | None = None
    #: MEDS parquet files whose schema is wrong (deep checks skip them), per modality name.
    bad_meds_files: dict[str, set[Path]] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        return self.log.problems

    @property
    def warnings(self) -> list[Problem]:
        return self.log.warnings

    def to_cohort(self) -> Cohort:
        """The :class:`Cohort`; raises one :class:`InputError` listing every problem if there are any."""
        if self.problems or self.spec is None or self.patients is None:
            raise InputError(problems=self.problems or [Problem("manifest could not be loaded", file=str(self.path))])
        return Cohort(
            name=self.spec.name,
            patients=self.patients,
            modalities=dict(self.sources),
            time_unit=self.spec.patients.time_unit,
            treatment_arms=self.treatment_arms,
            response_classes=self.spec.patients.response_classes,
            splits=self.splits,
            root=self.root,
            manifest_path=self.path,
        )


def load_manifest_cohort(path: str | Path, *, outcomes: Outcomes | None = None) -> Cohort:
    """Load the cohort described by the manifest at ``path``.

    Args:
        outcomes: "required" (training, cv: every patient needs time and event) or "optional" (scoring new patients:
            outcome columns may be absent or empty; such patients get time NaN and event NA). None: "required" unless
            inside :func:`outcome_rules`.

    Raises:
        InputError: listing every problem found (file, patient, field and a hint for each).
    """
    resolved = resolve_manifest(path, outcomes=outcomes)
    for w in resolved.warnings:
        logger.warning("warning: %s", w)
    return resolved.to_cohort()


def resolve_manifest(path: str | Path, *, outcomes: Outcomes | None = None) -> ResolvedManifest:
    """Parse the manifest and resolve its tables and sources, collecting problems instead of raising.

    ``outcomes`` as in :func:`load_manifest_cohort`.
    """
    mode = _check_mode(outcomes)
    mpath = Path(path).expanduser().resolve()
    if mpath.is_dir() and (mpath / "manifest.yaml").is_file():  # a cohort folder: its manifest
        mpath = mpath / "manifest.yaml"
    log = ProblemLog()
    res = ResolvedManifest(path=mpath, root=mpath.parent, log=log, outcomes=mode)
    try:
        data = load_yaml(mpath)
    except InputError as exc:
        for p in exc.problems:
            log.error(f"manifest: {p.message}", file=p.file or mpath, field=p.field or "manifest", hint=p.hint)
        log.finish()
        return res
    res.spec = parse_manifest_collecting(data, file=str(mpath), log=log)
    if res.spec is None:
        log.finish()
        return res
    spec = res.spec
    res.patients_file = _under(res.root, spec.patients.path)
    raw = _read_patient_table(res.patients_file, spec.patients, log)
    if raw is not None:
        built = build_patient_frame(raw, spec.patients, res.patients_file, log, manifest=mpath, outcomes=mode)
        if built is not None:
            res.patients, res.treatment_arms = built
    known = set(res.patients.index) if res.patients is not None else None
    for name, mspec in spec.modalities.items():
        src = _resolve_modality(name, mspec, res, known)
        if src is not None:
            res.sources[name] = src
    if spec.splits is not None:
        res.splits = _resolve_splits(spec.splits, res.root, known, log)
    log.finish()
    return res


def _under(root: Path, rel: str) -> Path:
    p = Path(rel).expanduser()
    return p if p.is_absolute() else root / p


# ---- manifest parsing -------------------------------------------------------------------------------------------
def parse_manifest_collecting(data: dict[str, Any], *, file: str, log: ProblemLog) -> ManifestSpec | None:
    """Check every section of the manifest mapping, collect all problems, and return the spec if there were none.

    :func:`multimodal.cohorts.manifest.parse_manifest` stops at the first error; here each section (top level,
    ``patients``, each modality, ``splits``) is checked on its own so that one run lists them all.
    """
    before = len(log.problems)
    known_top = [f.name for f in fields(ManifestSpec)]
    for key in data:
        if key not in known_top:
            log.error(f"unknown key {short(key)}", file=file, field=str(key), hint=_did_you_mean(key, known_top))
    if "patients" not in data:
        log.error("the manifest needs a 'patients' section (the patient table)", file=file, field="patients",
                  hint="e.g. patients: {path: outcomes.parquet, id: patient_id, time: time, event: event}")
    else:
        _check_section(PatientTableSpec, data["patients"], "patients", file, log)
    mods = data.get("modalities", {}) or {}
    if not isinstance(mods, dict):
        log.error("expected a mapping of modality name -> source", file=file, field="modalities")
    else:
        for name, mspec in mods.items():
            where = f"modalities.{name}"
            kind = mspec.get("type") if isinstance(mspec, dict) else None
            if kind is None:
                log.error("each modality needs a 'type'", file=file, field=where,
                          hint=f"one of {', '.join(MODALITY_SPECS)}")
            elif kind not in MODALITY_SPECS:
                log.error(f"unknown modality type {short(kind)}", file=file, field=f"{where}.type",
                          hint=_did_you_mean(kind, MODALITY_SPECS))
            else:
                _check_section(MODALITY_SPECS[kind], mspec, where, file, log)
    if data.get("splits") is not None:
        _check_section(SplitsSpec, data["splits"], "splits", file, log)
    for key, tp in (("version", int), ("name", str)):
        if key in data and (not isinstance(data[key], tp) or isinstance(data[key], bool)):
            log.error(f"expected {tp.__name__}, got {short(data[key])}", file=file, field=key)
    if len(log.problems) == before:
        try:
            return parse_manifest(data, file=file)
        except InputError as exc:  # should not happen after the checks above; keep its message if it does
            log.absorb(exc)
            return None
    # Problems were logged. If they were only unknown keys, go on without those keys so that the data can still be
    # checked (and reported) in the same run; loading raises anyway because problems were logged.
    try:
        return parse_manifest(_without_unknown_keys(data), file=file)
    except InputError:
        return None


def _without_unknown_keys(data: dict[str, Any]) -> dict[str, Any]:
    def keep(cls: type, section: Any) -> Any:
        if not isinstance(section, dict):
            return section
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in section.items() if k in names}

    out = keep(ManifestSpec, data)
    if "patients" in out:
        out["patients"] = keep(PatientTableSpec, out["patients"])
    if isinstance(out.get("modalities"), dict):
        out["modalities"] = {
            name: keep(MODALITY_SPECS[m["type"]], m) if isinstance(m, dict) and m.get("type") in MODALITY_SPECS else m
            for name, m in out["modalities"].items()
        }
    if isinstance(out.get("splits"), dict):
        out["splits"] = keep(SplitsSpec, out["splits"])
    return out


def _check_section(cls: type, value: Any, where: str, file: str, log: ProblemLog) -> None:
    if not isinstance(value, dict):
        log.error(f"expected a mapping, got {type(value).__name__}", file=file, field=where)
        return
    flds = {f.name for f in fields(cls)}
    unknown = [k for k in value if k not in flds]
    for k in unknown:  # one problem per unknown key, each with its own did-you-mean
        log.error(f"unknown key {short(k)}", file=file, field=f"{where}.{k}", hint=_did_you_mean(k, flds))
    known = {k: v for k, v in value.items() if k in flds}
    try:
        from_dict(cls, known, _prefix=where, _file=file)
    except InputError as exc:
        log.absorb(exc)


# ---- tables -----------------------------------------------------------------------------------------------------
def table_kind(path: Path) -> str | None:
    """"csv", "tsv" or "parquet" from the file name (compression suffixes ignored), else None."""
    name = path.name.lower()
    for suf in _COMPRESSION:
        if name.endswith(suf):
            name = name[: -len(suf)]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".tsv", ".tab", ".txt", ".maf")):
        return "tsv"
    if name.endswith(".csv"):
        return "csv"
    return None


def read_table(path: Path, *, str_columns: Sequence[str] = (), **kwargs: Any) -> pd.DataFrame:
    """Read a CSV / TSV / parquet table by its suffix; ``str_columns`` are identifiers, read as text: ids keep leading
    zeros, and only an empty cell is missing (patients called "NA", "null" or "None" keep their names); the other
    columns keep pandas' usual missing values.

    Raises:
        InputError: unsupported suffix, missing or unreadable file.
    """
    kind = table_kind(path)
    if kind is None:
        raise InputError("unsupported table format", file=path, field="path",
                         hint="use .csv, .tsv (or .txt) or .parquet (optionally compressed: .gz/.zip)")
    if not path.is_file():
        raise InputError("file not found", file=path, field="path", hint="paths are relative to the manifest folder")
    try:
        if kind == "parquet":
            return pd.read_parquet(path, **kwargs)
        return read_delimited(path, "\t" if kind == "tsv" else ",", str_columns, **kwargs)
    except Exception as exc:  # any reader failure is the file's fault here
        raise InputError(f"cannot read table: {type(exc).__name__}: {exc}", file=path) from exc


def read_delimited(path: Path, sep: str, id_columns: Sequence[str], *, all_text: bool = False,
                   **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv`` where ``id_columns`` are text whose only missing value is an empty cell, and the other columns
    keep the default missing values ("NA", "null", "nan", ...); ``all_text`` reads every column as text."""
    header = pd.read_csv(path, sep=sep, nrows=0, comment=kwargs.get("comment"), usecols=kwargs.get("usecols")).columns
    ids = set(id_columns)
    na_values = {c: [""] if c in ids else list(_DEFAULT_NA) for c in header}
    dtype: Any = str if all_text else {c: str for c in id_columns}
    return pd.read_csv(path, sep=sep, dtype=dtype, keep_default_na=False, na_values=na_values, low_memory=False,
                       **kwargs)


def _first_column(path: Path) -> list[str]:
    """The name of the first column of a CSV / TSV table ([] for parquet or an unreadable file)."""
    kind = table_kind(path)
    if kind not in ("csv", "tsv"):
        return []
    try:
        return [str(pd.read_csv(path, sep="\t" if kind == "tsv" else ",", nrows=0).columns[0])]
    except Exception:  # read_table reports the file's problem
        return []


def _read_patient_table(path: Path, spec: PatientTableSpec, log: ProblemLog) -> pd.DataFrame | None:
    try:
        return read_table(path, str_columns=[spec.id])
    except InputError as exc:
        p = exc.problems[0]
        log.error(f"patient table: {p.message}", file=path, field="patients.path", hint=p.hint)
        return None


def norm_id(value: Any) -> str | None:
    """A patient/sample id as text: integral floats lose their ``.0``; NaN/empty -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


# ---- the patient table ------------------------------------------------------------------------------------------
def build_patient_frame(
    raw: pd.DataFrame, spec: PatientTableSpec, file: Path, log: ProblemLog, *, manifest: Path | None = None,
    outcomes: Outcomes = "required",
) -> tuple[pd.DataFrame, tuple[str, ...]] | None:
    """Turn the raw patient table into :attr:`Cohort.patients` (see :class:`Cohort`), logging every problem.

    ``file`` is the patient table (named by per-patient problems); ``manifest`` is named by declaration problems.
    With ``outcomes="optional"`` (scoring) the outcome columns (time, event / censorship, response) may be absent
    or empty: ``time`` is then NaN and ``event`` NA (the column is a nullable boolean when any is unknown).
    Returns ``(patients, treatment_arms)``, or None when the id (or, outcomes required, the time) column is missing.
    """
    optional = _check_mode(outcomes) == "optional"
    event_col, censor_col = _outcome_columns(raw, spec, file, log, manifest or file, optional=optional)
    declared = {"id": spec.id, "time": spec.time, "prediction_time": spec.prediction_time,
                "treatment": spec.treatment, "response": spec.response, "meds_subject_id": spec.meds_subject_id}
    missing = False
    for key, col in declared.items():
        if col is not None and col not in raw.columns:
            if optional and key in ("time", "response"):
                continue  # scoring: no outcome column
            log.error(f"patient table has no column {col!r} (patients.{key})", file=file, field=col,
                      hint=_did_you_mean(col, raw.columns))
            missing = missing or key in ("id", "time")
    if missing:
        return None

    ids = raw[spec.id].map(norm_id)
    for row in np.flatnonzero(ids.isna().to_numpy()):
        log.error(f"row {int(row) + 2}: empty patient id", file=file, field=spec.id, group="empty id")
    raw = raw.loc[ids.notna().to_numpy()].copy()
    ids = ids[ids.notna()]
    dup = ids.duplicated(keep="first").to_numpy()
    for pid in pd.unique(ids[dup]):
        n = int((ids == pid).sum())
        log.error(f"duplicate patient id ({n} rows)", file=file, patient=pid, field=spec.id,
                  hint="one row per patient; several slides/samples per patient go in the modality sources",
                  group="duplicate id")
    raw = raw.loc[~dup].copy()
    raw.index = pd.Index(ids[~dup].to_numpy(dtype=object), name="patient_id")

    out = pd.DataFrame(index=raw.index)
    out[TIME] = _time_column(raw, spec.time, file, log, optional=optional)
    out[EVENT] = _event_column(raw, event_col, censor_col, spec, file, log, optional=optional)
    used = {spec.id, spec.time, event_col, censor_col}
    if spec.prediction_time is not None:
        out[PREDICTION_TIME] = _datetime_column(raw, spec.prediction_time, file, log)
        used.add(spec.prediction_time)
    arms: tuple[str, ...] = ()
    if spec.treatment is not None:
        out[TREATMENT], arms = _treatment_column(raw, spec, file, log)
        used.add(spec.treatment)
    if spec.response is not None and spec.response in raw.columns:
        out[RESPONSE] = _response_column(raw, spec.response, spec.response_classes, file, log)
        used.add(spec.response)
    elif spec.response is not None:  # scoring without the response column: unknown for everyone
        out[RESPONSE] = pd.Series(pd.NA, index=raw.index, dtype="Int64")
    if spec.meds_subject_id is not None:
        raw[spec.meds_subject_id] = _subject_id_column(raw, spec.meds_subject_id, file, log)
    for col in raw.columns:
        if col not in used and col not in out.columns:
            out[col] = raw[col]
    return out, arms


def _outcome_columns(
    raw: pd.DataFrame, spec: PatientTableSpec, file: Path, log: ProblemLog, manifest: Path, *, optional: bool = False
) -> tuple[str | None, str | None]:
    """(event column, censorship column): exactly one is used; a censorship column needs its polarity declared.

    ``optional`` (scoring): no event / censorship column, or a declared one absent from the table, is no problem
    (both None: every event is unknown).
    """
    if spec.event is not None and spec.censorship is not None:
        log.error("declare either patients.event or patients.censorship, not both", file=manifest,
                  field="patients.censorship")
        return None, None
    event, censor = spec.event, spec.censorship
    if event is None and censor is None:
        if "event" in raw.columns:
            event = "event"
        elif "censorship" in raw.columns:
            censor = "censorship"
        elif optional:
            return None, None
        else:
            log.error("no event column: declare patients.event (True/1 = event observed) or patients.censorship "
                      "with patients.censorship_polarity", file=file, field="patients.event",
                      hint=_did_you_mean("event", raw.columns))
            return None, None
    for col in (event, censor):
        if col is not None and col not in raw.columns:
            if optional:
                return None, None
            log.error(f"patient table has no column {col!r}", file=file, field=col,
                      hint=_did_you_mean(col, raw.columns))
            return None, None
    if censor is not None and spec.censorship_polarity is None:
        log.error(f"censorship column {censor!r} of {file.name} given without its polarity", file=manifest,
                  field="patients.censorship_polarity",
                  hint="set censorship_polarity: 1_is_censored (TCGA/PORPOISE: 1 = alive at last follow-up) "
                       "or 1_is_event")
        return None, None
    return event, censor


def _time_column(raw: pd.DataFrame, col: str, file: Path, log: ProblemLog, *, optional: bool = False) -> pd.Series:
    """The follow-up times; ``optional`` (scoring): an absent column or an empty cell is NaN, not a problem."""
    if optional and col not in raw.columns:
        return pd.Series(np.nan, index=raw.index, dtype=float)
    src = raw[col]
    num = pd.to_numeric(src, errors="coerce").astype(float)
    for pid, value in src[num.isna() & src.notna()].items():
        log.error(f"time is not a number: {value!r}", file=file, patient=pid, field=col, group="time not a number")
    for pid in ([] if optional else src.index[src.isna().to_numpy()]):
        log.error("time is missing (NaN)", file=file, patient=pid, field=col,
                  hint="every patient needs a follow-up time", group="NaN time")
    for pid, value in num[np.isinf(num.to_numpy())].items():
        log.error(f"time is infinite ({value})", file=file, patient=pid, field=col, group="infinite time")
    for pid, value in num[num < 0].items():
        log.error(f"negative time {value:g}", file=file, patient=pid, field=col,
                  hint="time is the duration from the index date to event/censoring; it must be >= 0",
                  group="negative time")
    return num


#: A coded status as cBioPortal writes it: ``1:DECEASED``, ``0:LIVING``, ``1:Recurred/Progressed``, ``0:CENSORED``.
_CODED_STATUS = re.compile(r"([01])\s*:.*")
_BINARY_TEXT = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}


def _binary_text(value: Any) -> bool | None:
    """True/False for a boolean-like text (``true``, ``0``, ``1:DECEASED`` ...), None when it is none."""
    if pd.isna(value):
        return None
    text = str(value).strip().lower()
    if text in _BINARY_TEXT:
        return _BINARY_TEXT[text]
    m = _CODED_STATUS.fullmatch(text)
    return None if m is None else m.group(1) == "1"


def as_binary(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse a boolean-or-0/1 column: returns (nullable boolean values, mask of present but invalid entries).

    Text may also be a cBioPortal coded status (``1:DECEASED`` / ``0:LIVING``, ``1:Recurred/Progressed`` /
    ``0:DiseaseFree``, ``1:PROGRESSION`` / ``0:CENSORED``): the digit before the colon is the code.
    """
    missing = series.isna()
    if pd.api.types.is_bool_dtype(series):
        return series.astype("boolean"), pd.Series(False, index=series.index)
    if pd.api.types.is_numeric_dtype(series):
        v = series.astype(float)
        ok = v.isin([0.0, 1.0])
        out = pd.Series(pd.NA, index=series.index, dtype="boolean")
        out[ok] = v[ok] == 1.0
        return out, ~ok & ~missing
    mapped = series.map(_binary_text)
    out = pd.Series(pd.NA, index=series.index, dtype="boolean")
    good = mapped.notna()
    out[good] = mapped[good].astype(bool)
    return out, ~good & ~missing


def _examples(values: Sequence[Any], k: int = 3) -> str:
    return ", ".join(map(str, values[:k])) + (" ..." if len(values) > k else "")


def _event_column(raw: pd.DataFrame, event_col: str | None, censor_col: str | None, spec: PatientTableSpec,
                  file: Path, log: ProblemLog, *, optional: bool = False) -> pd.Series:
    """True = event observed. ``optional`` (scoring): an empty cell is no problem and the column keeps NA there (a
    nullable boolean column when any event is unknown)."""
    col = event_col or censor_col
    if col is None:  # unknown (a problem was logged, or scoring without outcomes): NA, never counted as censored
        return pd.Series(pd.NA, index=raw.index, dtype="boolean")
    values, bad = as_binary(raw[col])
    _log_bad_events(raw[col], bad, "event" if event_col else "censorship", file, log)
    missing = [] if optional else [str(p) for p in raw.index[raw[col].isna().to_numpy()]]
    if len(missing) == 1:
        log.error("event status is missing", file=file, patient=missing[0], field=col)
    elif missing:
        log.error(f"{len(missing)} patients have no event status, e.g. {_examples(missing)}", file=file, field=col)
    if censor_col is not None and spec.censorship_polarity == "1_is_censored":
        values = ~values  # NA stays NA
    if optional and bool(values.isna().any()):
        return values.astype("boolean")
    return values.fillna(False).astype(bool)


def _log_bad_events(src: pd.Series, bad: pd.Series, what: str, file: Path, log: ProblemLog) -> None:
    """One problem for every patient whose event/censorship value is not binary (one line, with a count)."""
    wrong = src[bad.to_numpy()]
    if wrong.empty:
        return
    hint = ("True/1 = event observed; cBioPortal codes such as '1:DECEASED' / '0:LIVING' are read by their digit"
            if what == "event" else None)
    if len(wrong) == 1:
        log.error(f"{what} must be boolean or 0/1 (or a coded status such as '1:DECEASED'), got {wrong.iloc[0]!r}",
                  file=file, patient=str(wrong.index[0]), field=str(src.name), hint=hint)
        return
    values = [repr(v) for v in pd.unique(wrong.astype(str))]
    log.error(f"{len(wrong)} patients have {what} values that are not boolean or 0/1 (or a coded status such as "
              f"'1:DECEASED'): {_examples(values)}; e.g. patients {_examples([str(p) for p in wrong.index])}",
              file=file, field=str(src.name), hint=hint)


def _datetime_column(raw: pd.DataFrame, col: str, file: Path, log: ProblemLog) -> pd.Series:
    src = raw[col]
    if pd.api.types.is_numeric_dtype(src) and not pd.api.types.is_datetime64_any_dtype(src):
        log.error(f"prediction time must be a date/time, got numbers ({src.dtype})", file=file, field=col,
                  hint="ISO 8601 text or a timestamp column, e.g. 2021-03-04")
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
    ts = src if pd.api.types.is_datetime64_any_dtype(src) else pd.to_datetime(src, errors="coerce", format="mixed")
    if not pd.api.types.is_datetime64_any_dtype(ts):  # mixed time zones: bring all to UTC
        ts = pd.to_datetime(src, errors="coerce", format="mixed", utc=True)
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    for pid, value in src[ts.isna() & src.notna()].items():
        log.error(f"prediction time is not a date/time: {value!r}", file=file, patient=pid, field=col,
                  hint="ISO 8601, e.g. 2021-03-04 or 2021-03-04T10:00:00", group="bad prediction time")
    for pid in src.index[src.isna().to_numpy()]:
        log.error("prediction time is missing", file=file, patient=pid, field=col,
                  hint="the index date: EHR events after it are never used", group="missing prediction time")
    return ts.astype("datetime64[us]")


def _treatment_column(raw: pd.DataFrame, spec: PatientTableSpec, file: Path,
                      log: ProblemLog) -> tuple[pd.Series, tuple[str, ...]]:
    col = str(spec.treatment)
    labels = raw[col].map(norm_id)
    if spec.treatment_arms:
        arms = tuple(spec.treatment_arms)
    else:
        present = raw[col][labels.notna()]
        try:
            ordered = sorted(pd.unique(present))
        except TypeError:
            ordered = sorted(pd.unique(present), key=str)
        arms = tuple(dict.fromkeys(norm_id(v) for v in ordered))  # type: ignore[misc]
    code = {a: i for i, a in enumerate(arms)}
    out = pd.Series(-1, index=raw.index, dtype="int64")
    for pid, label in labels.items():
        if label is None:
            log.error("treatment arm is missing", file=file, patient=pid, field=col, group="missing treatment")
        elif label not in code:
            log.error(f"unknown treatment arm {label!r}; declared arms: {list(arms)}", file=file, patient=pid,
                      field=col, hint=_did_you_mean(label, arms), group="unknown treatment arm")
        else:
            out[pid] = code[label]
    return out, arms


def _response_column(raw: pd.DataFrame, col: str, n_classes: int, file: Path, log: ProblemLog) -> pd.Series:
    src = raw[col]
    if pd.api.types.is_bool_dtype(src):
        src = src.astype(int)
    num = pd.to_numeric(src.map(lambda v: int(v) if isinstance(v, (bool, np.bool_)) else v), errors="coerce")
    valid = num.notna() & (num % 1 == 0) & (num >= 0) & (num < n_classes)
    for pid, value in src[src.notna() & ~valid].items():
        log.error(f"response {value!r} is not a valid class (expected an integer in 0..{n_classes - 1}, or empty)",
                  file=file, patient=pid, field=col, hint="set patients.response_classes for multiclass responses",
                  group="invalid response")
    return num.where(valid).astype("Int64")


def _subject_id_column(raw: pd.DataFrame, col: str, file: Path, log: ProblemLog) -> pd.Series:
    num = pd.to_numeric(raw[col], errors="coerce")
    bad = raw[col].notna() & (num.isna() | (num % 1 != 0))
    for pid, value in raw[col][bad].items():
        log.error(f"MEDS subject_id must be an integer, got {value!r}", file=file, patient=pid, field=col,
                  group="bad subject_id")
    return num.where(~bad).astype("Int64")


# ---- modality sources -------------------------------------------------------------------------------------------
def _resolve_modality(name: str, spec: Any, res: ResolvedManifest, known: set[str] | None) -> ModalitySource | None:
    """The modality's source; the patients it names that the patient table lacks are ignored, with one warning."""
    fn: dict[type, Callable[..., ModalitySource | None]] = {
        SlidesSpec: _resolve_slides, OmicsSpec: _resolve_omics, MedsSpec: _resolve_meds, ClinicalSpec: _resolve_clinical,
    }
    res.log.extra = ExtraPatients()
    try:
        return fn[type(spec)](name, spec, res, known)
    finally:
        res.log.report_extra(name, manifest=res.path)


def _unknown_patient(log: ProblemLog, known: set[str] | None, pid: str, *, file: Path, field: str, what: str) -> bool:
    """True when ``pid`` is not in the patient table: the entry is ignored, and counted for the modality's one
    warning (:meth:`ProblemLog.report_extra`). ``field`` and ``what`` describe the entry (kept for callers)."""
    if known is None or pid in known:
        return False
    log.extra.add(pid, file)
    return True


def _slide_format(spec: SlidesSpec, path: Path) -> tuple[str | None, str | None]:
    """(SlideRef.format, problem): the declared format must fit the file suffix (readers trust the declaration)."""
    by_suffix = SLIDE_SUFFIX_FORMAT.get(path.suffix.lower())
    if spec.format == "auto":
        if by_suffix is None:
            return None, f"unsupported slide feature file type {path.suffix!r}"
        return by_suffix, None
    family = "auto" if spec.format in ("trident", "clam_h5", "stamp") else spec.format
    if by_suffix is not None and by_suffix != family:
        return None, f"declared format {spec.format!r} does not fit the file suffix {path.suffix!r}"
    return spec.format, None


def _resolve_slides(name: str, spec: SlidesSpec, res: ResolvedManifest, known: set[str] | None) -> SlideSource:
    log, where = res.log, f"modalities.{name}"
    refs: dict[str, list[SlideRef]] = {}
    if (spec.table is None) == (spec.glob is None):
        log.error("give exactly one of 'table' (patient_id, slide_id, path) or 'glob' (+ patient_pattern)",
                  file=res.path, field=f"{where}.table")
        return SlideSource(slides={})
    if spec.table is not None:
        rows = _slide_rows_from_table(spec, res, where)
    else:
        rows = _slide_rows_from_glob(spec, res, where, known)
    for pid, slide_id, path, file, field_name in rows:
        if _unknown_patient(log, known, pid, file=file, field=field_name, what=f"slide {slide_id!r}"):
            continue
        fmt, bad_format = _slide_format(spec, path)
        if fmt is None:
            log.error(str(bad_format), file=path, patient=pid, field=f"{where}.format",
                      hint=f"suffixes: {', '.join(SLIDE_SUFFIX_FORMAT)}; or set format: auto", group="slide type")
            continue
        if not path.is_file():
            log.error("slide feature file not found", file=path, patient=pid, field=spec.path_column,
                      hint=f"listed in {file.name}; paths are relative to the manifest folder",
                      group="missing slide file")
            continue
        refs.setdefault(pid, []).append(SlideRef(patient_id=pid, slide_id=slide_id, path=path, format=fmt))
    return SlideSource(slides={p: tuple(r) for p, r in refs.items()})


def _slide_rows_from_table(spec: SlidesSpec, res: ResolvedManifest,
                           where: str) -> list[tuple[str, str, Path, Path, str]]:
    log = res.log
    table_path = _under(res.root, str(spec.table))
    try:
        table = read_table(table_path, str_columns=[spec.patient_column, spec.slide_column, spec.path_column])
    except InputError as exc:
        p = exc.problems[0]
        log.error(f"slide table: {p.message}", file=table_path, field=f"{where}.table", hint=p.hint)
        return []
    for col in (spec.patient_column, spec.path_column):
        if col not in table.columns:
            log.error(f"slide table has no column {col!r}", file=table_path, field=col,
                      hint=_did_you_mean(col, table.columns))
            return []
    rows = []
    for i, rec in enumerate(table.to_dict("records")):
        pid, rel = norm_id(rec[spec.patient_column]), norm_id(rec[spec.path_column])
        if pid is None or rel is None:
            log.error(f"row {i + 2}: empty {'patient id' if pid is None else 'path'}", file=table_path, patient=pid,
                      field=spec.patient_column if pid is None else spec.path_column, group="slide table empty cell")
            continue
        path = _under(res.root, rel)
        slide_id = norm_id(rec.get(spec.slide_column)) or path.stem
        rows.append((pid, slide_id, path, table_path, spec.patient_column))
    return rows


def _slide_rows_from_glob(spec: SlidesSpec, res: ResolvedManifest, where: str,
                          known: set[str] | None) -> list[tuple[str, str, Path, Path, str]]:
    log = res.log
    try:
        pattern = re.compile(spec.patient_pattern)
    except re.error as exc:
        log.error(f"patient_pattern is not a valid regular expression: {exc}", file=res.path,
                  field=f"{where}.patient_pattern")
        return []
    pat = str(spec.glob)
    if Path(pat).is_absolute():
        anchor = Path(Path(pat).anchor)
        files = sorted(anchor.glob(str(Path(pat).relative_to(anchor))))
    else:
        files = sorted(res.root.glob(pat))
    files = [f for f in files if f.is_file()]
    if not files:
        log.error(f"glob {pat!r} matches no file", file=res.root / pat, field=f"{where}.glob",
                  hint="the glob is relative to the manifest folder")
        return []
    rows, unmatched = [], []
    for f in files:
        m = pattern.match(f.stem)
        if m is None:
            unmatched.append(f.name)
            continue
        pid = m.group("patient") if "patient" in pattern.groupindex else m.group(0)
        if _unknown_patient(log, known, pid, file=res.root / pat, field=f"{where}.glob", what=f"slide {f.name!r}"):
            continue
        rows.append((pid, f.stem, f, f, f"{where}.glob"))
    if unmatched:
        log.warn(f"{len(unmatched)} slide file(s) do not match patient_pattern and are ignored, e.g. {unmatched[:3]}",
                 file=res.path, field=f"{where}.patient_pattern")
    return rows


def _resolve_omics(name: str, spec: OmicsSpec, res: ResolvedManifest, known: set[str] | None) -> OmicsSource:
    log, where = res.log, f"modalities.{name}"
    available: set[str] = set()
    paths: dict[str, Path | None] = {}
    for key in ("expression", "mutations", "mutation_samples", "cnv"):
        rel = getattr(spec, key)
        paths[key] = None if rel is None else _under(res.root, rel)
        if paths[key] is not None and not paths[key].is_file():
            log.error(f"{key} file not found", file=paths[key], field=f"{where}.{key}",
                      hint="paths are relative to the manifest folder")
            paths[key] = None
    if not any(getattr(spec, k) for k in ("expression", "mutations", "cnv", "wide_table")):
        log.error("an omics modality needs at least one of expression, mutations, cnv, wide_table", file=res.path,
                  field=where)
    if paths["expression"] is not None:
        available |= _expression_patients(paths["expression"], spec, log, known)
    if spec.mutations is not None and paths["mutations"] is not None:
        available |= _mutation_patients(paths["mutations"], paths["mutation_samples"], spec, log, known)
    elif spec.mutation_samples is not None and spec.mutations is None:
        log.warn("mutation_samples given without mutations; ignored", file=res.path, field=f"{where}.mutation_samples")
    if paths["cnv"] is not None:
        available |= _table_patients(paths["cnv"], None, "CNV row", log, known)
    wide = None
    if spec.wide_table is not None:
        wide = _wide_table(_under(res.root, spec.wide_table), spec, where, log, known)
        if wide is not None:
            available |= set(wide.index)
    if known is not None:
        available &= known
    return OmicsSource(
        expression=paths["expression"], expression_patient_column=spec.expression_patient_column,
        mutations=paths["mutations"], mutation_samples=paths["mutation_samples"],
        mutation_patient_pattern=spec.mutation_patient_pattern, cnv=paths["cnv"], wide=wide,
        available=frozenset(available),
    )


def read_h5ad_obs(path: Path) -> pd.DataFrame:
    """The ``obs`` table of an ``.h5ad`` without reading ``X`` or the layers."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        if "obs" not in f:
            raise InputError("not an AnnData file: no 'obs' group", file=path, field="obs")
        return read_elem(f["obs"])


def _expression_patients(path: Path, spec: OmicsSpec, log: ProblemLog, known: set[str] | None) -> set[str]:
    try:
        obs = read_h5ad_obs(path)
    except InputError as exc:
        log.absorb(exc)
        return set()
    except Exception as exc:  # h5py raises OSError on truncated files; anndata may raise others on odd layouts
        log.error(f"cannot read AnnData: {type(exc).__name__}: {exc}", file=path, field="obs",
                  hint="write it with anndata (adata.write_h5ad)")
        return set()
    col = spec.expression_patient_column
    if col is not None and col not in obs.columns:
        log.error(f"AnnData obs has no column {col!r}", file=path, field=f"obs.{col}",
                  hint=_did_you_mean(col, obs.columns))
        return set()
    values = obs.index if col is None else obs[col]
    field_name = "obs_names" if col is None else f"obs.{col}"
    out = set()
    for v in pd.unique(np.asarray(values, dtype=object)):
        pid = norm_id(v)
        if pid is None or _unknown_patient(log, known, pid, file=path, field=field_name, what="expression sample"):
            if pid is not None and col is None:
                log.extra.advice = "if obs names are sample ids, set expression_patient_column"
            continue
        out.add(pid)
    return out


def sample_to_patient(sample: str, pattern: re.Pattern[str]) -> str | None:
    m = pattern.match(sample)
    if m is None:
        return None
    return m.group("patient") if "patient" in pattern.groupindex else m.group(0)


def read_maf(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a MAF (tab separated, ``#`` comment lines); ``columns`` restricts what is read."""
    kind = table_kind(path)
    sep = "," if kind == "csv" else "\t"
    usecols = None if columns is None else (lambda c: c in set(columns))
    return read_delimited(path, sep, ["Tumor_Sample_Barcode"], all_text=True, comment="#", usecols=usecols)


def _mutation_patients(maf: Path, samples_file: Path | None, spec: OmicsSpec, log: ProblemLog,
                       known: set[str] | None) -> set[str]:
    try:
        header = pd.read_csv(maf, sep="," if table_kind(maf) == "csv" else "\t", comment="#", nrows=0).columns
    except Exception as exc:
        log.error(f"cannot read MAF: {type(exc).__name__}: {exc}", file=maf, field="mutations")
        return set()
    absent = [c for c in MAF_REQUIRED if c not in header]
    for c in absent:
        log.error(f"MAF lacks required column {c!r}", file=maf, field=c,
                  hint=_did_you_mean(c, header, cutoff=0.8) or f"required: {', '.join(MAF_REQUIRED)}; found: "
                  f"{', '.join(map(str, header[:12]))}")
    try:
        pattern = re.compile(spec.mutation_patient_pattern)
    except re.error as exc:
        log.error(f"mutation_patient_pattern is not a valid regular expression: {exc}", file=maf,
                  field="mutation_patient_pattern")
        return set()
    samples: dict[str, Path] = {}
    if "Tumor_Sample_Barcode" not in absent:
        barcodes = read_maf(maf, columns=["Tumor_Sample_Barcode"])["Tumor_Sample_Barcode"]
        for s in pd.unique(barcodes.dropna()):
            samples[str(s).strip()] = maf
    listed: set[str] = set()
    if samples_file is not None:
        listed = {ln.strip() for ln in samples_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
        extra = sorted(set(samples) - listed)
        if extra:
            log.warn(f"{len(extra)} MAF sample(s) are not in the sequenced-sample list, e.g. {extra[:3]}", file=maf,
                     field="Tumor_Sample_Barcode", hint=f"add them to {samples_file.name}")
        for s in listed:
            samples.setdefault(s, samples_file)
    else:
        log.warn("no mutation_samples list: patients without mutation calls cannot be told from unsequenced ones",
                 file=maf, field="mutation_samples", hint="list every sequenced sample, one per line")
    out = set()
    for s, src in sorted(samples.items()):
        pid = sample_to_patient(s, pattern)
        fld = "Tumor_Sample_Barcode" if src == maf else "sample"
        if pid is None:
            log.error(f"sample {s!r} does not match mutation_patient_pattern {pattern.pattern!r}", file=src,
                      field=fld, group="sample pattern")
            continue
        if _unknown_patient(log, known, pid, file=src, field=fld, what=f"mutation sample {s!r}"):
            continue
        out.add(pid)
    return out


def _table_patients(path: Path, id_column: str | None, what: str, log: ProblemLog,
                    known: set[str] | None) -> set[str]:
    try:
        table = read_table(path, str_columns=[id_column] if id_column else _first_column(path))
    except InputError as exc:
        log.absorb(exc)
        return set()
    col = id_column or table.columns[0]
    out = set()
    for v in table[col]:
        pid = norm_id(v)
        if pid is None or _unknown_patient(log, known, pid, file=path, field=str(col), what=what):
            continue
        out.add(pid)
    return out


def _wide_table(path: Path, spec: OmicsSpec, where: str, log: ProblemLog,
                known: set[str] | None) -> pd.DataFrame | None:
    try:
        table = read_table(path, str_columns=[spec.wide_id_column])
    except InputError as exc:
        log.absorb(exc)
        return None
    if spec.wide_id_column not in table.columns:
        log.error(f"wide omics table has no column {spec.wide_id_column!r}", file=path, field=spec.wide_id_column,
                  hint=_did_you_mean(spec.wide_id_column, table.columns))
        return None
    feats = [c for c in table.columns if str(c).endswith(("_rnaseq", "_mut", "_cnv"))]
    if not feats:
        log.error("wide omics table has no <GENE>_rnaseq / <GENE>_mut / <GENE>_cnv columns", file=path,
                  field=f"{where}.wide_table")
        return None
    ids = table[spec.wide_id_column].map(norm_id)
    table = table.loc[ids.notna().to_numpy(), feats].set_axis(pd.Index(ids.dropna().to_numpy(), name="patient_id"))
    n_dup = int(table.index.duplicated().sum())
    if n_dup:
        log.warn(f"{n_dup} duplicate rows per patient (e.g. one row per slide); the first row per patient is used",
                 file=path, field=spec.wide_id_column)
        table = table[~table.index.duplicated(keep="first")]
    keep = [pid for pid in table.index
            if not _unknown_patient(log, known, pid, file=path, field=spec.wide_id_column, what="omics row")]
    return table.loc[keep]


def _resolve_meds(name: str, spec: MedsSpec, res: ResolvedManifest, known: set[str] | None) -> MedsSource | None:
    log, where = res.log, f"modalities.{name}"
    root = _under(res.root, spec.path)
    data_dir = root / "data"
    if not data_dir.is_dir():
        log.error("MEDS directory has no data/ folder", file=data_dir, field=f"{where}.path",
                  hint="MEDS 0.4 layout: <root>/data/<split>/<shard>.parquet + <root>/metadata/")
        return MedsSource(root=root, subject_ids={})
    files = sorted(data_dir.rglob("*.parquet"))
    if not files:
        log.error("no parquet files under data/", file=data_dir, field=f"{where}.path")
        return MedsSource(root=root, subject_ids={})
    bad = res.bad_meds_files.setdefault(name, set())
    for f in files:
        probs = meds_schema_problems(f)
        for p in probs:
            log.error(p.message, file=p.file, field=p.field, hint=p.hint)
        if probs:
            bad.add(f)
    mapping = _meds_mapping(res, log)
    good = [f for f in files if f not in bad]
    if not good or not mapping:
        return MedsSource(root=root, subject_ids={})
    import polars as pl

    try:
        present = pl.scan_parquet([str(f) for f in good]).select(pl.col("subject_id").unique()).collect()
    except Exception as exc:  # polars raises its own errors for unreadable / mismatched shards
        log.error(f"cannot read MEDS shards: {type(exc).__name__}: {exc}", file=data_dir, field="subject_id")
        return MedsSource(root=root, subject_ids={})
    have = set(present["subject_id"].to_list())
    mapped = set(mapping.values())
    log.extra.what = "MEDS subject_id(s)"
    for sid in sorted(s for s in have - mapped if s is not None):
        log.extra.add(sid, data_dir)
    return MedsSource(root=root, subject_ids={p: s for p, s in mapping.items() if s in have})


def _meds_mapping(res: ResolvedManifest, log: ProblemLog) -> dict[str, int]:
    """patient id -> MEDS subject_id, from patients.meds_subject_id or from numeric patient ids."""
    if res.patients is None or res.spec is None:
        return {}
    col = res.spec.patients.meds_subject_id
    mapping: dict[str, int] = {}
    if col is not None:
        for pid, sid in res.patients[col].items():
            if not pd.isna(sid):
                mapping[str(pid)] = int(sid)
    else:
        non_numeric = [p for p in res.patients.index if not re.fullmatch(r"\d+", str(p))]
        if non_numeric:
            log.error(f"patient ids are not integers (e.g. {non_numeric[0]!r}), so they cannot be MEDS subject_ids",
                      file=res.path, patient=non_numeric[0], field="patients.meds_subject_id",
                      hint="add a column mapping patients to MEDS subject_id and name it in patients.meds_subject_id")
            return {}
        mapping = {str(p): int(p) for p in res.patients.index}
    seen: dict[int, str] = {}
    for pid, sid in mapping.items():
        if sid in seen:
            log.error(f"MEDS subject_id {sid} is mapped to two patients ({seen[sid]!r} and {pid!r})",
                      file=res.patients_file, patient=pid, field=col or "patient_id", group="shared subject_id")
        seen[sid] = pid
    return mapping


def meds_schema_problems(path: Path) -> list[Problem]:
    """Dtype problems of one MEDS 0.4 data shard, read from its parquet footer only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:
        return [Problem(f"cannot read parquet: {type(exc).__name__}: {exc}", file=str(path), field="schema")]
    checks: dict[str, tuple[Callable[[Any], bool], str, bool]] = {
        "subject_id": (pa.types.is_int64, "int64", True),
        "time": (lambda t: pa.types.is_timestamp(t) and t.tz is None, "timestamp[us] (no time zone)", True),
        "code": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
                 "string", True),
        "numeric_value": (pa.types.is_floating, "float32", False),
        "text_value": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t),
                       "large_string", False),
    }
    out = []
    for col, (ok, expected, required) in checks.items():
        if col not in schema.names:
            if required:
                out.append(Problem(f"MEDS data shard lacks column {col!r}", file=str(path), field=col,
                                   hint=f"MEDS 0.4 requires {col}: {expected}"))
            continue
        actual = schema.field(col).type
        if not ok(actual):
            out.append(Problem(f"MEDS column {col!r} has dtype {actual}, expected {expected}", file=str(path),
                               field=col, hint="cast it when writing the shard (MEDS 0.4 DataSchema)"))
    return out


def _resolve_clinical(name: str, spec: ClinicalSpec, res: ResolvedManifest,
                      known: set[str] | None) -> ClinicalSource | None:
    log, where = res.log, f"modalities.{name}"
    path = _under(res.root, spec.path)
    table = _read_clinical_table(path, spec, where, log)
    if table is None:
        return None
    for col in spec.exclude:
        if col not in table.columns:
            log.warn(f"excluded column {col!r} is not in the table", file=path, field=f"{where}.exclude")
    declared = (*spec.categorical, *spec.numeric)
    outcomes = declared_outcome_columns(res.spec.patients) if res.spec is not None else {}
    clean, removed = clinical_feature_table(table, outcomes, spec.exclude, LOADER_LEAKAGE_PATTERNS, keep=declared)
    allowed = flagged_declared(table, declared)
    _log_clinical_columns(log, path, where, spec, removed, allowed, manifest=res.path)
    withheld = table[[c for c, why in removed.items() if is_identifier_reason(why)]]
    table = clean
    for col in declared:
        if col not in table.columns and col not in removed:
            log.error(f"clinical table has no column {col!r}", file=path, field=col,
                      hint=_did_you_mean(col, table.columns))
    categorical, numeric = spec.categorical, spec.numeric
    if not categorical and not numeric:  # infer: numbers are numeric, the rest categorical
        numeric = tuple(c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])
                        and not pd.api.types.is_bool_dtype(table[c]))
        categorical = tuple(c for c in table.columns if c not in numeric)
    for col in numeric:
        if col not in table.columns:
            continue
        num = pd.to_numeric(table[col], errors="coerce")
        for pid, value in table[col][num.isna() & table[col].notna()].items():
            log.error(f"numeric column has non-numeric value {value!r}", file=path, patient=pid, field=col,
                      group=f"clinical non-numeric {col}")
        table[col] = num
    keep = [pid for pid in table.index
            if not _unknown_patient(log, known, str(pid), file=path, field=spec.id, what="clinical row")]
    return ClinicalSource(table=table.loc[keep], categorical=tuple(categorical), numeric=tuple(numeric), path=path,
                          removed=removed, withheld=withheld.loc[keep] if len(withheld.columns) else None,
                          allowed=tuple(allowed))


def _read_clinical_table(path: Path, spec: ClinicalSpec, where: str, log: ProblemLog) -> pd.DataFrame | None:
    """The clinical table indexed by patient id (first row per patient; duplicates are problems)."""
    try:
        table = read_table(path, str_columns=[spec.id])
    except InputError as exc:
        p = exc.problems[0]
        log.error(f"clinical table: {p.message}", file=path, field=f"{where}.path", hint=p.hint)
        return None
    if spec.id not in table.columns:
        log.error(f"clinical table has no column {spec.id!r}", file=path, field=spec.id,
                  hint=_did_you_mean(spec.id, table.columns))
        return None
    ids = table[spec.id].map(norm_id)
    for row in np.flatnonzero(ids.isna().to_numpy()):
        log.warn(f"row {int(row) + 2}: empty patient id; the row is not used", file=path, field=spec.id,
                 group="clinical empty id")
    table = table.loc[ids.notna().to_numpy()].drop(columns=[spec.id])
    table.index = pd.Index(ids.dropna().to_numpy(dtype=object), name="patient_id")
    for pid in pd.unique(table.index[table.index.duplicated()]):
        log.error("duplicate patient id in the clinical table", file=path, patient=pid, field=spec.id,
                  group="clinical duplicate")
    return table[~table.index.duplicated(keep="first")]


def _log_clinical_columns(log: ProblemLog, path: Path, where: str, spec: ClinicalSpec, removed: dict[str, str],
                          allowed: dict[str, str], *, manifest: Path) -> None:
    """Conflicting declarations are problems; identifier-like and outcome-like removals are warnings."""
    declared = (*spec.categorical, *spec.numeric)
    for col in declared:
        if col in removed:
            log.error(f"column {col!r} is declared a clinical feature but is {removed[col]}", file=manifest,
                      field=f"{where}.{'categorical' if col in spec.categorical else 'numeric'}",
                      hint="a patient-table (outcome) column or an excluded one is never a feature; remove it from "
                           "one of the lists")
    for col, why in removed.items():
        if is_identifier_reason(why):
            log.warn(f"column {col!r} is not used as a feature: {why}", file=path, field=col,
                     hint=f"declare it in {where}.categorical or {where}.numeric to use it anyway")
    outcome = {c: why for c, why in removed.items()
               if not is_identifier_reason(why) and c not in spec.exclude and c not in declared}
    if outcome:
        listed = "; ".join(f"{c} ({why})" for c, why in outcome.items())
        log.warn(f"{len(outcome)} column(s) of the clinical table are outcomes or patient-table fields and are not "
                 f"used as features: {listed}", file=path, field=f"{where}.path")
    for col, why in allowed.items():
        log.warn(f"declared clinical column {col!r} looks like an outcome or an identifier ({why}); it is used "
                 "because it is declared", file=path, field=col, hint="make sure it is known at the prediction time")


def _resolve_splits(spec: SplitsSpec, root: Path, known: set[str] | None, log: ProblemLog) -> list[Fold] | None:
    from multimodal.cohorts.splits import read_split_files

    pattern = spec.files if Path(spec.files).is_absolute() else str(root / spec.files)
    try:
        return read_split_files(pattern, spec.folds, known_ids=known)
    except InputError as exc:
        log.absorb(exc)
        return None
