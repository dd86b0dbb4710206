"""Resolving a slides modality: its slide table or glob -> :class:`SlideSource` (files checked to exist; their
contents are read by :mod:`multimodal.cohorts.formats.slides`)."""

from __future__ import annotations

import math
import re
from pathlib import Path

from multimodal.cohorts.formats.tables import norm_id, read_table
from multimodal.cohorts.manifest import (
    SlidesSpec,
)
from multimodal.cohorts.problems import did_you_mean
from multimodal.cohorts.resolved import ResolvedManifest, under, unknown_patient
from multimodal.cohorts.sources import SlideRef, SlideSource
from multimodal.errors import InputError, short

#: (patient, slide id, feature file, the file that listed it, its field, (thumbnail, downsample) or None)
_Row = tuple[str, str, Path, Path, str, "tuple[Path | None, float | None] | None"]

#: Slide file suffix -> SlideRef.format ("auto": an h5 file whose layout (TRIDENT / CLAM / STAMP) is read from its keys).
SLIDE_SUFFIX_FORMAT = {".h5": "auto", ".hdf5": "auto", ".pt": "pt", ".pth": "pt", ".npy": "npy",
                       ".safetensors": "safetensors"}


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


def resolve_slides(name: str, spec: SlidesSpec, res: ResolvedManifest, known: set[str] | None) -> SlideSource:
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
    for pid, slide_id, path, file, field_name, thumb in rows:
        if unknown_patient(log, known, pid, file=file, field=field_name, what=f"slide {slide_id!r}"):
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
        thumbnail, downsample = thumb or (None, None)
        if thumbnail is not None and not thumbnail.is_file():
            log.error("slide thumbnail not found", file=thumbnail, patient=pid, field=spec.thumbnail_column,
                      hint=f"listed in {file.name}; paths are relative to the manifest folder (leave the cell empty "
                           "for a slide without one)", group="missing thumbnail")
            continue
        refs.setdefault(pid, []).append(SlideRef(patient_id=pid, slide_id=slide_id, path=path, format=fmt,
                                                 thumbnail=thumbnail, thumbnail_downsample=downsample))
    return SlideSource(slides={p: tuple(r) for p, r in refs.items()})


def _thumbnail(spec: SlidesSpec, res: ResolvedManifest, rec: dict, row: int, table_path: Path,
               pid: str) -> tuple[Path | None, float | None] | None:
    """The row's optional thumbnail and downsample; None after logging an error (a bad downsample)."""
    rel = norm_id(rec.get(spec.thumbnail_column))
    raw = rec.get(spec.thumbnail_downsample_column)
    downsample = None
    if raw is not None and norm_id(raw) is not None:
        try:
            downsample = float(raw)
        except (TypeError, ValueError):
            downsample = float("nan")
        if not (math.isfinite(downsample) and downsample > 0):
            res.log.error(f"row {row}: thumbnail downsample must be a positive number (level-0 pixels per thumbnail "
                          f"pixel), got {short(raw)}", file=table_path, patient=pid,
                          field=spec.thumbnail_downsample_column, group="thumbnail downsample")
            return None
    return (None if rel is None else under(res.root, rel), downsample)


def _slide_rows_from_table(spec: SlidesSpec, res: ResolvedManifest,
                           where: str) -> list[_Row]:
    log = res.log
    table_path = under(res.root, str(spec.table))
    try:
        table = read_table(table_path, str_columns=[spec.patient_column, spec.slide_column, spec.path_column,
                                                    spec.thumbnail_column])
    except InputError as exc:
        p = exc.problems[0]
        log.error(f"slide table: {p.message}", file=table_path, field=f"{where}.table", hint=p.hint)
        return []
    for col in (spec.patient_column, spec.path_column):
        if col not in table.columns:
            log.error(f"slide table has no column {col!r}", file=table_path, field=col,
                      hint=did_you_mean(col, table.columns))
            return []
    rows = []
    for i, rec in enumerate(table.to_dict("records")):
        pid, rel = norm_id(rec[spec.patient_column]), norm_id(rec[spec.path_column])
        if pid is None or rel is None:
            log.error(f"row {i + 2}: empty {'patient id' if pid is None else 'path'}", file=table_path, patient=pid,
                      field=spec.patient_column if pid is None else spec.path_column, group="slide table empty cell")
            continue
        path = under(res.root, rel)
        slide_id = norm_id(rec.get(spec.slide_column)) or path.stem
        thumb = _thumbnail(spec, res, rec, i + 2, table_path, pid)
        if thumb is None:
            continue
        rows.append((pid, slide_id, path, table_path, spec.patient_column, thumb))
    return rows


def _slide_rows_from_glob(spec: SlidesSpec, res: ResolvedManifest, where: str,
                          known: set[str] | None) -> list[_Row]:
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
        if unknown_patient(log, known, pid, file=res.root / pat, field=f"{where}.glob", what=f"slide {f.name!r}"):
            continue
        rows.append((pid, f.stem, f, f, f"{where}.glob", None))
    if unmatched:
        log.warn(f"{len(unmatched)} slide file(s) do not match patient_pattern and are ignored, e.g. {unmatched[:3]}",
                 file=res.path, field=f"{where}.patient_pattern")
    return rows
