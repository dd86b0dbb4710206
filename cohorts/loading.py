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

The pieces live in modules of one concern each (this module keeps every name it had, re-exported):
:mod:`~multimodal.cohorts.problems` (collecting problems), :mod:`~multimodal.cohorts.outcomes` (the patient table),
:mod:`~multimodal.cohorts.manifest_check` (the manifest mapping), :mod:`~multimodal.cohorts.resolved` and the
modality resolvers ``resolve_slides`` / ``resolve_omics`` / ``resolve_meds`` / ``resolve_clinical``; every file
format is read by :mod:`multimodal.cohorts.formats`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from multimodal.cohorts.cohort import Cohort, Fold
from multimodal.cohorts.formats.meds import shard_problems
from multimodal.cohorts.formats.omics import MAF_REQUIRED, read_h5ad_obs, read_maf_columns, sample_to_patient
from multimodal.cohorts.formats.tables import (
    DEFAULT_NA,
    first_column,
    norm_id,
    read_delimited,
    read_table,
    table_kind,
)
from multimodal.cohorts.manifest import ClinicalSpec, MedsSpec, OmicsSpec, PatientTableSpec, SlidesSpec, SplitsSpec
from multimodal.cohorts.manifest_check import parse_manifest_collecting
from multimodal.cohorts.outcomes import (
    OUTCOME_MODES,
    Outcomes,
    as_binary,
    build_patient_frame,
    check_mode,
    outcome_rules,
)
from multimodal.cohorts.problems import EXTRA_EXAMPLES, MAX_PER_GROUP, ExtraPatients, ProblemLog, did_you_mean
from multimodal.cohorts.resolve_clinical import resolve_clinical
from multimodal.cohorts.resolve_meds import resolve_meds
from multimodal.cohorts.resolve_omics import resolve_omics
from multimodal.cohorts.resolve_slides import SLIDE_SUFFIX_FORMAT, resolve_slides
from multimodal.cohorts.resolved import ResolvedManifest, under, unknown_patient
from multimodal.cohorts.sources import ModalitySource
from multimodal.config import load_yaml
from multimodal.errors import InputError, Problem

__all__ = [
    "DEFAULT_NA", "EXTRA_EXAMPLES", "MAF_REQUIRED", "MAX_PER_GROUP", "OUTCOME_MODES", "SLIDE_SUFFIX_FORMAT",
    "ExtraPatients", "Outcomes", "ProblemLog", "ResolvedManifest", "as_binary", "build_patient_frame", "check_mode",
    "did_you_mean", "first_column", "load_manifest_cohort", "meds_schema_problems", "norm_id",
    "outcome_rules", "parse_manifest_collecting", "read_delimited", "read_h5ad_obs", "read_maf", "read_table",
    "resolve_manifest", "sample_to_patient", "table_kind", "under", "unknown_patient",
]

logger = logging.getLogger(__name__)


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
    mode = check_mode(outcomes)
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
    res.patients_file = under(res.root, spec.patients.path)
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



def _read_patient_table(path: Path, spec: PatientTableSpec, log: ProblemLog) -> pd.DataFrame | None:
    try:
        return read_table(path, str_columns=[spec.id])
    except InputError as exc:
        p = exc.problems[0]
        log.error(f"patient table: {p.message}", file=path, field="patients.path", hint=p.hint)
        return None



# ---- modality sources ----------------------------------------------------------------------------------------
def _resolve_modality(name: str, spec: Any, res: ResolvedManifest, known: set[str] | None) -> ModalitySource | None:
    """The modality's source; the patients it names that the patient table lacks are ignored, with one warning."""
    fn: dict[type, Callable[..., ModalitySource | None]] = {
        SlidesSpec: resolve_slides, OmicsSpec: resolve_omics, MedsSpec: resolve_meds, ClinicalSpec: resolve_clinical,
    }
    res.log.extra = ExtraPatients()
    try:
        return fn[type(spec)](name, spec, res, known)
    finally:
        res.log.report_extra(name, manifest=res.path)



def _resolve_splits(spec: SplitsSpec, root: Path, known: set[str] | None, log: ProblemLog) -> list[Fold] | None:
    from multimodal.cohorts.splits import read_split_files

    pattern = spec.files if Path(spec.files).is_absolute() else str(root / spec.files)
    try:
        return read_split_files(pattern, spec.folds, known_ids=known)
    except InputError as exc:
        log.absorb(exc)
        return None


def read_maf(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The MAF's ``columns`` as text (kept for callers; see :func:`multimodal.cohorts.formats.omics.read_maf_columns`)."""
    return read_maf_columns(path, columns)


def meds_schema_problems(path: Path) -> list[Problem]:
    """Dtype problems of one MEDS data shard (the EHR adapter's check, :func:`~multimodal.cohorts.formats.meds.
    shard_problems`)."""
    return shard_problems(path)[1]
