"""Atomic file writing and file fingerprints: outputs appear whole or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from multimodal.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error remove it."""
    target = Path(path)
    made = _make_parents(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        _remove_empty(made)
        raise


def _make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; return the folders it created (outermost first) so a failed write can remove them."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders in ``made`` (innermost first) that are still empty: a failed write leaves no trace."""
    for d in reversed(made):
        try:
            d.rmdir()
        except OSError:
            break


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it onto ``path`` at the end.

    Refuses to replace an existing non-empty ``path`` unless ``overwrite``.
    """
    target = Path(path)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InputError("output exists and is not empty", file=target, hint="choose a new path or pass --overwrite")
    made = _make_parents(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        raise


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


CHECKSUMS = "checksums.json"


def write_checksums(folder: str | Path, *, name: str = CHECKSUMS) -> Path:
    """Record size + sha256 of every file under ``folder`` (except the list itself) in ``folder/name``, atomically.

    Call it last, after every other file of the folder is written; :func:`verify_checksums` checks it before use.
    """
    d = Path(folder)
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.name != name and not p.name.endswith(".tmp"))
    sums = {str(p.relative_to(d)): {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in files}
    return write_json_atomic(d / name, {"format": 1, "files": sums})


def verify_checksums(folder: str | Path, *, name: str = CHECKSUMS, required: bool = True) -> None:
    """Raise :class:`~multimodal.errors.IntegrityError` naming the first file of ``folder`` that is missing, truncated
    or modified with respect to ``folder/name`` (written by :func:`write_checksums`)."""
    from multimodal.errors import IntegrityError

    d = Path(folder)
    listing = d / name
    if not listing.is_file():
        if required:
            raise IntegrityError(f"{listing}: checksum list missing (folder incomplete or written by an older version)")
        return
    try:
        files = json.loads(listing.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{listing}: unreadable checksum list ({exc})") from exc
    for rel, rec in files.items():
        p = d / rel
        if not p.is_file():
            raise IntegrityError(f"{p}: missing (folder incomplete)")
        if p.stat().st_size != rec["size"]:
            raise IntegrityError(f"{p}: size {p.stat().st_size} bytes, recorded {rec['size']} (file truncated)")
        if sha256_file(p) != rec["sha256"]:
            raise IntegrityError(f"{p}: checksum mismatch (file modified)")
