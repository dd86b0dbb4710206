"""Traceability: what produced a result — config, versions, git commit, seed, input file fingerprints."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from multimodal import __version__
from multimodal.config import safe_yaml, to_dict
from multimodal.io import sha256_file, write_json_atomic

PACKAGES = ("torch", "transformers", "accelerate", "captum", "scikit-survival", "scikit-learn", "numpy", "pandas",
            "polars", "pyarrow", "h5py", "anndata", "scanpy", "safetensors", "weasyprint", "jinja2", "matplotlib")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"precision-multimodal": __version__, "python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def git_commit(path: Path | None = None) -> str | None:
    here = path or Path(__file__).resolve().parent
    try:
        r = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


_CACHE_ENV = "MULTIMODAL_FINGERPRINT_CACHE"


def fingerprint(path: Path, cache: dict[str, Any] | None = None) -> dict[str, Any]:
    """Size + sha256 of a file, cached by (path, size, mtime) so unchanged files are hashed once."""
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    if cache is not None and key in cache:
        return {**cache[key], "path": str(path)}
    rec = {"path": str(path), "size": st.st_size, "sha256": sha256_file(path)}
    if cache is not None:
        cache[key] = rec
    return rec


def _named_files(data: Any, bases: list[Path]) -> set[Path]:
    """Files (and files under folders) named by the string values of a manifest / config mapping."""
    out: set[Path] = set()
    stop = {b.resolve() for b in bases} | {a for b in bases for a in b.resolve().parents}

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v.strip() and len(v) < 1024 and "\n" not in v:
            q = Path(v).expanduser()
            for cand in ([q] if q.is_absolute() else [b / q for b in bases]):
                try:
                    if cand.is_file():
                        out.add(cand)
                    elif cand.is_dir() and cand.resolve() not in stop:  # e.g. a MEDS folder
                        out.update(f for f in cand.rglob("*") if f.is_file())
                except OSError:
                    continue

    walk(data)
    return out


def cohort_files(cohort: Any, config: Any = None) -> list[Path]:
    """Every input file of ``cohort``: the manifest and every file it names (patient table with the outcomes, slide
    table, omics, MEDS folder, clinical table, split files), each slide file, and files the ``config`` names (e.g.
    gene sets)."""
    import yaml

    files: set[Path] = set()
    root = Path(cohort.root) if getattr(cohort, "root", None) else None
    if getattr(cohort, "manifest_path", None):
        mp = Path(cohort.manifest_path)
        files.add(mp)
        try:
            files |= _named_files(safe_yaml(mp.read_text()), [mp.parent])
        except (OSError, yaml.YAMLError):
            pass
    if config is not None:
        files |= _named_files(to_dict(config), [b for b in (root, Path.cwd()) if b is not None])
    for src in cohort.modalities.values():
        for name in ("expression", "mutations", "mutation_samples", "cnv", "path"):
            p = getattr(src, name, None)
            if isinstance(p, Path) and p.is_file():
                files.add(p)
        if getattr(src, "kind", "") == "slides":
            for refs in src.slides.values():
                files.update(r.path for r in refs)
        if getattr(src, "kind", "") == "meds":
            files.update(Path(src.root).rglob("*.parquet"))
    return sorted(f for f in files if f.is_file())


def input_fingerprints(cohort: Any, cache_file: Path | None = None, config: Any = None) -> list[dict[str, Any]]:
    """Size + sha256 of every input file (see :func:`cohort_files`); hashes are cached by (path, size, mtime) in
    ``$MULTIMODAL_FINGERPRINT_CACHE`` (default ``~/.cache/multimodal/fingerprints.json``)."""
    cache_path = cache_file or Path(os.environ.get(_CACHE_ENV, Path.home() / ".cache" / "multimodal" / "fingerprints.json"))
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}
    out = [fingerprint(p, cache) for p in cohort_files(cohort, config)]
    try:
        write_json_atomic(cache_path, cache)  # atomic: parallel runs never leave a half-written cache
    except OSError:
        pass
    return out


def run_record(config: Any, cohort: Any) -> dict[str, Any]:
    return {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": to_dict(config),
        "seed": getattr(config, "seed", None),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "cohort": {"name": cohort.name, "n_patients": len(cohort), "time_unit": cohort.time_unit},
        "inputs": input_fingerprints(cohort, config=config),
    }
