"""Resolving a MEDS modality: shard schemas and values (:mod:`multimodal.cohorts.formats.meds`, the checks the EHR
adapter runs) and the patient -> subject_id mapping."""

from __future__ import annotations

import re

import pandas as pd
import polars as pl

from multimodal.cohorts.formats.meds import content_problems, shard_problems
from multimodal.cohorts.manifest import (
    MedsSpec,
)
from multimodal.cohorts.problems import ProblemLog
from multimodal.cohorts.resolved import ResolvedManifest, under
from multimodal.cohorts.sources import MedsSource


def resolve_meds(name: str, spec: MedsSpec, res: ResolvedManifest, known: set[str] | None) -> MedsSource | None:
    log, where = res.log, f"modalities.{name}"
    root = under(res.root, spec.path)
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
    mapping = _meds_mapping(res, log)
    patient_of = {str(sid): pid for pid, sid in mapping.items()}
    for f in files:  # the EHR adapter's checks (formats.meds): footers, then the values of the shards that pass
        _, probs = shard_problems(f)
        probs = probs or content_problems([f])
        for p in probs:
            log.error(p.message, file=p.file, patient=patient_of.get(str(p.patient), p.patient), field=p.field,
                      hint=p.hint)
        if probs:
            bad.add(f)
    good = [f for f in files if f not in bad]
    if not good or not mapping:
        return MedsSource(root=root, subject_ids={})
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
