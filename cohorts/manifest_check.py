"""Checking a manifest mapping section by section, collecting every problem (unknown keys with did-you-mean,
wrong types) instead of stopping at the first."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from multimodal.cohorts.manifest import (
    MODALITY_SPECS,
    ManifestSpec,
    PatientTableSpec,
    SplitsSpec,
    parse_manifest,
)
from multimodal.cohorts.problems import ProblemLog, did_you_mean
from multimodal.config import from_dict
from multimodal.errors import InputError, short


# ---- manifest parsing -------------------------------------------------------------------------------------------
def parse_manifest_collecting(data: dict[str, Any], *, file: str, log: ProblemLog) -> ManifestSpec | None:
    """Check every section of the manifest mapping, collect all problems, and return the spec if there were none.

    :func:`multimodal.cohorts.manifest.parse_manifest` stops at the first error; here each section (top level,
    ``patients``, each modality, ``splits``) is checked on its own so that one run lists them all.
    """
    before = len(log.problems)
    known_top = [f.name for f in fields(ManifestSpec)]
    for key in data:
        if key not in known_top:
            log.error(f"unknown key {short(key)}", file=file, field=str(key), hint=did_you_mean(key, known_top))
    if "patients" not in data:
        log.error("the manifest needs a 'patients' section (the patient table)", file=file, field="patients",
                  hint="e.g. patients: {path: outcomes.parquet, id: patient_id, time: time, event: event}")
    else:
        _check_section(PatientTableSpec, data["patients"], "patients", file, log)
    mods = data.get("modalities", {}) or {}
    if not isinstance(mods, dict):
        log.error("expected a mapping of modality name -> source", file=file, field="modalities")
    else:
        for name, mspec in mods.items():
            where = f"modalities.{name}"
            kind = mspec.get("type") if isinstance(mspec, dict) else None
            if kind is None:
                log.error("each modality needs a 'type'", file=file, field=where,
                          hint=f"one of {', '.join(MODALITY_SPECS)}")
            elif kind not in MODALITY_SPECS:
                log.error(f"unknown modality type {short(kind)}", file=file, field=f"{where}.type",
                          hint=did_you_mean(kind, MODALITY_SPECS))
            else:
                _check_section(MODALITY_SPECS[kind], mspec, where, file, log)
    if data.get("splits") is not None:
        _check_section(SplitsSpec, data["splits"], "splits", file, log)
    for key, tp in (("version", int), ("name", str)):
        if key in data and (not isinstance(data[key], tp) or isinstance(data[key], bool)):
            log.error(f"expected {tp.__name__}, got {short(data[key])}", file=file, field=key)
    if len(log.problems) == before:
        try:
            return parse_manifest(data, file=file)
        except InputError as exc:  # should not happen after the checks above; keep its message if it does
            log.absorb(exc)
            return None
    # Problems were logged. If they were only unknown keys, go on without those keys so that the data can still be
    # checked (and reported) in the same run; loading raises anyway because problems were logged.
    try:
        return parse_manifest(_without_unknown_keys(data), file=file)
    except InputError:
        return None


def _without_unknown_keys(data: dict[str, Any]) -> dict[str, Any]:
    def keep(cls: type, section: Any) -> Any:
        if not isinstance(section, dict):
            return section
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in section.items() if k in names}

    out = keep(ManifestSpec, data)
    if "patients" in out:
        out["patients"] = keep(PatientTableSpec, out["patients"])
    if isinstance(out.get("modalities"), dict):
        out["modalities"] = {
            name: keep(MODALITY_SPECS[m["type"]], m) if isinstance(m, dict) and m.get("type") in MODALITY_SPECS else m
            for name, m in out["modalities"].items()
        }
    if isinstance(out.get("splits"), dict):
        out["splits"] = keep(SplitsSpec, out["splits"])
    return out


def _check_section(cls: type, value: Any, where: str, file: str, log: ProblemLog) -> None:
    if not isinstance(value, dict):
        log.error(f"expected a mapping, got {type(value).__name__}", file=file, field=where)
        return
    flds = {f.name for f in fields(cls)}
    unknown = [k for k in value if k not in flds]
    for k in unknown:  # one problem per unknown key, each with its own did-you-mean
        log.error(f"unknown key {short(k)}", file=file, field=f"{where}.{k}", hint=did_you_mean(k, flds))
    known = {k: v for k, v in value.items() if k in flds}
    try:
        from_dict(cls, known, _prefix=where, _file=file)
    except InputError as exc:
        log.absorb(exc)
