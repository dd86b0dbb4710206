"""Resolving a clinical modality: the clinical table, its feature columns (leakage and identifier columns removed)
and its values (numbers must be finite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.cohorts.clinical_columns import (
    LOADER_LEAKAGE_PATTERNS,
    clinical_feature_table,
    declared_outcome_columns,
    flagged_declared,
    is_identifier_reason,
)
from multimodal.cohorts.formats.tables import norm_id, read_table
from multimodal.cohorts.manifest import (
    ClinicalSpec,
)
from multimodal.cohorts.problems import ProblemLog, did_you_mean
from multimodal.cohorts.resolved import ResolvedManifest, under, unknown_patient
from multimodal.cohorts.sources import ClinicalSource
from multimodal.errors import InputError


def resolve_clinical(name: str, spec: ClinicalSpec, res: ResolvedManifest,
                      known: set[str] | None) -> ClinicalSource | None:
    log, where = res.log, f"modalities.{name}"
    path = under(res.root, spec.path)
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
                      hint=did_you_mean(col, table.columns))
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
        for pid, value in num[np.isinf(num.to_numpy(dtype=float, na_value=np.nan))].items():
            log.error(f"numeric column has an infinite value ({value})", file=path, patient=pid, field=col,
                      hint="a clinical value must be a finite number, or empty when unknown",
                      group=f"clinical infinite {col}")
        table[col] = num
    keep = [pid for pid in table.index
            if not unknown_patient(log, known, str(pid), file=path, field=spec.id, what="clinical row")]
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
                  hint=did_you_mean(spec.id, table.columns))
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
