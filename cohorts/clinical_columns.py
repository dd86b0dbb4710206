"""Which columns of a clinical table may be features: decided once, where the :class:`ClinicalSource` is built.

Every builder of a clinical source (the manifest loader, the TCGA loaders) passes its table through
:func:`clinical_feature_table`, so every feature path — the clinical adapter, the tabular baselines, pooled features —
reads the same clean table and none of them can see the outcome. What was removed, and why, is recorded on the source
(:attr:`ClinicalSource.removed`) and reported by ``multimodal validate``.

A column is removed, first rule first:

1. **Declared patient-table columns**: every column the manifest's ``patients`` section names (id, time, event,
   censorship, prediction time, treatment arm, response, MEDS subject id; see :func:`declared_outcome_columns`).
   This is what makes the common layout — one CSV named both as ``patients.path`` and as the clinical ``path`` —
   safe. Declaring such a column as a clinical feature too is an error.
2. **Excluded columns**: ``modalities.<clinical>.exclude``.
3. **Outcome-like names** (undeclared columns only): a case-insensitive full match of :data:`LOADER_LEAKAGE_PATTERNS`
   — the clinical adapter's :data:`DEFAULT_LEAKAGE_PATTERNS` (vital status, death, censorship, ``OS_*`` / ``PFS_*``
   ..., survival, follow-up, ``time`` / ``event`` / ``response`` / ``outcome*``) plus common endpoint names of
   cBioPortal and trial exports (``DFS_*``, ``TTP_*``, ``best_response``, ``RECIST*``, ``*_CANCER_STATUS``,
   ``DAYS_LAST_FOLLOWUP`` ...).
4. **Identifier-like columns** (undeclared columns only; see :func:`identifier_reason`), each with a warning naming
   the file and the column:

   * a date/time column, or text of which at least 90% of the values parse as dates (``2015-01-31``, ``31/01/2015``,
     ``Jan 31, 2015`` ...): dates encode the calendar era and the follow-up, not the patient;
   * a text column unique per patient (at least 95% distinct values among at least :data:`MIN_ROWS` recorded ones):
     an MRN, a sample barcode, a name;
   * free text: at least half of the values distinct and a median length of :data:`FREE_TEXT_MIN_CHARS` characters
     or more (notes, comments);
   * a record number: integers, all distinct (at least :data:`MIN_ROWS`), whose name looks like an identifier
     (``mrn``, ``*_id``, ``record_no``, ``Unnamed: 0`` ...) or whose values are a consecutive run (a row number: a
     file sorted by outcome would leak it). Age-like names (``age``, ``age_at_dx``) never count. Other distinct
     integers (lab counts) are kept: there is no telling them from a measurement.

A column the clinical spec declares explicitly (``categorical`` / ``numeric``) is exempt from rules 3 and 4 (kept,
with a warning when it looks like an outcome or an identifier). An identifier-like column that the clinical
*adapter's* config declares explicitly is still usable by that adapter: such columns are kept aside on the source
(:attr:`ClinicalSource.withheld`), never in its table.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from multimodal.cohorts.manifest import PatientTableSpec

__all__ = [
    "DEFAULT_LEAKAGE_PATTERNS",
    "DEFAULT_MISSING_VALUES",
    "LOADER_LEAKAGE_PATTERNS",
    "clinical_feature_table",
    "declared_outcome_columns",
    "flagged_declared",
    "identifier_reason",
    "is_identifier_reason",
    "leakage_pattern",
]

#: Column names (case-insensitive full match) treated as outcome / follow-up fields and never used as features.
DEFAULT_LEAKAGE_PATTERNS: tuple[str, ...] = (
    r"vital_?status",
    r"dead|deceased|death.*|days_to_death",
    r"censor(ed|ship)?(_.*)?|.*_censorship",
    r"(os|dss|dfi|pfi|pfs|efs|rfs)(_.*)?",
    r"survival.*|.*_survival(_.*)?|.*_event(_.*)?",
    r"follow_?up.*|days_to_last.*|last_(follow_?up|contact|known_alive).*",
    r"time|event|response|outcome.*|recurrence.*|progression.*|relapse.*",
)
#: More endpoint names seen in cBioPortal and trial exports; the loaders apply them on top of the defaults.
EXTRA_LEAKAGE_PATTERNS: tuple[str, ...] = (
    r"(dfs|dmfs|mfs|ttp|ttf|tte|dor|orr)(_.*)?",
    r"best_?(overall_?)?response.*|(objective|overall|clinical|pathologic(al)?|complete|partial)_response.*",
    r"recist.*|.*(tumou?r|disease|cancer)_status|cause_of_death",
    r".*follow_?up.*|days_(to_)?(last|death|recurrence|progression).*",
    r"date_of_(death|last.*|recurrence|progression|relapse).*",
)
LOADER_LEAKAGE_PATTERNS: tuple[str, ...] = (*DEFAULT_LEAKAGE_PATTERNS, *EXTRA_LEAKAGE_PATTERNS)
#: Strings read as a missing value (besides NaN / None).
DEFAULT_MISSING_VALUES: tuple[str, ...] = (
    "", "NA", "N/A", "NaN", "nan", "None", "null", "[Not Available]", "[Not Evaluated]", "[Unknown]",
    "[Not Applicable]", "[Discrepancy]", "--",
)

#: Fewer recorded values than this and a column is never called identifier-like (too few to tell).
MIN_ROWS = 10
#: Share of distinct values from which a text column counts as unique per patient.
UNIQUE_SHARE = 0.95
#: Share of values that must parse as dates for a text column to count as dates.
DATE_SHARE = 0.9
#: Median length (characters) from which a mostly distinct text column counts as free text.
FREE_TEXT_MIN_CHARS = 30
#: Reason prefix of identifier-like removals (see :func:`is_identifier_reason`).
IDENTIFIER = "identifier-like"

_DATE_RE = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([ T].*)?"  # 2015-01-31, 2015/01/31 10:00
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"  # 31/01/2015, 01-31-15
    r"|\d{1,2}[ -][A-Za-z]{3,9}[ ,-]+\d{2,4}"  # 31 Jan 2015, 31-JAN-2015
    r"|[A-Za-z]{3,9}\.? \d{1,2},? \d{4}"  # Jan 31, 2015
)
_ID_NAME_RE = re.compile(
    r"unnamed:?\s*\d*|(row_?)?index|row(_?(id|num|number|no|nr))?"
    r"|(.*[_\s.-])?(id|ids|identifier|mrn|record|accession|barcode|uuid|guid)"
    r"|.*mrn.*|(.*[_\s.-])?(patient|case|subject|sample|record|hospital|chart)_?(number|num|no|nr)",
    re.IGNORECASE,
)
_CAMEL_ID_RE = re.compile(r".*[a-z](Id|ID)")
_AGE_NAME_RE = re.compile(r"(.*[_\s.-])?age([_\s.-].*)?", re.IGNORECASE)


# ---- the declared columns ---------------------------------------------------------------------------------------
def declared_outcome_columns(spec: PatientTableSpec) -> dict[str, str]:
    """Column -> the ``patients`` field naming it, for every column the manifest declares in the patient table.

    Without a declared event or censorship column the loader looks for ``event`` then ``censorship``; both are
    listed then.
    """
    fields = {
        "id": spec.id, "time": spec.time, "event": spec.event, "censorship": spec.censorship,
        "prediction_time": spec.prediction_time, "treatment": spec.treatment, "response": spec.response,
        "meds_subject_id": spec.meds_subject_id,
    }
    if spec.event is None and spec.censorship is None:
        fields |= {"event": "event", "censorship": "censorship"}
    out: dict[str, str] = {}
    for key, col in fields.items():
        if col is not None:
            out.setdefault(str(col), f"patients.{key}")
    return out


def leakage_pattern(column: str, patterns: Iterable[str]) -> str | None:
    """The first pattern ``column`` fully matches (case-insensitive), else None."""
    return next((p for p in patterns if re.fullmatch(p, str(column), flags=re.IGNORECASE)), None)


# ---- identifier-like columns ------------------------------------------------------------------------------------
def _recorded_text(series: pd.Series, missing: frozenset[str]) -> pd.Series:
    text = series.dropna().astype(str).str.strip()
    return text[~text.isin(missing)]


def _looks_like_dates(text: pd.Series) -> bool:
    if not text.str.fullmatch(_DATE_RE).mean() >= DATE_SHARE:
        return False
    with warnings.catch_warnings():  # day-first / format inference notes: the share parsed is what counts here
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() >= DATE_SHARE)


def _text_reason(series: pd.Series, missing: frozenset[str]) -> str | None:
    text = _recorded_text(series, missing)
    if len(text) < MIN_ROWS:
        return None
    example = text.iloc[0]
    if _looks_like_dates(text):
        return f"{IDENTIFIER}: dates as text (e.g. {example!r})"
    share = text.nunique() / len(text)
    if share >= UNIQUE_SHARE:
        return f"{IDENTIFIER}: a text value unique per patient (e.g. {example!r})"
    if share >= 0.5 and text.str.len().median() >= FREE_TEXT_MIN_CHARS:
        return f"{IDENTIFIER}: free text ({text.nunique()} distinct values, e.g. {example[:40]!r})"
    return None


def _is_id_name(name: str) -> bool:
    return bool(_ID_NAME_RE.fullmatch(name) or _CAMEL_ID_RE.fullmatch(name))


def _number_reason(name: str, series: pd.Series) -> str | None:
    values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype=np.float64)
    if len(values) < MIN_ROWS or _AGE_NAME_RE.fullmatch(name) or not np.all(np.mod(values, 1) == 0):
        return None
    if len(np.unique(values)) != len(values):
        return None
    consecutive = values.max() - values.min() + 1 == len(values)
    if _is_id_name(name) or consecutive:
        why = "a consecutive run, like a row number" if consecutive else "an identifier's name"
        return f"{IDENTIFIER}: a record number (distinct integers with {why}, e.g. {int(values[0])})"
    return None


def identifier_reason(name: str, series: pd.Series,
                      missing_values: Sequence[str] = DEFAULT_MISSING_VALUES) -> str | None:
    """Why ``series`` looks like an identifier, a date or free text rather than a feature (see the module doc)."""
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return f"{IDENTIFIER}: a date/time column"
    if pd.api.types.is_bool_dtype(dtype):
        return None
    if pd.api.types.is_numeric_dtype(dtype):
        return _number_reason(str(name), series)
    if isinstance(dtype, pd.CategoricalDtype) and not pd.api.types.is_object_dtype(dtype.categories.dtype):
        return None
    return _text_reason(series, frozenset(missing_values))


def is_identifier_reason(reason: str) -> bool:
    """True for a removal reason given by :func:`identifier_reason`."""
    return reason.startswith(IDENTIFIER)


# ---- the clean table --------------------------------------------------------------------------------------------
def _removal_reason(column: str, series: pd.Series, declared: Mapping[str, str], exclude: frozenset[str],
                    patterns: Sequence[str], keep: frozenset[str]) -> str | None:
    if column in declared:
        return f"declared as {declared[column]}"
    if column in exclude:
        return "listed in exclude"
    if column in keep:
        return None
    pattern = leakage_pattern(column, patterns)
    if pattern is not None:
        return f"outcome-like name (matches {pattern!r})"
    return identifier_reason(column, series)


def clinical_feature_table(
    table: pd.DataFrame,
    declared_outcome_columns: Mapping[str, str] | None = None,
    exclude: Iterable[str] = (),
    patterns: Sequence[str] = LOADER_LEAKAGE_PATTERNS,
    *,
    keep: Iterable[str] = (),
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The clinical table without the columns that must not be features, and what was removed with why.

    Args:
        table: the clinical table, indexed by patient id.
        declared_outcome_columns: column -> declaring field (``patients.time`` ...), e.g. from
            :func:`declared_outcome_columns`; always removed.
        exclude: columns always removed (the clinical spec's ``exclude``).
        patterns: regexes (case-insensitive full match) of outcome-like names, removed unless in ``keep``.
        keep: columns declared explicitly as features: exempt from ``patterns`` and from the identifier rules.

    Returns:
        ``(clean_table, removed)``: ``removed`` maps each removed column (in table order) to its reason.
    """
    declared = {str(k): v for k, v in (declared_outcome_columns or {}).items()}
    excl, kept = frozenset(map(str, exclude)), frozenset(map(str, keep))
    removed: dict[str, str] = {}
    for col in table.columns:
        reason = _removal_reason(str(col), table[col], declared, excl, patterns, kept)
        if reason is not None:
            removed[str(col)] = reason
    clean = table.drop(columns=[c for c in table.columns if str(c) in removed])
    return clean, removed


def flagged_declared(table: pd.DataFrame, keep: Iterable[str],
                     patterns: Sequence[str] = LOADER_LEAKAGE_PATTERNS) -> dict[str, str]:
    """Columns declared as features (``keep``) that look like an outcome or an identifier: column -> why.

    They stay features (the declaration is explicit); loaders warn about them and record them as allowed.
    """
    out: dict[str, str] = {}
    for col in dict.fromkeys(map(str, keep)):
        if col not in table.columns:
            continue
        pattern = leakage_pattern(col, patterns)
        reason = f"outcome-like name (matches {pattern!r})" if pattern else identifier_reason(col, table[col])
        if reason is not None:
            out[col] = reason
    return out
