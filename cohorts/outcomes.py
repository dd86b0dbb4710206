"""The patient table: outcome modes (required for training, optional for scoring) and the checks that turn the
raw table into :attr:`Cohort.patients` (time, event, prediction time, treatment arm, response, MEDS subject id)."""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import EVENT, PREDICTION_TIME, RESPONSE, TIME, TREATMENT
from multimodal.cohorts.formats.tables import norm_id
from multimodal.cohorts.manifest import (
    PatientTableSpec,
)
from multimodal.cohorts.problems import ProblemLog, did_you_mean

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
    token = _OUTCOMES.set(check_mode(outcomes))
    try:
        yield
    finally:
        _OUTCOMES.reset(token)


def check_mode(outcomes: str | None) -> str:
    if outcomes is None:
        return _OUTCOMES.get()
    if outcomes not in OUTCOME_MODES:
        raise ValueError(f"outcomes must be one of {OUTCOME_MODES}, got {outcomes!r}")
    return outcomes



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
    optional = check_mode(outcomes) == "optional"
    event_col, censor_col = _outcome_columns(raw, spec, file, log, manifest or file, optional=optional)
    declared = {"id": spec.id, "time": spec.time, "prediction_time": spec.prediction_time,
                "treatment": spec.treatment, "response": spec.response, "meds_subject_id": spec.meds_subject_id}
    missing = False
    for key, col in declared.items():
        if col is not None and col not in raw.columns:
            if optional and key in ("time", "response"):
                continue  # scoring: no outcome column
            log.error(f"patient table has no column {col!r} (patients.{key})", file=file, field=col,
                      hint=did_you_mean(col, raw.columns))
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
                      hint=did_you_mean("event", raw.columns))
            return None, None
    for col in (event, censor):
        if col is not None and col not in raw.columns:
            if optional:
                return None, None
            log.error(f"patient table has no column {col!r}", file=file, field=col,
                      hint=did_you_mean(col, raw.columns))
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
                      field=col, hint=did_you_mean(label, arms), group="unknown treatment arm")
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
