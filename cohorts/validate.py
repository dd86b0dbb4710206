"""Deep validation of a cohort manifest: every problem at once, each with file, patient, field and a hint (DESIGN §4).

:func:`validate_manifest` runs everything :mod:`multimodal.cohorts.loading` checks, then opens the data: every slide
feature file, the omics files and the MEDS shards, with the very readers the adapters use
(:mod:`multimodal.cohorts.formats`), so that what ``validate`` accepts every command accepts, and the reverse: slides
(layout, shape, coords, every row for NaN/inf, encoder and dimension consistency), expression / CNV / MAF / wide
tables (finite values, one profile per patient), MEDS shards (dtypes, null ids and codes, infinite values, events
after the prediction time; row order is not checked: it does not matter). It never raises for bad input;
:meth:`ValidationReport.raise_if_invalid` does.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multimodal.cohorts.formats.omics import read_cnv, read_expression, read_maf, split_wide
from multimodal.cohorts.formats.slides import open_slide
from multimodal.cohorts.formats.thumbnails import read_thumbnail
from multimodal.cohorts.loading import ProblemLog, ResolvedManifest, resolve_manifest
from multimodal.cohorts.resolved import under
from multimodal.cohorts.sources import ClinicalSource, MedsSource, OmicsSource, SlideRef, SlideSource
from multimodal.errors import InputError, Problem

#: Rows of a slide's feature matrix read at a time by the NaN/inf check (every row is checked).
MAX_SAMPLE_ROWS = 4096
#: Rows of a MEDS shard read at a time (row count, subjects in two shards).
MEDS_BATCH_ROWS = 1 << 20


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of :func:`validate_manifest`.

    Attributes:
        manifest: the manifest path.
        problems: everything that makes the cohort unusable (exit code 2 in the CLI).
        warnings: things that work but deserve a look (events after the prediction time, patients without data ...).
        summary: patients, events, per-modality coverage, slide encoders and feature dims, counts of note.
    """

    manifest: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_invalid(self) -> None:
        """Raise one :class:`InputError` listing every problem, if there is any."""
        if self.problems:
            raise InputError(problems=self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "valid": self.ok,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "warnings": [dataclasses.asdict(p) for p in self.warnings],
            "summary": self.summary,
        }


def validate_manifest(path: str | Path) -> ValidationReport:
    """Check the manifest at ``path`` and everything it points to; report every problem at once."""
    res = resolve_manifest(path)
    log = res.log
    slides = _check_slides(res, log) if res.spec is not None else {}
    meds = _check_meds(res, log) if res.spec is not None else {}
    _check_expression(res, log)
    _check_omics_values(res, log)
    _check_coverage(res, log)
    _check_split_coverage(res, log)
    log.finish()
    return ValidationReport(manifest=str(res.path), problems=list(log.problems), warnings=list(log.warnings),
                            summary=_summary(res, slides, meds))


# ---- slides -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlideInfo:
    """What one slide feature file holds (from its header; every row was read and checked)."""

    ref: SlideRef
    layout: str  # trident | clam_h5 | stamp | pt | npy | safetensors
    n_patches: int
    dim: int
    encoder: str | None = None
    patch_size_level0: int | None = None
    has_coords: bool = True


def inspect_slide(ref: SlideRef) -> tuple[SlideInfo | None, list[Problem]]:
    """Open one slide feature file with the pathology adapter's reader (:func:`~multimodal.cohorts.formats.slides.
    open_slide`) and read every patch, as ``predict`` does; returns its info (None when unusable) and its problems.

    One rule for both: what the reader refuses (no ``coords`` in a TRIDENT / CLAM file, a non-float or non-2-D
    matrix, NaN/inf in any patch, a truncated file) is a problem here; an empty bag is valid (the adapter gives it no
    tokens) and :func:`_check_slides` warns about it.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the patch-size fallback: the adapter warns about it itself
            bag = open_slide(ref.path, ref.format, patient_id=ref.patient_id, slide_id=ref.slide_id)
        for _ in bag.iter_chunks(MAX_SAMPLE_ROWS):  # every row: NaN/inf anywhere fails at prediction time
            pass
    except InputError as exc:
        return None, list(exc.problems)
    layout = bag.format
    return SlideInfo(ref, layout, bag.num_patches, bag.dim, bag.encoder,
                     int(bag.patch_size_level0) if bag.has_coords and bag.patch_size_source == "attrs" else None,
                     bag.has_coords), []


def _check_slides(res: ResolvedManifest, log: ProblemLog) -> dict[str, list[SlideInfo]]:
    found: dict[str, list[SlideInfo]] = {}
    for name, src in res.sources.items():
        if not isinstance(src, SlideSource):
            continue
        infos: list[SlideInfo] = []
        for refs in src.slides.values():
            for ref in refs:
                info, probs = inspect_slide(ref)
                if ref.thumbnail is not None:  # read as `report` reads it: what validate accepts, report accepts
                    try:
                        read_thumbnail(ref.thumbnail, patient=ref.patient_id)
                    except InputError as exc:
                        probs = [*probs, *exc.problems]
                for p in probs:
                    kind = re.sub(r"[\d(\[{].*", "", p.message.split(": ", 1)[-1]).strip()
                    log.error(p.message, file=p.file, patient=p.patient, field=p.field, hint=p.hint,
                              group=f"slide {p.field}: {kind}")
                if info is None:
                    continue
                infos.append(info)
                if info.n_patches == 0:  # the adapter gives the patient no tokens from this slide
                    log.warn("empty patch bag (0 patches): the slide yields no tokens", file=ref.path,
                             patient=ref.patient_id, field="features", group="empty patch bag",
                             hint="the slide yielded no tissue patches; drop it from the slide list")
                if info.layout == "stamp" and not info.has_coords:
                    log.warn("no 'coords' dataset: patch positions are unknown (no 2-D positions, no heatmaps)",
                             file=ref.path, patient=ref.patient_id, field="coords", group="slide without coords")
        _check_dims(infos, log, name)
        _check_encoders(infos, log)
        found[name] = infos
    return found


def _check_dims(infos: list[SlideInfo], log: ProblemLog, modality: str) -> None:
    by_patient: dict[str, list[SlideInfo]] = collections.defaultdict(list)
    for info in infos:
        by_patient[info.ref.patient_id].append(info)
    consistent: list[SlideInfo] = []
    for pid, items in by_patient.items():
        first = items[0]
        odd = [i for i in items if i.dim != first.dim]
        for i in odd:
            log.error(f"feature dim {i.dim} differs from this patient's other slide {first.ref.path.name} "
                      f"(dim {first.dim})", file=i.ref.path, patient=pid, field="features",
                      hint="all slides of a cohort must come from one patch encoder", group="dim within patient")
        if not odd:
            consistent.extend(items)
    dims = collections.Counter(i.dim for i in consistent)
    if len(dims) > 1:
        major = dims.most_common(1)[0][0]
        for i in consistent:
            if i.dim != major:
                log.error(f"feature dim {i.dim} differs from the cohort's dim {major} ({dims[major]} slides, "
                          f"modality {modality!r})", file=i.ref.path, patient=i.ref.patient_id, field="features",
                          hint="all slides of a cohort must come from one patch encoder", group="dim across cohort")


def _check_encoders(infos: list[SlideInfo], log: ProblemLog) -> None:
    encoders = collections.Counter(i.encoder for i in infos if i.encoder)
    if len(encoders) <= 1:
        return
    major = encoders.most_common(1)[0][0]
    for i in infos:
        if i.encoder and i.encoder != major:
            log.error(f"encoder {i.encoder!r} differs from the cohort's {major!r} ({encoders[major]} slides); "
                      f"encoders found: {dict(encoders)}", file=i.ref.path, patient=i.ref.patient_id,
                      field="encoder", hint="features of different encoders live in different spaces; "
                      "re-extract every slide with one encoder", group="mixed encoders")


# ---- MEDS -------------------------------------------------------------------------------------------------------
def _check_meds(res: ResolvedManifest, log: ProblemLog) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for name, src in res.sources.items():
        if not isinstance(src, MedsSource) or not (src.root / "data").is_dir():
            continue
        bad = res.bad_meds_files.get(name, set())
        files = [f for f in sorted((src.root / "data").rglob("*.parquet")) if f not in bad]
        patient_of = {sid: pid for pid, sid in src.subject_ids.items()}
        st: dict[str, Any] = {"files": len(files) + len(bad), "rows": 0, "events_after_prediction_time": 0}
        owner: dict[int, Path] = {}
        for f in files:
            st["rows"] += _check_meds_order(f, patient_of, owner, log)
        _check_meds_codes(src.root, files, log)
        st["events_after_prediction_time"] = _events_after_prediction(res, src, files, log)
        stats[name] = st
    return stats


def _check_meds_order(path: Path, patient_of: dict[int, str], owner: dict[int, Path], log: ProblemLog) -> int:
    """Count the shard's rows and warn about subjects with rows in two shards. Row order is not checked: MEDS
    consumers sort (docs/data-formats.md), and null ids / codes are problems of loading (formats.meds). Reads the
    subject_id column batch by batch, so memory stays bounded for large shards."""
    import pyarrow.parquet as pq

    subjects: set[int] = set()
    n_rows = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=MEDS_BATCH_ROWS, columns=["subject_id"]):
            subjects.update(v for v in batch.column(0).unique().to_pylist() if v is not None)
            n_rows += batch.num_rows
    except Exception as exc:  # a footer that reads but data pages that do not
        log.error(f"cannot read MEDS shard: {type(exc).__name__}: {exc}", file=path, field="subject_id")
        return 0
    for s in sorted(subjects):
        if s in owner and owner[s] != path:
            log.warn(f"subject_id {s} has rows in two shards ({owner[s].name} and {path.name})", file=path,
                     patient=patient_of.get(s), field="subject_id",
                     hint="MEDS keeps each subject in exactly one shard", group="MEDS subject in two shards")
        owner.setdefault(s, path)
    return n_rows


def _check_meds_codes(root: Path, files: list[Path], log: ProblemLog) -> None:
    import polars as pl

    codes_file = root / "metadata" / "codes.parquet"
    if not codes_file.is_file():
        log.warn("MEDS metadata/codes.parquet is missing", file=codes_file, field="code",
                 hint="MEDS 0.4 lists every code (with descriptions) there")
        return
    if not files:
        return
    try:
        listed = pl.scan_parquet(str(codes_file)).select(pl.col("code").cast(pl.String)).unique()
        used = pl.scan_parquet([str(f) for f in files]).select(pl.col("code").cast(pl.String)).unique()
        missing = used.join(listed, on="code", how="anti").collect()["code"].to_list()
    except Exception as exc:  # a codes file without a 'code' column, etc.
        log.warn(f"cannot read MEDS codes metadata: {type(exc).__name__}: {exc}", file=codes_file, field="code")
        return
    if missing:
        log.warn(f"{len(missing)} code(s) used in data/ are not listed in codes.parquet, e.g. {sorted(missing)[:3]}",
                 file=codes_file, field="code")


def _events_after_prediction(res: ResolvedManifest, src: MedsSource, files: list[Path], log: ProblemLog) -> int:
    """Count events dated after each patient's prediction time (the EHR adapter drops them): a warning."""
    import polars as pl

    if res.patients is None or not src.subject_ids or not files:
        return 0
    if "prediction_time" not in res.patients.columns:
        log.warn("no patients.prediction_time declared: EHR events are not restricted to before the index date",
                 file=res.path, field="patients.prediction_time",
                 hint="declare the index date so that no event after it leaks into the model")
        return 0
    pts = res.patients["prediction_time"]
    pairs = [(sid, pts[pid]) for pid, sid in src.subject_ids.items() if pid in pts.index and not _isnat(pts[pid])]
    if not pairs:
        return 0
    frame = pl.DataFrame({"subject_id": [p[0] for p in pairs], "prediction_time": [p[1] for p in pairs]},
                         schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us")})
    try:
        counts = (
            pl.scan_parquet([str(f) for f in files])
            .select(pl.col("subject_id"), pl.col("time").cast(pl.Datetime("us")))
            .join(frame.lazy(), on="subject_id", how="inner")
            .filter(pl.col("time") > pl.col("prediction_time"))
            .group_by("subject_id").agg(pl.len().alias("n"))
            .sort("subject_id")
            .collect()
        )
    except Exception as exc:  # mismatched shard schemas are reported elsewhere
        log.warn(f"cannot compare MEDS times with prediction times: {type(exc).__name__}: {exc}",
                 file=src.root / "data", field="time")
        return 0
    if not counts.height:
        return 0
    patient_of = {sid: pid for pid, sid in src.subject_ids.items()}
    col = res.spec.patients.prediction_time if res.spec is not None else "prediction_time"
    total = int(counts["n"].sum())
    top = counts.sort("n", descending=True).head(5).iter_rows()
    examples = ", ".join(f"{patient_of.get(sid, sid)} ({n})" for sid, n in top)
    # one line for the cohort: post-index events are normal in raw EHR extracts; the adapter drops them
    log.warn(f"{total} EHR event(s) after the prediction time for {counts.height} patient(s), most: {examples} "
             f"(the EHR adapter drops them)", file=src.root / "data",
             patient=patient_of.get(counts["subject_id"][0]) if counts.height == 1 else None, field=col,
             hint="only events with time <= prediction_time (and static rows) are used")
    return total


def _isnat(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


# ---- omics ------------------------------------------------------------------------------------------------------
def _check_omics_values(res: ResolvedManifest, log: ProblemLog) -> None:
    """Read every omics file the genomics adapter reads, with its readers (finite values, one row per patient, MAF
    samples in the sequenced list); a file loading already found at fault is not read again."""
    named = {str(p.file) for p in log.problems if p.file is not None}
    for name, src in res.sources.items():
        if not isinstance(src, OmicsSource):
            continue
        known = src.available or None
        readers: list[tuple[Path | None, Any]] = [
            (src.expression, lambda s=src: read_expression(s.expression, s.expression_patient_column)),
            (src.mutations, lambda s=src, k=known: read_maf(s.mutations, s.mutation_samples, s.mutation_patient_pattern,
                                                                  known=k)),
            (src.cnv, lambda s=src: read_cnv(s.cnv)),
        ]
        wide_file = _wide_path(res, name)
        if src.wide is not None:
            readers.append((wide_file, lambda s=src, f=wide_file: split_wide(s.wide, file=f)))
        for path, read in readers:
            if path is None or str(path) in named:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    read()
            except InputError as exc:
                for p in exc.problems:
                    log.error(p.message, file=p.file or path, patient=p.patient, field=p.field, hint=p.hint)


def _wide_path(res: ResolvedManifest, name: str) -> Path | None:
    spec = res.spec.modalities.get(name) if res.spec is not None else None
    rel = getattr(spec, "wide_table", None)
    return None if rel is None else under(res.root, rel)


def _check_expression(res: ResolvedManifest, log: ProblemLog) -> None:
    import h5py

    for src in res.sources.values():
        if not isinstance(src, OmicsSource) or src.expression is None:
            continue
        try:
            with h5py.File(src.expression, "r") as f:
                has_counts = "layers" in f and "counts" in f["layers"]
        except OSError:
            continue  # already reported by loading
        if not has_counts:
            log.warn("AnnData has no layers['counts'] (raw counts); X is used as given", file=src.expression,
                     field="layers.counts",
                     hint="keep raw counts in adata.layers['counts'] so normalisation is fitted the same way")


# ---- coverage and summary ---------------------------------------------------------------------------------------
def _check_coverage(res: ResolvedManifest, log: ProblemLog) -> None:
    if res.patients is None or res.spec is None:
        return
    if not res.spec.modalities:
        log.warn("the manifest declares no modality", file=res.path, field="modalities")
        return
    covered: set[str] = set()
    for src in res.sources.values():
        covered |= src.patients()
    for pid in res.patients.index:
        if pid not in covered:
            log.warn("patient has no data in any modality", file=res.patients_file, patient=pid,
                     field="modalities", hint="the model will see only missing-modality tokens",
                     group="no modality")


def _check_split_coverage(res: ResolvedManifest, log: ProblemLog) -> None:
    if not res.splits or res.patients is None:
        return
    for fold in res.splits:
        left = set(res.patients.index) - set(fold.train) - set(fold.val) - set(fold.test)
        if left:
            log.warn(f"fold {fold.index}: {len(left)} patient(s) are in no part of the split, e.g. {sorted(left)[:3]}",
                     file=res.path, field="splits.files")


def _summary(res: ResolvedManifest, slides: dict[str, list[SlideInfo]],
             meds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"manifest": str(res.path)}
    if res.spec is not None:
        out["name"] = res.spec.name
        out["time_unit"] = res.spec.patients.time_unit
    p = res.patients
    if p is not None:
        n = len(p)
        out["n_patients"] = n
        if not p["event"].isna().all():
            out["n_events"] = int(p["event"].sum())
        if n:
            out["median_time"] = float(p["time"].median())
        if "treatment" in p.columns and res.treatment_arms:
            counts = p["treatment"].value_counts()
            out["treatment_arms"] = {a: int(counts.get(i, 0)) for i, a in enumerate(res.treatment_arms)}
        if "response" in p.columns:
            vc = p["response"].value_counts(dropna=False)
            out["response"] = {("NA" if _isnat(k) else str(int(k))): int(v) for k, v in vc.items()}
    mods: dict[str, Any] = {}
    for name, src in res.sources.items():
        have = src.patients() & set(p.index) if p is not None else src.patients()
        entry: dict[str, Any] = {"type": src.kind, "patients": len(have)}
        if p is not None and len(p):
            entry["coverage"] = round(len(have) / len(p), 4)
        if name in slides:
            infos = slides[name]
            entry["slides"] = sum(len(r) for r in src.slides.values()) if isinstance(src, SlideSource) else 0
            entry["encoders"] = sorted({i.encoder for i in infos if i.encoder})
            entry["feature_dims"] = sorted({i.dim for i in infos})
            entry["layouts"] = sorted({i.layout for i in infos})
            if infos:
                entry["patches_per_slide"] = {"min": min(i.n_patches for i in infos),
                                              "median": float(np.median([i.n_patches for i in infos])),
                                              "max": max(i.n_patches for i in infos)}
        if name in meds:
            entry.update(meds[name])
        if isinstance(src, ClinicalSource):
            entry["removed_columns"] = dict(src.removed)  # column -> why it is not a feature
        mods[name] = entry
    out["modalities"] = mods
    out["encoders"] = sorted({e for m in mods.values() for e in m.get("encoders", [])})
    out["feature_dims"] = sorted({d for m in mods.values() for d in m.get("feature_dims", [])})
    out["events_after_prediction_time"] = sum(int(m.get("events_after_prediction_time", 0)) for m in mods.values())
    if res.splits is not None:
        out["folds"] = len(res.splits)
    out["n_problems"] = len(res.log.problems)
    out["n_warnings"] = len(res.log.warnings)
    return out
