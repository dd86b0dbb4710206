"""Treatment response on real TCGA patients: first-course outcome (TCGA-CDR) with PORPOISE genomics.

Endpoint ``treatment_outcome_first_course`` of the TCGA-CDR clinical table (Liu et al., Cell 2018), read from the
MMP split files (:func:`multimodal.cohorts.tcga.load_mmp_clinical`)::

    "Complete Remission/Response"                                              -> response = 1
    "Partial Remission/Response", "Stable Disease", "Progressive Disease"      -> response = 0
    "[Unknown]", "[Not Applicable]", "[Not Available]", "[Discrepancy]",
    "[Not Evaluated]", "[Not Reported]", "[Completed]", empty                 -> excluded (counted)

The vocabulary is the TCGA BCR codebook's, not the values seen in three cohorts: the bracketed codes are the BCR's
missing-value codes (they carry no label), so any bracketed value is excluded and counted; one outside the list above
is excluded too, with a warning naming it and its count. Patients whose CDR row is flagged ``redaction ==
"Redacted"`` (TCGA withdrew the case) are excluded and counted too. Any other, unbracketed outcome value would change
a label and is an :class:`InputError` naming the patient (a silent default would relabel patients).

The cohort holds only the labelled patients. Its pieces:

* ``patients``: ``response`` (Int64 0/1), ``time`` / ``event`` = CDR overall survival (``os_survival_days``,
  ``event = 1 - os_censorship``; the response study does not use them, the container requires them) and the raw
  ``outcome`` string. ``patients.attrs["response_exclusions"]`` holds the counts (also :func:`response_exclusions`).
* ``clinical``: a :class:`ClinicalSource` of **baseline** columns only (:data:`CLINICAL_NUMERIC`,
  :data:`CLINICAL_CATEGORICAL`, those with at least one recorded value). The TCGA missing codes (``[Not Available]``
  ...) become NaN so that the clinical adapter and the tabular baselines treat them alike. Columns recorded after
  the first course (:data:`POST_BASELINE_COLUMNS`, :data:`POST_BASELINE_PATTERNS`: vital and tumour status, new
  tumour events, death and follow-up days, every survival endpoint, the outcome itself) never enter the table; the
  loader checks it and raises if one would.
* ``genomics``: an :class:`OmicsSource` with the PORPOISE wide table (``<GENE>_rnaseq`` / ``_mut`` / ``_cnv``) from
  :func:`multimodal.cohorts.tcga.load_tcga_cohort`, restricted to the cohort's patients.
* ``splits``: MMP's folds ``TCGA_<C>_overall_survival_k={k}`` (``test`` -> :attr:`Fold.val`), restricted to the
  labelled patients. A fold whose test part has no labelled patient cannot be scored and is dropped (counted).

Not used as predictors although recorded at baseline: ``race`` (a social category, not biology; a fairness audit
should stratify by it instead), ``tissue_source_site`` and ``site_of_resection_or_biopsy`` (the submitting
institution / sampling site: batch effects, see :mod:`multimodal.cohorts.tcga`), ``initial_pathologic_dx_year``
(calendar era), ``birth_days_to`` (duplicates age), identifiers and constant cohort descriptors (``project_id``,
``tumor_type``, ``OncotreeCode``, ...). ``residual_tumor`` / ``margin_status`` are results of the first-course
surgery itself; they are kept where recorded, as the issue asks.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.clinical_columns import LOADER_LEAKAGE_PATTERNS, clinical_feature_table
from multimodal.cohorts.cohort import EVENT, RESPONSE, TIME, Cohort, Fold
from multimodal.cohorts.sources import ClinicalSource, OmicsSource
from multimodal.cohorts.tcga import _mmp_folds as read_mmp_folds
from multimodal.cohorts.tcga import load_mmp_clinical, load_tcga_cohort
from multimodal.errors import InputError, Problem

__all__ = [
    "CLINICAL_CATEGORICAL",
    "CLINICAL_NUMERIC",
    "EXCLUDED_OUTCOMES",
    "POST_BASELINE_COLUMNS",
    "POST_BASELINE_PATTERNS",
    "RESPONSE_COLUMN",
    "RESPONSE_LABELS",
    "is_post_baseline",
    "load_tcga_response_cohort",
    "response_exclusions",
]

RESPONSE_COLUMN = "treatment_outcome_first_course"
#: Outcome string -> response class (1 = complete response).
RESPONSE_LABELS: dict[str, int] = {
    "Complete Remission/Response": 1,
    "Partial Remission/Response": 0,
    "Stable Disease": 0,
    "Progressive Disease": 0,
}
#: Outcome strings that carry no label; such patients are excluded and counted ("missing" counts empty cells). These
#: four are always counted (0 when absent); the other BCR missing-value codes are counted where they occur.
EXCLUDED_OUTCOMES: tuple[str, ...] = ("[Unknown]", "[Not Applicable]", "[Not Available]", "[Discrepancy]")
#: The TCGA BCR codebook's other missing-value codes (clinical data dictionary): no label, excluded and counted.
CODEBOOK_NO_LABEL: tuple[str, ...] = ("[Not Evaluated]", "[Not Reported]", "[Completed]", "[Pending]")
#: A BCR missing-value code: text in square brackets. One outside the codebook lists is excluded with a warning.
_BRACKETED = re.compile(r"\[[^\[\]]*\]")
MISSING_OUTCOME = "missing"
#: TCGA-CDR codes read as a missing value in the clinical inputs.
CDR_MISSING: tuple[str, ...] = (
    "[Not Available]", "[Not Evaluated]", "[Unknown]", "[Not Applicable]", "[Discrepancy]", "[Not Reported]",
    "[Completed]", "",
)  # fmt: skip

#: Baseline clinical inputs (used when present with at least one recorded value).
CLINICAL_NUMERIC: tuple[str, ...] = ("age_at_initial_pathologic_diagnosis",)
CLINICAL_CATEGORICAL: tuple[str, ...] = (
    "sex", "ajcc_pathologic_tumor_stage", "histological_grade", "histological_type", "margin_status", "residual_tumor",
)  # fmt: skip

#: TCGA-CDR columns recorded after (or describing the result of) the first course: never inputs.
POST_BASELINE_COLUMNS: tuple[str, ...] = (
    "vital_status", "tumor_status", "last_contact_days_to", "death_days_to", "cause_of_death",
    "new_tumor_event_type", "new_tumor_event_site", "new_tumor_event_site_other", "new_tumor_event_dx_days_to",
    "treatment_outcome_first_course",
    "os_censorship", "os_survival_days", "dss_censorship", "dss_survival_days", "dfi_censorship", "dfi_survival_days",
    "pfi_censorship", "pfi_survival_days", "pfi_v1_censorship", "pfi_v1_survival_days", "pfi_v2_censorship",
    "pfi_v2_survival_days", "pfs_censorship", "pfs_survival_days", "dss_cr_censorship", "dss_cr_survival_days",
    "dfi_cr_censorship", "dfi_cr_survival_days", "pfi_cr_censorship", "pfi_cr_survival_days",
    "pfi_v1_cr_censorship", "pfi_v1_cr_survival_days", "pfi_v2_cr_censorship", "pfi_v2_cr_survival_days",
)  # fmt: skip
#: The same as regexes (case-insensitive full match), so a renamed or new follow-up column is caught too.
POST_BASELINE_PATTERNS: tuple[str, ...] = (
    r".*_survival(_days)?", r".*_censorship", r"vital_?status", r"tumou?r_status", r"cause_of_death",
    r"death.*|.*death_days.*", r"last_contact.*", r"new_tumou?r_event.*", r"treatment_outcome.*",
    r".*(days_to|_days)(_.*)?",
)  # fmt: skip

_OS_DAYS, _OS_CENS, _REDACTION = "os_survival_days", "os_censorship", "redaction"
_MMP_DIR = ("tcga_mmp", "splits", "survival")
_ID = "case_id"


def is_post_baseline(column: str) -> bool:
    """True when ``column`` is recorded after the first course (explicit list or pattern)."""
    return column in POST_BASELINE_COLUMNS or any(
        re.fullmatch(p, column, flags=re.IGNORECASE) for p in POST_BASELINE_PATTERNS
    )


def _short(cohort: str) -> str:
    return str(cohort).strip().lower().removeprefix("tcga-").removeprefix("tcga_")


# ---- the endpoint -----------------------------------------------------------------------------------------------------
def _labels(cdr: pd.DataFrame, source: Path) -> tuple[pd.Series, dict[str, Any]]:
    """(response Int64 per case_id, NA where excluded) and the exclusion counts."""
    if RESPONSE_COLUMN not in cdr.columns:
        msg = f"the TCGA-CDR table has no column {RESPONSE_COLUMN!r}"
        raise InputError(msg, file=source, field=RESPONSE_COLUMN)
    raw = cdr[RESPONSE_COLUMN].astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    missing = raw.isna() | (raw == "")
    known = raw.isin(list(RESPONSE_LABELS))
    excluded = raw.map(lambda v: isinstance(v, str) and _BRACKETED.fullmatch(v) is not None).astype(bool)
    unknown = ~(missing | known | excluded)
    if unknown.any():
        problems = [
            Problem(f"unrecognised outcome {raw[p]!r}; expected one of {list(RESPONSE_LABELS)} or a bracketed TCGA "
                    f"missing-value code such as {list(EXCLUDED_OUTCOMES + CODEBOOK_NO_LABEL)}",
                    str(source), str(p), RESPONSE_COLUMN,
                    "an unbracketed outcome would change a label; map it to one of the codebook values")
            for p in raw.index[unknown][:20]
        ]
        raise InputError(problems=problems)
    redacted = (cdr[_REDACTION].astype(str).str.strip().str.lower() == "redacted") if _REDACTION in cdr else None
    redacted = redacted if redacted is not None else pd.Series(False, index=cdr.index)
    y = raw.map(RESPONSE_LABELS).astype("Int64")
    y[redacted.to_numpy()] = pd.NA
    seen = [v for v in pd.unique(raw[excluded & ~redacted]) if v not in EXCLUDED_OUTCOMES]
    by_value = {v: int((excluded & (raw == v) & ~redacted).sum()) for v in (*EXCLUDED_OUTCOMES, *sorted(seen))}
    odd = {v: by_value[v] for v in sorted(seen) if v not in CODEBOOK_NO_LABEL}
    if odd:
        warnings.warn(f"{source}: {RESPONSE_COLUMN} values {odd} are not in the TCGA codebook; read as missing-value "
                      "codes (no label), those patients are excluded", UserWarning, stacklevel=3)
    by_value[MISSING_OUTCOME] = int((missing & ~redacted).sum())
    counts: dict[str, Any] = {
        "endpoint": RESPONSE_COLUMN,
        "positive_class": [k for k, v in RESPONSE_LABELS.items() if v == 1],
        "n_cdr_patients": len(cdr),
        "excluded_no_label": by_value,
        "excluded_redacted": int(redacted.sum()),
        "n_excluded": int(y.isna().sum()),
        "n_labelled": int(y.notna().sum()),
        "outcomes_labelled": {k: int((known & (raw == k) & ~redacted).sum()) for k in RESPONSE_LABELS},
        "n_response_1": int((y == 1).sum()),
        "n_response_0": int((y == 0).sum()),
    }
    return y, counts


def response_exclusions(root: str | Path, cohort: str) -> dict[str, Any]:
    """Exclusion counts of the response endpoint for ``cohort`` (reads the CDR table only; never raises for a cohort
    without labels, unlike :func:`load_tcga_response_cohort`)."""
    cdr = load_mmp_clinical(root, cohort)
    _, counts = _labels(cdr, Path(root).joinpath(*_MMP_DIR))
    return {"cohort": f"tcga_{_short(cohort)}", **counts}


# ---- clinical inputs --------------------------------------------------------------------------------------------------
def _clinical(cdr: pd.DataFrame, ids: list[str], source: Path) -> tuple[ClinicalSource, list[str]]:
    """Baseline clinical table of ``ids`` (TCGA missing codes -> NaN) and the allowed columns absent or all missing."""
    wanted = [*CLINICAL_NUMERIC, *CLINICAL_CATEGORICAL]
    leaky = [c for c in wanted if is_post_baseline(c)]
    if leaky:  # a guard on the constants above
        msg = f"clinical input column(s) {leaky} are post-baseline"
        raise AssertionError(msg)
    table = cdr.loc[ids, [c for c in wanted if c in cdr.columns]].copy()
    table = table.map(lambda v: np.nan if isinstance(v, str) and v.strip() in CDR_MISSING else v)
    absent = [c for c in wanted if c not in table.columns or table[c].isna().all()]
    table = table.drop(columns=[c for c in absent if c in table.columns])
    numeric = tuple(c for c in CLINICAL_NUMERIC if c in table.columns)
    categorical = tuple(c for c in CLINICAL_CATEGORICAL if c in table.columns)
    problems = []
    for c in numeric:
        num = pd.to_numeric(table[c], errors="coerce")
        for p in table.index[num.isna() & table[c].notna()][:20]:
            problems.append(Problem(f"not a number: {table.at[p, c]!r}", str(source), str(p), c))
        table[c] = num.astype(np.float64)
    if problems:
        raise InputError(problems=problems)
    for c in categorical:
        table[c] = table[c].astype(object).map(lambda v: v.strip() if isinstance(v, str) else v).astype("category")
    table.index = table.index.astype(str)
    table.index.name = "patient_id"
    outcomes = {_ID: "patient id", _OS_DAYS: "time", _OS_CENS: "censorship", RESPONSE_COLUMN: "response"}
    table, removed = clinical_feature_table(table, outcomes, patterns=(*LOADER_LEAKAGE_PATTERNS,
                                                                       *POST_BASELINE_PATTERNS),
                                            keep=(*numeric, *categorical))
    post = [c for c in table.columns if is_post_baseline(c)]
    if post:
        msg = f"post-baseline column(s) {post} reached the clinical inputs"
        raise AssertionError(msg)
    return ClinicalSource(table=table, categorical=categorical, numeric=numeric, path=source,
                          removed=removed), absent


# ---- folds ------------------------------------------------------------------------------------------------------------
def _mmp_folds(root: Path, c: str, labelled: set[str]) -> tuple[list[Fold], dict[str, Any]]:
    """The MMP survival folds (read by :mod:`multimodal.cohorts.tcga`) restricted to the labelled patients."""
    folds, dropped, sizes = [], [], {}
    for mmp in read_mmp_folds(root, c):
        k = mmp.index
        parts = {"train": tuple(p for p in mmp.train if p in labelled), "test": tuple(p for p in mmp.val if p in labelled)}
        fold = Fold(index=k, train=parts["train"], val=parts["test"])
        fold.check_disjoint()
        sizes[str(k)] = {"train": len(fold.train), "val": len(fold.val)}
        if not fold.val or not fold.train:
            dropped.append(k)
            continue
        folds.append(fold)
    in_any = set().union(*(set(f.train) | set(f.val) for f in folds)) if folds else set()
    info = {"fold_sizes": sizes, "folds_dropped_no_labelled_test": dropped, "labelled_in_no_fold": len(labelled - in_any)}
    if dropped:
        warnings.warn(f"MMP fold(s) {dropped} of TCGA-{c.upper()} have no labelled test patient and are dropped",
                      stacklevel=3)
    return folds, info


# ---- public API -------------------------------------------------------------------------------------------------------
def load_tcga_response_cohort(root: str | Path, cohort: str) -> Cohort:
    """Load the first-course response cohort of one TCGA project (e.g. ``"blca"``).

    Args:
        root: data root holding ``tcga_mmp/`` (TCGA-CDR clinical + folds) and ``tcga_porpoise/`` (genomics).
        cohort: cohort name, case-insensitive (``"BLCA"``, ``"tcga_blca"``, ``"blca"``).

    Returns:
        A :class:`Cohort` of the labelled patients (``response`` Int64 0/1, ``response_classes`` 2, time in days)
        with ``clinical`` and ``genomics`` modalities and MMP folds; ``patients.attrs["response_exclusions"]`` holds
        the exclusion counts.

    Raises:
        InputError: missing files, an unrecognised outcome value, or a cohort without both response classes (e.g.
            TCGA-BRCA, where the CDR records no first-course outcome at all).
    """
    base = Path(root).expanduser().resolve()
    c = _short(cohort)
    cdr = load_mmp_clinical(base, c)
    source = base.joinpath(*_MMP_DIR, f"TCGA_{c.upper()}_overall_survival_k=0", "train.csv.gz")
    y, counts = _labels(cdr, source)
    counts = {"cohort": f"tcga_{c}", **counts}
    if counts["n_response_1"] == 0 or counts["n_response_0"] == 0:
        msg = (f"TCGA-{c.upper()}: no usable {RESPONSE_COLUMN} for a binary endpoint "
               f"({counts['n_response_1']} complete / {counts['n_response_0']} other response among "
               f"{counts['n_cdr_patients']} patients; excluded: {counts['excluded_no_label']}, "
               f"redacted {counts['excluded_redacted']})")
        raise InputError(msg, file=source, field=RESPONSE_COLUMN,
                         hint="the TCGA-CDR does not record a first-course outcome for this cohort")
    ids = [str(p) for p in y.index[y.notna()]]
    cdr = cdr.loc[ids]
    for col in (_OS_DAYS, _OS_CENS):
        if col not in cdr.columns:
            msg = f"the TCGA-CDR table has no column {col!r}"
            raise InputError(msg, file=source, field=col)
    days = pd.to_numeric(cdr[_OS_DAYS], errors="coerce")
    cens = pd.to_numeric(cdr[_OS_CENS], errors="coerce")
    patients = pd.DataFrame(
        {
            TIME: days.astype(np.float64).to_numpy(),
            EVENT: (cens == 0).to_numpy(bool),
            RESPONSE: pd.array(y.loc[ids].to_numpy(), dtype="Int64"),
            "outcome": cdr[RESPONSE_COLUMN].astype(str).to_numpy(),
        },
        index=pd.Index(ids, name="patient_id", dtype=str),
    )
    counts["os_missing"] = int((days.isna() | cens.isna()).sum())

    clinical, absent = _clinical(cdr, ids, source)
    counts["clinical_columns"] = [*clinical.numeric, *clinical.categorical]
    counts["clinical_columns_absent"] = absent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # slide-level disagreement warnings are the survival loader's concern
        omics_src = load_tcga_cohort(base, c, include=("genomics",), splits=None).modalities["genomics"]
    assert isinstance(omics_src, OmicsSource) and omics_src.wide is not None
    wide = omics_src.wide.loc[omics_src.wide.index.isin(ids)]
    genomics = OmicsSource(wide=wide, available=frozenset(omics_src.available & set(ids)))
    counts["no_genomics"] = len(set(ids) - genomics.available)

    folds, fold_info = _mmp_folds(base, c, set(ids))
    counts.update(fold_info)
    patients.attrs["response_exclusions"] = counts
    return Cohort(
        name=f"tcga_{c}_response",
        patients=patients,
        modalities={"genomics": genomics, "clinical": clinical},
        time_unit="days",
        response_classes=2,
        splits=folds,
        root=base,
    )
