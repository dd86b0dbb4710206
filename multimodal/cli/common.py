"""Small helpers shared by the CLI command modules."""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
from pathlib import Path

from multimodal.errors import InputError


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="experiment YAML (see docs/config-reference.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set training.epochs=5 (repeatable)")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def echo(msg: str) -> None:
    print(msg, file=sys.stdout, flush=True)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def check_out(path: str | Path, *, folder: bool) -> Path:
    """Refuse an ``--out`` that cannot be written, before any work (exit 2 naming ``--out``): a name too long, a
    location under a regular file, an unwritable or read-only folder, or (for commands writing a ``folder``) an
    existing regular file. Whether an existing output may be replaced is each command's own check (``--overwrite``).
    """
    out = Path(path)
    problem = _name_problem(out) or _location_problem(out, folder=folder)
    if problem is not None:
        raise InputError(problem, file=out, field="--out", hint="choose another --out")
    return out


def _name_problem(out: Path) -> str | None:
    limit = _limit("PC_NAME_MAX", out, 255)
    for part in out.parts:
        size = len(os.fsencode(part))
        if size > limit:
            return f"a name of {size} bytes is too long (at most {limit} bytes per file or folder name)"
    size = len(os.fsencode(str(out.absolute())))
    path_limit = _limit("PC_PATH_MAX", out, 4096)
    if size >= path_limit:
        return f"the path is {size} bytes long (at most {path_limit - 1})"
    return None


def _limit(name: str, out: Path, default: int) -> int:
    try:
        return int(os.pathconf(_nearest_existing(out)[0], name))
    except (OSError, ValueError):
        return default


def _nearest_existing(out: Path) -> tuple[Path, os.stat_result | None]:
    """The deepest existing path among ``out`` and its parents, and its stat (None if nothing could be read)."""
    p = out.absolute()
    while True:
        try:
            return p, p.stat()
        except (FileNotFoundError, NotADirectoryError):
            if p == p.parent:
                return p, None
            p = p.parent
        except OSError:
            return p, None


def _location_problem(out: Path, *, folder: bool) -> str | None:
    """Why ``out`` cannot be created or replaced, or None."""
    try:
        out.absolute().stat()
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            return f"cannot be reached: {exc.strerror}"
    found, st = _nearest_existing(out)
    if st is None:
        return f"cannot be reached ({found} cannot be read)"
    if found != out.absolute():
        if not stat.S_ISDIR(st.st_mode):
            return f"{found} is a regular file, not a folder: nothing can be written under it"
        return _writable(found)
    if folder and not stat.S_ISDIR(st.st_mode):
        return "exists and is a file; this command writes a folder"
    return _writable(found.parent)


def _writable(folder: Path) -> str | None:
    """None when new entries can be made in ``folder`` (permissions and read-only file systems included)."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    return f"folder {folder} is {'on a read-only file system' if read_only else 'not writable'}"
