"""The folder of a ``multimodal cv`` run: what it holds, who may write it, when its folds may be reused.

Layout (written by :class:`multimodal.study.Study`)::

    config.yaml            the resolved experiment config of the run
    run.json               versions, git commit, seed, size + sha256 of every input file
    folds/fold_<k>.json    a finished fold's metrics, its digest and the sha256 of its predictions
    folds/fold_<k>.parquet a finished fold's predictions
    predictions.parquet    every fold's predictions (a finished run)
    summary.json / .md     the study summary (a finished run)
    checksums.json         size + sha256 of every file above (written last: a finished run)
    .multimodal-run.lock   present while a run holds the folder

Rules held here:

* **one run at a time**: a run holds an exclusive ``fcntl.flock`` on the lock file; a second run on the same folder
  fails at once (exit 2) naming the folder and the holder's pid. The kernel releases the lock when its process dies,
  so a lock file left by a killed run never blocks the next one.
* **folds are reused only by the run that made them**: each fold's JSON carries :func:`fold_digest` (config, content
  of every input file, the fold's patients) and the sha256 of its parquet; a resumed run reuses a fold only when both
  match, and stops with exit 2 otherwise (:func:`reusable_fold`).
* **a finished run is sealed**: ``checksums.json`` (:func:`multimodal.io.write_checksums`) covers every byte a cohort
  report reads; :func:`check_run_dir` verifies it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from multimodal.errors import InputError
from multimodal.io import CHECKSUMS, json_sha256, make_parents, remove_empty, sha256_file, verify_checksums
from multimodal.provenance import git_commit, package_versions

#: The lock file a run holds inside its folder.
LOCK_NAME = ".multimodal-run.lock"
#: What a run writes into its folder (removed by ``--overwrite``; the lock file is not among them).
RUN_ARTIFACTS = ("folds", "summary.json", "summary.md", "predictions.parquet", "run.json", "config.yaml", CHECKSUMS)
#: Version of :func:`fold_digest` (a change of what it covers must not match digests of the old rule).
FOLD_DIGEST_VERSION = 1

_HELD: dict[str, list[int]] = {}  # resolved folder -> [lock fd, depth]: this process's locks (re-entrant)


# ---- the lock -------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of run folder ``folder`` (created if missing; removed again on exit if the run left
    nothing in it). Re-entrant within a process; under ``torchrun`` / ``accelerate launch`` only the main process
    locks (the others never write the folder).

    Raises InputError (exit 2) naming the folder and the holder's pid when another live run holds it.
    """
    out = Path(folder)
    key = str(out.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield out
        finally:
            _HELD[key][1] -= 1
        return
    if not _is_main_process():
        yield out
        return
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is a file; 'cv' writes a run folder", file=out, field="--out",
                         hint="choose a new --out")
    try:
        made = make_parents(out)
    except OSError as exc:
        raise InputError(f"cannot create the run folder ({exc.strerror})", file=out, field="--out",
                         hint="choose another --out") from None
    try:
        fd = _acquire(out)
    except BaseException:
        remove_empty(made)
        raise
    _HELD[key] = [fd, 1]
    try:
        yield out
    finally:
        del _HELD[key]
        with contextlib.suppress(FileNotFoundError):
            (out / LOCK_NAME).unlink()  # still holding it: a run that opened this file retries on a fresh one
        os.close(fd)
        remove_empty(made)


def _is_main_process() -> bool:
    from accelerate import PartialState

    return bool(PartialState().is_main_process)


def _acquire(out: Path) -> int:
    """Lock ``out/LOCK_NAME`` (non-blocking) and record this process in it; return the open descriptor."""
    path = out / LOCK_NAME
    for _ in range(50):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise InputError(f"cannot lock the run folder ({exc.strerror})", file=out, field="--out",
                                 hint="choose an --out on a local file system that supports file locks") from None
            raise _busy(out) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed the file between our open and our lock: lock the new one
            os.close(fd)
            continue
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        return fd
    raise _busy(out)


def _busy(out: Path) -> InputError:
    holder = lock_holder(out)
    who = "another run" if not holder else (f"another run (pid {holder.get('pid')} on {holder.get('host')}, since "
                                            f"{holder.get('since')})")
    return InputError(f"the run folder is in use by {who}; two runs in one folder would mix their folds", file=out,
                      field="--out", hint="wait for that run to finish, or choose another --out")


def lock_holder(folder: str | Path) -> dict[str, Any] | None:
    """What the lock file of ``folder`` says about its holder ({pid, host, since}), or None if unreadable."""
    path = Path(folder) / LOCK_NAME
    for _ in range(20):  # the holder writes its record right after locking: wait a moment for it
        try:
            rec = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            rec = None
        if isinstance(rec, dict):
            return rec
        time.sleep(0.01)
    return None


# ---- what a folder holds --------------------------------------------------------------------------------------------
def has_content(folder: Path) -> bool:
    """Whether ``folder`` holds anything besides the lock file."""
    return folder.is_dir() and any(p.name != LOCK_NAME for p in folder.iterdir())


def is_run_dir(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and (folder / "folds").is_dir()


def check_resumable(out: Path, cfg_yaml: str, *, overwrite: bool) -> bool:
    """Whether ``out`` holds a run of config ``cfg_yaml`` to resume; InputError when it holds something else
    (a file, a folder that is not a run, a run of another config) and ``overwrite`` is off."""
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is a file; 'cv' writes a run folder", file=out, hint="choose a new --out")
    if not has_content(out) or overwrite:
        return False
    if not is_run_dir(out):
        raise InputError("output exists and is not a run directory", file=out,
                         hint="choose a new --out or pass --overwrite")
    if (out / "config.yaml").read_text() != cfg_yaml:
        raise InputError("run directory holds a run of a different config", file=out / "config.yaml",
                         hint="choose a new --out, or pass --overwrite to start over")
    return True


def remove_run_artifacts(out: Path) -> None:
    """Remove what a run wrote into ``out`` (``--overwrite``), keeping anything else and the lock."""
    for name in RUN_ARTIFACTS:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def check_code_unchanged(out: Path) -> None:
    """A resumed run must be computed by the same code as its finished folds (package version and git commit as
    recorded in run.json; a field recorded as unknown is not compared)."""
    if not any((out / "folds").glob("fold_*.json")):
        return
    try:
        rec = json.loads((out / "run.json").read_text())
        then = {"precision-multimodal": rec["versions"].get("precision-multimodal"), "git commit": rec.get("git_commit")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    now = {"precision-multimodal": package_versions().get("precision-multimodal"), "git commit": git_commit()}
    diff = [k for k in now if then[k] and now[k] and then[k] != now[k]]
    if diff:
        k = diff[0]
        raise InputError(f"the code changed since this run started ({k} {then[k]} → {now[k]}); finished folds were "
                         "computed by the old code", file=out / "run.json", field=k,
                         hint="pass --overwrite to start the run over, or choose a new --out")


def check_inputs_unchanged(out: Path, inputs: Iterable[Mapping[str, Any]]) -> None:
    """A resumed run must see the same input files as its finished folds did (sha256 recorded in run.json);
    ``inputs`` are this run's fingerprints (:func:`multimodal.provenance.input_fingerprints`)."""
    if not any((out / "folds").glob("fold_*.json")):
        return  # nothing finished yet: nothing computed on other data
    try:
        recorded = {str(Path(r["path"]).resolve()): r["sha256"]
                    for r in json.loads((out / "run.json").read_text()).get("inputs", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # no usable record: the fold digests (reusable_fold) still guard every finished fold
    now = {str(Path(r["path"]).resolve()): r["sha256"] for r in inputs}
    changed = sorted(p for p in recorded.keys() & now.keys() if recorded[p] != now[p])
    added, removed = sorted(now.keys() - recorded.keys()), sorted(recorded.keys() - now.keys())
    if changed or added or removed:
        first = (changed or added or removed)[0]
        what = "changed" if changed else ("is new" if added else "is gone")
        n = len(changed) + len(added) + len(removed)
        raise InputError(f"input file {what} since this run started ({n} input file(s) differ); finished folds "
                         "were computed on the old data", file=first, field="inputs",
                         hint="pass --overwrite to start the run over, or restore the inputs")


# ---- folds ----------------------------------------------------------------------------------------------------------
def fold_files(out: Path, index: int) -> tuple[Path, Path]:
    """(metrics JSON, predictions parquet) of fold ``index`` in run folder ``out``."""
    return out / "folds" / f"fold_{index}.json", out / "folds" / f"fold_{index}.parquet"


def fold_digest(config_yaml: str, inputs: Iterable[Mapping[str, Any]], train: Iterable[str],
                test: Iterable[str]) -> str:
    """sha256 of what made a fold: the resolved config, the content (sha256) of every input file and the fold's
    training and reporting patients. Input paths are left out: a moved cohort folder still matches."""
    return json_sha256({"version": FOLD_DIGEST_VERSION, "config": config_yaml,
                        "inputs": sorted(str(r["sha256"]) for r in inputs),
                        "train": list(train), "test": list(test)})


def fold_record(rec: Mapping[str, Any], digest: str, predictions: Path) -> dict[str, Any]:
    """A fold's JSON record with its digest and the sha256 of its (already written) predictions parquet."""
    return {**rec, "digest": digest, "predictions_sha256": sha256_file(predictions)}


def reusable_fold(out: Path, index: int, digest: str, *, overwrite: bool = False) -> bool:
    """Whether fold ``index`` of ``out`` is finished by a run with this ``digest`` (reuse it); False when it is not
    finished (or ``overwrite``: compute it again). InputError (exit 2) when it was made from another config or other
    inputs, or its predictions were changed since."""
    fpath, ppath = fold_files(out, index)
    if not (fpath.is_file() and ppath.is_file()):
        return False
    try:
        rec = json.loads(fpath.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if overwrite:
            return False
        raise InputError(f"unreadable fold record ({exc})", file=fpath,
                         hint="pass --overwrite to start the run over, or choose a new --out") from None
    if not isinstance(rec, dict):
        rec = {}
    if rec.get("digest") != digest:
        if overwrite:
            return False
        why = ("it records no digest (written by an older version)" if "digest" not in rec else
               "it was computed from another config or other input files")
        raise InputError(f"fold {index} cannot be reused: {why}; a resumed run must not mix folds of two runs",
                         file=fpath, field="digest", hint="pass --overwrite to start the run over, or choose a new --out")
    if rec.get("predictions_sha256") != sha256_file(ppath):
        if overwrite:
            return False
        raise InputError(f"fold {index}'s predictions differ from those its record was written with (file changed "
                         "or replaced)", file=ppath, field="predictions_sha256",
                         hint="pass --overwrite to start the run over, or choose a new --out")
    return True


# ---- reading a finished run -----------------------------------------------------------------------------------------
def read_study_summary(path: str | Path, method: str = "multimodal") -> tuple[Path, dict[str, Any]]:
    """A cv run's ``summary.json`` (``path`` is the run folder or the file) holding ``method``: (file, summary).

    Raises a clear InputError for a missing file, unreadable JSON or a summary without ``method``, and an
    IntegrityError when the folder is a sealed run (``checksums.json``) whose files changed since.
    """
    p = Path(path)
    f = p / "summary.json" if p.is_dir() else p
    if not f.is_file():
        raise InputError("no study summary found", file=f, field="validation",
                         hint="pass the folder of a finished `multimodal cv` run (it holds summary.json)")
    verify_checksums(f.parent, required=False)  # a summary outside a sealed run folder cannot be verified
    try:
        summary = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not a readable JSON study summary ({e})", file=f, field="validation") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("methods"), dict) or method not in summary["methods"]:
        raise InputError(f"method {method!r} not in the study summary", file=f, field="methods",
                         hint="the summary of a `multimodal cv` run lists our model as 'multimodal'")
    return f, summary


def check_run_dir(run: Path) -> dict[str, Any]:
    """The parts of a ``multimodal cv`` run folder that reports read, checked (structure first, then every byte
    against ``checksums.json``); returns the summary."""
    hint = "pass the --out folder of a finished 'multimodal cv' run (re-running the same command finishes it)"
    s = run / "summary.json"
    if not s.is_file():
        raise InputError("not a finished cv run directory (summary.json missing)", file=run, hint=hint)
    try:
        summary = json.loads(s.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"unreadable JSON ({exc})", file=s, hint="re-run 'multimodal cv' with --overwrite") from exc
    methods = summary.get("methods") if isinstance(summary, dict) else None
    if not isinstance(methods, dict) or not methods:
        raise InputError("not a study summary (no 'methods')", file=s, field="methods", hint=hint)
    for name, m in methods.items():
        if not (isinstance(m, dict) and isinstance(m.get("folds"), list) and isinstance(m.get("mean"), dict)):
            raise InputError(f"method {name!r} lacks 'folds'/'mean'", file=s, field=f"methods.{name}", hint=hint)
    p = run / "predictions.parquet"
    if not p.is_file():
        raise InputError("predictions missing", file=p, hint=hint)
    try:
        cols = set(pq.read_schema(p).names)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"unreadable parquet ({type(exc).__name__}: {exc})", file=p, hint=hint) from exc
    need = {"method", "fold", "patient_id", "risk", "time", "event"}
    if need - cols:
        raise InputError(f"lacks column(s) {sorted(need - cols)}", file=p, field=sorted(need - cols)[0], hint=hint)
    verify_checksums(run)
    return summary
