"""A saved pipeline's ``pipeline.json``: format versions, reading, sealed writing and the checksum verification of
every file a pipeline is loaded from."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multimodal.errors import InputError, IntegrityError
from multimodal.io import check_sealed_json, seal_json, verify_file, write_json_atomic

__all__ = ["ENSEMBLE_PIPELINE_FORMAT", "PIPELINE_FORMAT", "PIPELINE_JSON_SHA256", "READABLE_FORMATS",
           "read_pipeline_json", "verify_pipeline_files", "write_pipeline_json"]

PIPELINE_FORMAT = 1  # written for a single model
ENSEMBLE_PIPELINE_FORMAT = 2  # format 1 + ``ensemble_members``: an ensemble's members in one weights file
READABLE_FORMATS = (PIPELINE_FORMAT, ENSEMBLE_PIPELINE_FORMAT)


def read_pipeline_json(directory: Path) -> dict[str, Any]:
    """``directory/pipeline.json`` as a dict: InputError when missing, IntegrityError when unreadable or not an object."""
    meta_path = directory / "pipeline.json"
    if not meta_path.is_file():
        raise InputError("not a pipeline directory (pipeline.json missing)", file=directory,
                         hint="pass the folder written by 'multimodal train'")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"{meta_path}: unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise IntegrityError(f"{meta_path}: not a pipeline description (a JSON object is expected)")
    return meta


#: Key of pipeline.json holding the sha256 of the rest of pipeline.json (:func:`multimodal.io.seal_json`).
PIPELINE_JSON_SHA256 = "pipeline_json_sha256"


def write_pipeline_json(directory: Path, meta: Mapping[str, Any]) -> Path:
    """Write ``directory/pipeline.json`` atomically, sealed: its own sha256 (over every key: format, modalities, the
    file checksum list and the metadata that predictions and reports read) in ``pipeline_json_sha256``."""
    return write_json_atomic(directory / "pipeline.json", seal_json(dict(meta), PIPELINE_JSON_SHA256))


def verify_pipeline_files(d: Path, meta: Mapping[str, Any]) -> None:
    """Every byte a saved pipeline is loaded from is covered: the checksum list names every file the loader reads and
    every file under ``model/`` and ``adapters/`` (a removed entry must not switch verification off), pipeline.json's
    own content matches its seal, and every listed file its sha256. IntegrityError (exit 2) naming the file."""
    meta_path = d / "pipeline.json"
    sums, mods = meta.get("sha256"), meta.get("modalities")
    if not isinstance(sums, dict) or not sums:
        raise IntegrityError(f"{meta_path}: no checksum list ('sha256'); the pipeline cannot be verified")
    if not isinstance(mods, list) or not all(isinstance(x, str) for x in mods):
        raise IntegrityError(f"{meta_path}: 'modalities' is not a list of names")
    for mod in mods:
        if mod in ("", ".", "..") or "/" in mod or "\\" in mod:
            raise IntegrityError(f"{meta_path}: modality name {mod!r} is not a plain name")
    read = ["model/config.json", "model/model.safetensors"]
    read += [f"adapters/{m}/{f}" for m in mods for f in ("adapter.json", "adapter.safetensors")]
    present = [str(p.relative_to(d)) for sub in ("model", "adapters") if (d / sub).is_dir()
               for p in sorted((d / sub).rglob("*")) if p.is_file()]
    unlisted = [r for r in [*read, *present] if r not in sums]
    if unlisted:
        raise IntegrityError(f"{d / unlisted[0]}: not covered by the checksum list of {meta_path} "
                             "(files were added or pipeline.json was edited)")
    check_sealed_json(dict(meta), PIPELINE_JSON_SHA256, meta_path)
    for rel, digest in sums.items():
        rel_path = Path(str(rel))
        if rel_path.is_absolute() or ".." in rel_path.parts:
            raise IntegrityError(f"{meta_path}: checksum entry {str(rel)!r} is not a path inside the pipeline")
        verify_file(d / rel_path, str(digest), what="pipeline")
