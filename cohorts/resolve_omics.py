"""Resolving an omics modality: which patients have expression, mutation, CNV or wide-table data, read with the
shared readers of :mod:`multimodal.cohorts.formats.omics` and :mod:`multimodal.cohorts.formats.tables`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from multimodal.cohorts.formats.omics import (
    MAF_REQUIRED,
    compile_patient_pattern,
    expression_ids,
    maf_header,
    read_h5ad_obs,
    read_maf_columns,
    read_sample_list,
    sample_to_patient,
)
from multimodal.cohorts.formats.tables import first_column, norm_id, read_table
from multimodal.cohorts.manifest import (
    OmicsSpec,
)
from multimodal.cohorts.problems import ProblemLog, did_you_mean
from multimodal.cohorts.resolved import ResolvedManifest, under, unknown_patient
from multimodal.cohorts.sources import OmicsSource
from multimodal.errors import InputError, Problem


def resolve_omics(name: str, spec: OmicsSpec, res: ResolvedManifest, known: set[str] | None) -> OmicsSource:
    log, where = res.log, f"modalities.{name}"
    available: set[str] = set()
    paths: dict[str, Path | None] = {}
    for key in ("expression", "mutations", "mutation_samples", "cnv"):
        rel = getattr(spec, key)
        paths[key] = None if rel is None else under(res.root, rel)
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
        wide = _wide_table(under(res.root, spec.wide_table), spec, where, log, known)
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
    ids = expression_ids(obs, col, path)
    if isinstance(ids, Problem):  # the reader's rule: a missing column, an empty id or a patient twice
        log.error(ids.message, file=ids.file, patient=ids.patient, field=ids.field, hint=ids.hint)
        return set()
    field_name = "obs_names" if col is None else f"obs.{col}"
    out = set()
    for pid in dict.fromkeys(ids):
        if unknown_patient(log, known, pid, file=path, field=field_name, what="expression sample"):
            if col is None:
                log.extra.advice = "if obs names are sample ids, set expression_patient_column"
            continue
        out.add(pid)
    return out


def _mutation_patients(maf: Path, samples_file: Path | None, spec: OmicsSpec, log: ProblemLog,
                       known: set[str] | None) -> set[str]:
    try:
        header = maf_header(maf)
    except InputError as exc:
        log.absorb(exc)
        return set()
    absent = [c for c in MAF_REQUIRED if c not in header]
    for c in absent:
        log.error(f"MAF lacks required column {c!r}", file=maf, field=c,
                  hint=did_you_mean(c, header, cutoff=0.8) or f"required: {', '.join(MAF_REQUIRED)}; found: "
                  f"{', '.join(map(str, header[:12]))}")
    try:
        pattern = compile_patient_pattern(spec.mutation_patient_pattern)
    except InputError as exc:
        p = exc.problems[0]
        log.error(f"mutation_patient_pattern is {p.message}", file=maf, field="mutation_patient_pattern")
        return set()
    samples: dict[str, Path] = {}
    if "Tumor_Sample_Barcode" not in absent:
        barcodes = read_maf_columns(maf, ["Tumor_Sample_Barcode"])["Tumor_Sample_Barcode"]
        for s in pd.unique(barcodes.dropna()):
            samples[str(s).strip()] = maf
    listed: set[str] = set()
    if samples_file is not None:
        listed = set(read_sample_list(samples_file))
        extra = sorted(s for s in set(samples) - listed  # the omics reader's rule: ids formatted differently
                       if known is None or (sample_to_patient(s, pattern) or s) in known)
        if extra:
            log.error(f"{len(extra)} MAF sample(s) are not in the sequenced-sample list {samples_file.name}, e.g. "
                      f"{extra[:3]}", file=maf, patient=extra[0], field="mutation_samples",
                      hint="the list must hold every sequenced sample, with the MAF's Tumor_Sample_Barcode ids")
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
                      patient=s, field=fld, group="sample pattern")
            continue
        if unknown_patient(log, known, pid, file=src, field=fld, what=f"mutation sample {s!r}"):
            continue
        out.add(pid)
    return out


def _table_patients(path: Path, id_column: str | None, what: str, log: ProblemLog,
                    known: set[str] | None) -> set[str]:
    try:
        table = read_table(path, str_columns=[id_column] if id_column else first_column(path))
    except InputError as exc:
        log.absorb(exc)
        return set()
    col = id_column or table.columns[0]
    out = set()
    for v in table[col]:
        pid = norm_id(v)
        if pid is None or unknown_patient(log, known, pid, file=path, field=str(col), what=what):
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
                  hint=did_you_mean(spec.wide_id_column, table.columns))
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
            if not unknown_patient(log, known, pid, file=path, field=spec.wide_id_column, what="omics row")]
    return table.loc[keep]
