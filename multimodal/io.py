"""Atomic file writing and the package's one checksum scheme: outputs appear whole or not at all, and are verified
before use.

Outputs are built under a hidden temporary name beside the target, ``.<name>.<host>.<pid>.<random>.tmp``, and renamed
onto it at the end. They get the modes the user's umask gives any new file or folder (``0666 & ~umask``,
``0777 & ~umask``), not the private 0600 / 0700 of :mod:`tempfile`. The temporary name says which process wrote it,
so a writer removes what dead writers (a ``kill -9``, a crash) left beside its target, and never a live writer's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from multimodal.errors import InputError

#: The longest file name (bytes) most file systems allow; temporary names are kept within it.
NAME_MAX = 255
_TMP_SUFFIX = ".tmp"
_PID_DIGITS = 7  # Linux pid_max is at most 2**22 (7 digits)
_RANDOM = 8  # characters tempfile adds


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only where /proc is missing)
    os.umask(mask)
    return mask


def _public_mode(path: Path, *, folder: bool) -> None:
    """Give ``path`` the mode a plain ``open`` / ``mkdir`` would have given it under the current umask."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _clip_name(name: str, room: int) -> str:
    """``name`` cut to at most ``room`` bytes (UTF-8), never inside a character."""
    return os.fsencode(name)[:room].decode("utf-8", "ignore") if len(os.fsencode(name)) > room else name


def _temp_stem(target: Path) -> str:
    """``.<name>.`` of the temporary names of ``target`` (the name cut so that every temporary name fits NAME_MAX)."""
    room = NAME_MAX - len(f"..{_host()}.{'9' * _PID_DIGITS}.{'x' * _RANDOM}{_TMP_SUFFIX}")
    return f".{_clip_name(target.name, room)}."


def temp_prefix(target: Path, pid: int | None = None) -> str:
    """The prefix of the temporary names of ``target`` written by process ``pid`` (default: this one) on this host."""
    return f"{_temp_stem(target)}{_host()}.{os.getpid() if pid is None else pid}."


def _temp_owner(name: str, stem: str) -> tuple[str, int] | None:
    """(host, pid) of the writer of a temporary name beginning with ``stem``, or None for any other name."""
    if not (name.startswith(stem) and name.endswith(_TMP_SUFFIX)):
        return None
    parts = name[len(stem):-len(_TMP_SUFFIX)].split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[2]) != _RANDOM:
        return None
    return parts[0], int(parts[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's process (alive), or not a pid at all
        return pid > 0
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temporary siblings of ``target`` left by dead writers of this host; return what was removed.

    A temporary name carries its writer's host and pid: one whose process is gone (killed, crashed) is litter, one of
    a live process (or of another host, whose processes cannot be checked) is left alone.
    """
    folder, stem, host = target.parent, _temp_stem(target), _host()
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            owner = _temp_owner(entry.name, stem)
            if owner is None or owner[0] != host or _alive(owner[1]):
                continue
            stale = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            removed.append(stale)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` (mode per the umask), on error
    remove it. Temporary files of dead writers of ``path`` are removed first."""
    target = Path(path)
    made = make_parents(target.parent)
    remove_stale_temps(target)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=_TMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _public_mode(tmp_path, folder=False)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        remove_empty(made)
        raise


def make_parents(folder: Path) -> list[Path]:
    """``mkdir -p folder``; return the folders it created (outermost first) so a failed write can remove them."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def remove_empty(made: list[Path]) -> None:
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
    """Build a directory under a temporary name and rename it onto ``path`` at the end (mode per the umask).

    Refuses to replace an existing non-empty ``path`` unless ``overwrite``. Temporary folders of dead writers of
    ``path`` are removed first.
    """
    target = Path(path)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise InputError("output exists and is not empty", file=target, hint="choose a new path or pass --overwrite")
    made = make_parents(target.parent)
    remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=_TMP_SUFFIX, dir=target.parent))
    try:
        _public_mode(tmp, folder=True)
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
        remove_empty(made)
        raise


# ---- checksums: sha256 of a file's bytes, or of a JSON document's canonical text ------------------------------------
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    """sha256 of the canonical JSON text of ``obj`` (keys sorted, no spaces, numbers as Python writes them): the same
    for an object and for what ``json.loads`` reads back from any JSON file of it, whatever its layout."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def seal_json(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """``doc`` with ``doc[key]`` = :func:`json_sha256` of every other key of it (as JSON reads them back)."""
    body = json.loads(json.dumps({k: v for k, v in doc.items() if k != key}, default=_json_default))
    return {**body, key: json_sha256(body)}


def check_sealed_json(doc: dict[str, Any], key: str, file: str | Path) -> None:
    """IntegrityError naming ``file`` unless ``doc[key]`` is the :func:`json_sha256` of the rest of ``doc``."""
    from multimodal.errors import IntegrityError

    recorded = doc.get(key)
    if not isinstance(recorded, str):
        raise IntegrityError(f"{file}: no checksum of its own content ({key!r}); it was written by an older version "
                             "or edited, and cannot be verified")
    if recorded != json_sha256({k: v for k, v in doc.items() if k != key}):
        raise IntegrityError(f"{file}: checksum mismatch ({key!r}): its content was edited after it was written")


def verify_file(path: Path, sha256: str, size: int | None = None, *, what: str = "folder") -> None:
    """IntegrityError naming ``path`` when it is missing, of another ``size`` (truncated) or of another sha256."""
    from multimodal.errors import IntegrityError

    if not path.is_file():
        raise IntegrityError(f"{path}: missing ({what} incomplete)")
    if size is not None and path.stat().st_size != size:
        raise IntegrityError(f"{path}: checksum mismatch (size {path.stat().st_size} bytes, recorded {size}: file "
                             "truncated or modified)")
    if sha256_file(path) != sha256:
        raise IntegrityError(f"{path}: checksum mismatch (file truncated or modified)")


CHECKSUMS = "checksums.json"


def write_checksums(folder: str | Path, *, name: str = CHECKSUMS, exclude: Iterable[str] = ()) -> Path:
    """Record size + sha256 of every file under ``folder`` (except the list itself, temporary files and the names in
    ``exclude``) in ``folder/name``, atomically.

    Call it last, after every other file of the folder is written; :func:`verify_checksums` checks it before use.
    """
    d = Path(folder)
    skip = {name, *exclude}
    files = sorted(p for p in d.rglob("*") if p.is_file() and p.name not in skip and not p.name.endswith(_TMP_SUFFIX))
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
        items = [(str(rel), str(rec["sha256"]), int(rec["size"])) for rel, rec in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{listing}: unreadable checksum list ({exc})") from exc
    for rel, digest, size in items:
        verify_file(d / rel, digest, size)
