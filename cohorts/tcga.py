"""Loader for the public TCGA multimodal survival tables in the PORPOISE / MCAT layout.

Any cohort laid out like ``mahmoodlab/PORPOISE`` loads the same way from a data root and a cohort name::

    ROOT/tcga_porpoise/datasets_csv_mutsig/tcga_<c>_all_clean.csv.zip     # one row per *slide*
    ROOT/tcga_porpoise/splits/5foldcv/tcga_<c>/splits_{k}.csv             # columns ,train,val (case ids, NaN padded)
    ROOT/tcga_mmp/splits/survival/TCGA_<C>_overall_survival_k={k}/{train,test}.csv.gz   # MMP folds (optional)

Conventions converted here, once: rows are slides, so the table is reduced to one row per patient (``case_id``) after
checking that every slide of a patient carries the same outcome; ``event = 1 - censorship`` (the tables' ``censorship``
is 1 = censored); time stays in months (``survival_months``, cBioPortal OS_MONTHS).

Clinical covariates are ``age`` (numeric), ``is_female`` and ``oncotree_code`` (categorical). Deliberately left out:

- ``site``: the TCGA tissue-source-site code, i.e. the institution that submitted the sample. It describes how the
  sample was collected, not the patient; site carries batch effects and case-mix differences that models learn
  instead of biology (Howard et al., Nat Commun 2021, "The impact of site-specific digital histology signatures on deep
  learning model accuracy and bias"), and it cannot transfer to a new hospital. Splitting by site is a valid
  robustness check; using it as a predictor is not.
- ``train`` (a flag from the authors' code, not a split), ``Unnamed: 0`` (a row number) and ``slide_id``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from multimodal.cohorts.clinical_columns import clinical_feature_table
from multimodal.cohorts.cohort import EVENT, TIME, Cohort, Fold
from multimodal.cohorts.formats.tables import read_delimited
from multimodal.cohorts.sources import ClinicalSource, ModalitySource, OmicsSource
from multimodal.errors import InputError, Problem

__all__ = ["OMICS_SUFFIXES", "list_tcga_cohorts", "load_mmp_clinical", "load_tcga_cohort"]

#: Column suffixes of the per-gene omics features in the PORPOISE tables.
OMICS_SUFFIXES: tuple[str, ...] = ("_rnaseq", "_mut", "_cnv")
_ID, _TIME, _CENS = "case_id", "survival_months", "censorship"
_CLIN_NUMERIC: tuple[str, ...] = ("age",)
_CLIN_CATEGORICAL: tuple[str, ...] = ("is_female", "oncotree_code")
_TABLE_DIR = ("tcga_porpoise", "datasets_csv_mutsig")
_SPLIT_DIR = ("tcga_porpoise", "splits", "5foldcv")
_MMP_DIR = ("tcga_mmp", "splits", "survival")
#: Slide-level columns of the MMP tables (they differ between a patient's slides).
_MMP_SLIDE_COLUMNS: tuple[str, ...] = (
    "slide_id", "mpp", "op", "level0_mag", "is_code_valid", "has_feature", "seg_comment",
)  # fmt: skip

Modality = Literal["genomics", "clinical"]
SplitSource = Literal["porpoise", "mmp"]


# ---- locating files --------------------------------------------------------------------------------------------------
def _root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        msg = "data root is not a folder"
        raise InputError(msg, file=path, field="root", hint="pass the folder that holds tcga_porpoise/")
    return path.resolve()


def _table_path(root: Path, c: str) -> Path:
    return root.joinpath(*_TABLE_DIR, f"tcga_{c}_all_clean.csv.zip")


def list_tcga_cohorts(root: str | Path) -> list[str]:
    """Cohort names (lower case) with a PORPOISE table under ``root``."""
    folder = _root(root).joinpath(*_TABLE_DIR)
    return sorted(
        m.group(1) for p in folder.glob("tcga_*_all_clean.csv.zip") if (m := re.match(r"tcga_(.+)_all_clean", p.name))
    )


def _cohort_name(cohort: str) -> str:
    c = str(cohort).strip().lower().removeprefix("tcga-").removeprefix("tcga_")
    if not re.fullmatch(r"[a-z0-9]+", c):
        msg = f"expected a TCGA cohort name such as 'blca', got {cohort!r}"
        raise InputError(msg, field="cohort")
    return c


def _missing(root: Path, rel: Path, c: str) -> InputError:
    available = list_tcga_cohorts(root)
    msg = f"no {rel.as_posix()} under {root}; cohorts available: {', '.join(available) or '(none)'}"
    return InputError(msg, file=root / rel, field="cohort", hint=f"cohort {c!r} is not in this data root")


# ---- the slide table -> patients -------------------------------------------------------------------------------------
def _read_table(path: Path) -> pd.DataFrame:
    try:
        df = read_delimited(path, ",", [_ID], compression="zip")  # case ids as text: "NA" is an id
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad input file
        msg = f"cannot read the cohort table: {exc}"
        raise InputError(msg, file=path) from exc
    need = [_ID, _TIME, _CENS]
    absent = [c for c in need if c not in df.columns]
    if absent:
        msg = f"missing column(s) {absent}; expected {need}"
        raise InputError(msg, file=path, field=absent[0])
    df[_ID] = df[_ID].astype(str)
    return df


def _check_outcomes(df: pd.DataFrame, path: Path) -> None:
    problems: list[Problem] = []
    cens = pd.to_numeric(df[_CENS], errors="coerce")
    bad = df.loc[~cens.isin([0, 1]), _ID]
    problems += [
        Problem(f"censorship must be 0 or 1, got {df.at[i, _CENS]!r}", str(path), p, _CENS) for i, p in bad.items()
    ]
    months = pd.to_numeric(df[_TIME], errors="coerce")
    bad = df.loc[~(months >= 0), _ID]
    problems += [
        Problem(f"survival_months must be >= 0, got {df.at[i, _TIME]!r}", str(path), p, _TIME) for i, p in bad.items()
    ]
    for col in (_TIME, _CENS):
        n_distinct = df.groupby(_ID)[col].nunique(dropna=False)
        for pid in n_distinct.index[n_distinct > 1]:
            values = sorted(df.loc[df[_ID] == pid, col].astype(str).unique())
            problems.append(Problem(f"slides of one patient disagree: {values}", str(path), pid, col))
    if problems:
        raise InputError(problems=problems[:50])


def _first_per_patient(df: pd.DataFrame, columns: Sequence[str], what: str, path: Path) -> pd.DataFrame:
    """One row per patient (first slide), warning when a patient's slides disagree on ``columns``."""
    sub = df[[_ID, *columns]]
    distinct = sub.drop_duplicates()
    n_bad = int(distinct[_ID].duplicated().sum())
    if n_bad:
        warnings.warn(
            f"{path.name}: {n_bad} patient(s) have slides with different {what} values; the first slide's row is used",
            stacklevel=3,
        )
    return sub.drop_duplicates(_ID).set_index(_ID)


def _patients(df: pd.DataFrame) -> pd.DataFrame:
    first = df.drop_duplicates(_ID).set_index(_ID)
    patients = pd.DataFrame(
        {
            TIME: first[_TIME].astype(np.float64),
            EVENT: (1 - first[_CENS].astype(int)).astype(bool),
            "n_slides": df.groupby(_ID).size().reindex(first.index).astype(int),
        },
        index=first.index,
    )
    patients.index = patients.index.astype(str)
    patients.index.name = "patient_id"
    return patients


def _omics_source(df: pd.DataFrame, path: Path) -> OmicsSource:
    cols = [c for c in df.columns if c.endswith(OMICS_SUFFIXES)]
    wide = _first_per_patient(df, cols, "omics", path).astype(np.float64)
    wide.index = wide.index.astype(str)
    wide.index.name = "patient_id"
    available = frozenset(wide.index[wide.notna().any(axis=1)])
    return OmicsSource(wide=wide, available=available)


def _clinical_source(df: pd.DataFrame, path: Path) -> ClinicalSource:
    cols = [c for c in (*_CLIN_NUMERIC, *_CLIN_CATEGORICAL) if c in df.columns]
    table = _first_per_patient(df, cols, "clinical", path).copy()
    table.index = table.index.astype(str)
    table.index.name = "patient_id"
    numeric = tuple(c for c in _CLIN_NUMERIC if c in table.columns)
    categorical = tuple(c for c in _CLIN_CATEGORICAL if c in table.columns)
    for c in numeric:
        table[c] = pd.to_numeric(table[c], errors="coerce").astype(np.float64)
    if "is_female" in table.columns:
        table["is_female"] = pd.to_numeric(table["is_female"], errors="coerce").astype("Int64")
    for c in categorical:
        table[c] = table[c].astype("category")
    outcomes = {_ID: "patient id", _TIME: "time (survival_months)", _CENS: "censorship"}
    table, removed = clinical_feature_table(table, outcomes, keep=(*numeric, *categorical))
    return ClinicalSource(table=table, categorical=categorical, numeric=numeric, path=path, removed=removed)


# ---- splits ----------------------------------------------------------------------------------------------------------
def _ids(values: Iterable[object]) -> tuple[str, ...]:
    return tuple(str(v) for v in pd.unique(pd.Series(list(values)).dropna()))


def _fold_files(folder: Path, pattern: str) -> list[tuple[int, Path]]:
    found = []
    for p in folder.glob("*"):
        m = re.fullmatch(pattern, p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def _porpoise_folds(root: Path, c: str, known: set[str]) -> list[Fold]:
    """The published ``splits_{k}.csv`` files, read by :func:`multimodal.cohorts.splits.read_split_files`."""
    from multimodal.cohorts.splits import read_split_files

    rel = Path(*_SPLIT_DIR, f"tcga_{c}")
    files = _fold_files(root / rel, r"splits_(\d+)\.csv")
    if not files:
        msg = f"no split files splits_<k>.csv in {rel.as_posix()} under {root}"
        raise InputError(msg, file=root / rel, field="splits", hint="pass splits=None to load without folds")
    return read_split_files(root / rel, k_folds=max(k for k, _ in files) + 1, known_ids=known)


def _read_mmp_ids(path: Path) -> tuple[str, ...]:
    df = read_delimited(path, ",", [_ID], usecols=[_ID])
    return _ids(df[_ID])


def _mmp_folds(root: Path, c: str) -> list[Fold]:
    rel = Path(*_MMP_DIR)
    dirs = _fold_files(root / rel, rf"TCGA_{c.upper()}_overall_survival_k=(\d+)")
    if not dirs:
        msg = f"no TCGA_{c.upper()}_overall_survival_k=<k>/ folders in {rel.as_posix()} under {root}"
        raise InputError(msg, file=root / rel, field="splits", hint="pass splits='porpoise' or None")
    folds = []
    for k, d in dirs:
        parts = {}
        for part in ("train", "test"):
            path = d / f"{part}.csv.gz"
            if not path.is_file():
                msg = f"MMP fold {k} lacks {part}.csv.gz"
                raise InputError(msg, file=path, field="splits")
            parts[part] = _read_mmp_ids(path)
        folds.append(Fold(index=k, train=parts["train"], val=parts["test"]))
    return folds


def _restrict_folds(folds: list[Fold], ids: set[str], source: str, path_hint: str) -> list[Fold]:
    """Check folds against the cohort; patients unknown to the cohort are an error (PORPOISE) or dropped (MMP)."""
    out = []
    in_any: set[str] = set()
    for f in folds:
        f.check_disjoint()
        unknown = sorted((set(f.train) | set(f.val)) - ids)
        if unknown and source == "porpoise":
            msg = f"fold {f.index}: {len(unknown)} case id(s) not in the cohort table, e.g. {unknown[:3]}"
            raise InputError(msg, file=path_hint, patient=unknown[0], field="splits")
        if unknown:
            warnings.warn(
                f"{source} fold {f.index}: {len(unknown)} case id(s) absent from the cohort table are dropped",
                stacklevel=3,
            )
        train = tuple(p for p in f.train if p in ids)
        val = tuple(p for p in f.val if p in ids)
        in_any |= set(train) | set(val)
        out.append(Fold(index=f.index, train=train, val=val))
    n_out = len(ids - in_any)
    if n_out:
        warnings.warn(
            f"{source} folds: {n_out} cohort patient(s) are in no fold and will never be evaluated", stacklevel=3
        )
    return out


# ---- public API ------------------------------------------------------------------------------------------------------
def load_tcga_cohort(
    root: str | Path,
    cohort: str,
    *,
    layout: Literal["porpoise"] = "porpoise",
    include: Sequence[Modality] = ("genomics", "clinical"),
    splits: SplitSource | None = "porpoise",
) -> Cohort:
    """Load one TCGA cohort (e.g. ``"blca"``) from a data root in the PORPOISE/MCAT layout.

    Args:
        root: folder holding ``tcga_porpoise/`` (and ``tcga_mmp/`` for ``splits="mmp"``).
        cohort: cohort name, case-insensitive (``"BLCA"``, ``"tcga_blca"`` and ``"blca"`` are the same).
        layout: table layout; only ``"porpoise"`` exists today.
        include: modalities to attach: ``"genomics"`` (an :class:`OmicsSource` whose ``wide`` table holds the
            ``<GENE>_rnaseq`` / ``_mut`` / ``_cnv`` columns) and ``"clinical"`` (a :class:`ClinicalSource`).
        splits: ``"porpoise"`` (the published 5-fold CV files), ``"mmp"`` (MMP's folds; their ``test`` part becomes
            :attr:`Fold.val`; MMP used a slightly smaller cohort, so some patients are in no fold) or ``None``.

    Returns:
        A :class:`Cohort` with one row per patient, ``time`` in months and ``event`` = 1 - censorship.

    Raises:
        InputError: missing root/cohort files (listing the cohorts available), inconsistent outcomes across a
            patient's slides, bad outcome values or split files naming unknown patients.
    """
    if layout != "porpoise":
        msg = f"unknown layout {layout!r}; expected 'porpoise'"
        raise InputError(msg, field="layout")
    unknown = [m for m in include if m not in ("genomics", "clinical")]
    if unknown:
        msg = f"unknown modality {unknown[0]!r}; expected any of ['genomics', 'clinical']"
        raise InputError(msg, field="include")
    if splits not in ("porpoise", "mmp", None):
        msg = f"unknown splits {splits!r}; expected 'porpoise', 'mmp' or None"
        raise InputError(msg, field="splits")
    base = _root(root)
    c = _cohort_name(cohort)
    path = _table_path(base, c)
    if not path.is_file():
        raise _missing(base, path.relative_to(base), c)

    df = _read_table(path)
    _check_outcomes(df, path)
    patients = _patients(df)
    modalities: dict[str, ModalitySource] = {}
    if "genomics" in include:
        modalities["genomics"] = _omics_source(df, path)
    if "clinical" in include:
        modalities["clinical"] = _clinical_source(df, path)

    folds = None
    if splits is not None:
        ids = set(patients.index)
        raw = _porpoise_folds(base, c, ids) if splits == "porpoise" else _mmp_folds(base, c)
        hint = str(base.joinpath(*(_SPLIT_DIR if splits == "porpoise" else _MMP_DIR)))
        folds = _restrict_folds(raw, ids, splits, hint)
    return Cohort(
        name=f"tcga_{c}",
        patients=patients,
        modalities=modalities,
        time_unit="months",
        splits=folds,
        root=base,
    )


def load_mmp_clinical(root: str | Path, cohort: str) -> pd.DataFrame:
    """TCGA-CDR clinical table of one cohort from the MMP split files, one row per ``case_id``.

    Reads fold 0 (train + test covers the MMP cohort), drops the slide-level columns (``slide_id``, ``mpp``, ``op``,
    ``level0_mag``, ...) and deduplicates. Values are verbatim: the ``*_censorship`` columns keep their 1 = censored
    meaning and times are in days (``*_survival_days``); ``-1`` codes some competing-risk endpoints.

    Raises:
        InputError: missing files (listing the cohorts available) or a patient whose rows still disagree.
    """
    base = _root(root)
    c = _cohort_name(cohort)
    rel = Path(*_MMP_DIR, f"TCGA_{c.upper()}_overall_survival_k=0")
    folder = base / rel
    if not folder.is_dir():
        available = sorted(
            m.group(1).lower()
            for p in base.joinpath(*_MMP_DIR).glob("TCGA_*_overall_survival_k=0")
            if (m := re.match(r"TCGA_(.+)_overall_survival_k=0", p.name))
        )
        msg = f"no {rel.as_posix()} under {base}; cohorts available: {', '.join(available) or '(none)'}"
        raise InputError(msg, file=folder, field="cohort")
    parts = []
    for part in ("train", "test"):
        path = folder / f"{part}.csv.gz"
        if not path.is_file():
            msg = f"MMP fold 0 lacks {part}.csv.gz"
            raise InputError(msg, file=path, field="cohort")
        parts.append(read_delimited(path, ",", [_ID]))
    df = pd.concat(parts, ignore_index=True)
    df[_ID] = df[_ID].astype(str)
    df = df.drop(columns=[c for c in _MMP_SLIDE_COLUMNS if c in df.columns]).drop_duplicates()
    dup = df[_ID][df[_ID].duplicated()].unique().tolist()
    if dup:
        cols = [c for c in df.columns if (df[df[_ID] == dup[0]][c].nunique(dropna=False) > 1)]
        msg = f"{len(dup)} patient(s) have rows that disagree on patient-level columns, e.g. {cols[:5]}"
        raise InputError(msg, file=folder, patient=dup[0], field=cols[0] if cols else None)
    return df.set_index(_ID).sort_index()
