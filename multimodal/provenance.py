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
from multimodal.config import to_dict
from multimodal.io import sha256_file

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
        return cache[key]
    rec = {"path": str(path), "size": st.st_size, "sha256": sha256_file(path)}
    if cache is not None:
        cache[key] = rec
    return rec


def cohort_files(cohort: Any) -> list[Path]:
    files: set[Path] = set()
    if getattr(cohort, "manifest_path", None):
        files.add(Path(cohort.manifest_path))
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


def input_fingerprints(cohort: Any, cache_file: Path | None = None) -> list[dict[str, Any]]:
    cache_path = cache_file or Path(os.environ.get(_CACHE_ENV, Path.home() / ".cache" / "multimodal" / "fingerprints.json"))
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}
    out = [fingerprint(p, cache) for p in cohort_files(cohort)]
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache))
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
        "inputs": input_fingerprints(cohort),
    }
