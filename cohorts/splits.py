"""Patient-level splits: published split files, stratified k-fold, and the inner early-stopping split (DESIGN §7).

Every split here is over patient ids, never slides or samples, so all slides and samples of a patient land in the
same part of a fold.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import Cohort, Fold
from multimodal.errors import InputError, Problem

logger = logging.getLogger(__name__)

PARTS = ("train", "val", "test")


def split_file_paths(pattern_or_dir: str | Path, k_folds: int) -> list[Path]:
    """The ``k_folds`` split file paths: a pattern with ``{k}``, or a folder holding ``splits_{k}.csv``."""
    text = str(pattern_or_dir)
    if "{k}" in text:
        return [Path(text.format(k=k)) for k in range(k_folds)]
    return [Path(text) / f"splits_{k}.csv" for k in range(k_folds)]


def _ids(frame: pd.DataFrame, col: str) -> list[str]:
    values = frame[col].dropna().astype(str).str.strip()
    return [v for v in values if v]


def read_split_files(
    pattern_or_dir: str | Path, k_folds: int, known_ids: Iterable[str] | None = None
) -> list[Fold]:
    """Read published patient-level split files (the CLAM / MCAT / PORPOISE ``splits_{k}.csv`` layout).

    Each file has an unnamed index column and ``train`` and ``val`` columns of case ids, NaN padded to equal length;
    an optional ``test`` column is read too.

    Args:
        pattern_or_dir: ``.../splits_{k}.csv`` (with ``{k}``) or the folder that holds ``splits_0.csv`` ...
        k_folds: number of folds (files ``0 .. k_folds-1``).
        known_ids: the cohort's patient ids; ids outside it are an error.

    Raises:
        InputError: every problem at once — missing file, missing column, duplicated id, a patient in two parts of
            a fold, ids unknown to the cohort (each naming the file and the ids).
    """
    if k_folds < 1:
        raise InputError(f"k_folds must be >= 1, got {k_folds}", field="splits.folds")
    known = None if known_ids is None else set(map(str, known_ids))
    problems: list[Problem] = []
    folds: list[Fold] = []
    for k, path in enumerate(split_file_paths(pattern_or_dir, k_folds)):
        fold = _read_one(k, path, known, problems)
        if fold is not None:
            folds.append(fold)
    if problems:
        raise InputError(problems=problems)
    return folds


def _read_one(k: int, path: Path, known: set[str] | None, problems: list[Problem]) -> Fold | None:
    file = str(path)
    if not path.is_file():
        problems.append(Problem(f"split file for fold {k} not found", file=file, field="splits.files",
                                hint="the pattern needs {k}, e.g. splits/splits_{k}.csv, relative to the manifest"))
        return None
    try:
        frame = pd.read_csv(path, index_col=0, dtype=str, keep_default_na=False, na_values=[""])  # "NA" is an id
    except Exception as exc:  # a CSV the reader rejects is the file's fault
        problems.append(Problem(f"cannot read split file: {type(exc).__name__}: {exc}", file=file))
        return None
    parts: dict[str, list[str]] = {}
    for col in PARTS:
        if col in frame.columns:
            parts[col] = _ids(frame, col)
        elif col != "test":
            problems.append(Problem(f"split file lacks column {col!r} (has {list(frame.columns)})", file=file,
                                    field=col, hint="columns: train, val (and optionally test) of case ids"))
    if "train" not in parts or "val" not in parts:
        return None
    bad = False
    for col, ids in parts.items():
        dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if dup:
            problems.append(Problem(f"fold {k}: {len(dup)} id(s) listed twice in {col}: {dup[:5]}", file=file,
                                    patient=dup[0], field=col))
            bad = True
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sorted(set(parts[a]) & set(parts[b]))
            if both:
                problems.append(Problem(f"fold {k}: {len(both)} patient(s) in both {a} and {b}: {both[:5]}",
                                        file=file, patient=both[0], field=b,
                                        hint="splits must be patient level and disjoint"))
                bad = True
    if known is not None:
        for col, ids in parts.items():
            unknown = sorted(set(ids) - known)
            if unknown:
                problems.append(Problem(
                    f"fold {k}: {len(unknown)} id(s) in {col} are not in the cohort: {unknown[:10]}"
                    f"{' ...' if len(unknown) > 10 else ''}", file=file, patient=unknown[0], field=col,
                    hint="split files list patient (case) ids of the patient table"))
                bad = True
    if bad:
        return None
    return Fold(index=k, train=tuple(parts["train"]), val=tuple(parts["val"]), test=tuple(parts.get("test", ())))


def _ids_and_events(cohort_or_ids: Cohort | Sequence[str], events: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(cohort_or_ids, Cohort):
        ids = np.asarray(cohort_or_ids.patient_ids, dtype=object)
        if events is None:
            events = cohort_or_ids.patients["event"].to_numpy(bool)
    else:
        ids = np.asarray([str(i) for i in cohort_or_ids], dtype=object)
    if events is None:
        raise InputError("events are needed to stratify the split", field="events")
    if isinstance(events, Mapping):
        ev = np.asarray([events[i] for i in ids])
    else:
        ev = np.asarray(events)
    if ev.ndim != 1 or len(ev) != len(ids):
        raise InputError(f"{len(ids)} patient ids but {len(ev)} stratification labels", field="events")
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1].tolist()[:5]
        raise InputError(f"ids must be unique patient ids (splits are patient level); repeated: {dup}",
                         patient=dup[0], field="patient_id")
    order = np.argsort(ids)  # the result must not depend on the input order
    return ids[order], ev[order]


def _smallest_class(labels: np.ndarray) -> int:
    return int(np.unique(labels, return_counts=True)[1].min()) if len(labels) else 0


def stratified_kfold(
    cohort_or_ids: Cohort | Sequence[str], events: Sequence[Any] | Mapping[str, Any] | None = None,
    k: int = 5, seed: int = 0,
) -> list[Fold]:
    """Patient-level k-fold CV stratified by event status (sklearn ``StratifiedKFold``, shuffled with ``seed``).

    Args:
        cohort_or_ids: a :class:`Cohort` (its patients and, by default, its ``event`` column) or patient ids.
        events: event flags aligned with the ids (or a mapping id -> flag); any discrete labels work (e.g. response
            classes with -1 for unknown), each value being one stratum.
        k: number of folds.
        seed: shuffling seed; the result depends only on the set of (id, label) pairs and the seed.

    Each fold's ``val`` is its held-out part; the ``val`` parts of all folds partition the patients. Falls back to
    an unstratified ``KFold`` (with a logged warning) when a stratum has fewer than ``k`` patients.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    ids, ev = _ids_and_events(cohort_or_ids, events)
    if k < 2:
        raise InputError(f"k must be >= 2, got {k}", field="k")
    if len(ids) < k:
        raise InputError(f"cannot make {k} folds from {len(ids)} patients", field="k", hint="lower k")
    minority = _smallest_class(ev)
    if minority >= k and len(np.unique(ev)) > 1:
        splitter: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(ids, ev)
    else:
        logger.warning("smallest stratum has %d patient(s) (< k=%d) or there is one stratum: folds are not "
                       "stratified", minority, k)
        parts = KFold(n_splits=k, shuffle=True, random_state=seed).split(ids)
    return [Fold(index=i, train=tuple(ids[tr]), val=tuple(ids[va])) for i, (tr, va) in enumerate(parts)]


def validation_split(
    train_ids: Sequence[str], events: Sequence[Any] | Mapping[str, Any], fraction: float, seed: int = 0
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """:func:`inner_split`, or every patient for training and none for validation when ``fraction`` is 0.

    ``training.val_fraction: 0`` means a fixed number of epochs (the last one is kept) and no early stopping: for
    cohorts too small to spare validation patients. Pipelines trained so have no reference cohort for percentiles.
    """
    if fraction == 0:
        return tuple(str(p) for p in train_ids), ()
    return inner_split(train_ids, events, fraction, seed)


def inner_split(
    train_ids: Sequence[str], events: Sequence[Any] | Mapping[str, Any], fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Carve a stratified validation part (``fraction`` of the patients) out of ``train_ids`` for early stopping.

    ``events`` are the stratification labels (event flags or other discrete labels), as in :func:`stratified_kfold`.
    Falls back to an unstratified shuffle split when the strata are too small to stratify.

    Returns:
        (inner train ids, inner validation ids), both non-empty and disjoint.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    if not 0.0 < fraction < 1.0:
        raise InputError(f"fraction must be in (0, 1), got {fraction}", field="fraction")
    ids, ev = _ids_and_events(list(train_ids), events)
    if len(ids) < 2:
        raise InputError(f"need at least 2 patients for an inner split, got {len(ids)}", field="train_ids")
    n_val = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    n_classes = len(np.unique(ev))
    if n_classes > 1 and _smallest_class(ev) >= 2 and min(n_val, len(ids) - n_val) >= n_classes:
        splitter: Any = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
        tr, va = next(splitter.split(ids, ev))
    else:
        tr, va = next(ShuffleSplit(n_splits=1, test_size=n_val, random_state=seed).split(ids))
    return tuple(ids[np.sort(tr)]), tuple(ids[np.sort(va)])


def cohort_folds(cohort: Cohort, k: int = 5, seed: int = 0) -> list[Fold]:
    """The cohort's external folds when it has them (published split files), else stratified k-fold."""
    if cohort.splits:
        if len(cohort.splits) != k:
            logger.warning("the cohort has %d external folds; using them instead of k=%d", len(cohort.splits), k)
        return list(cohort.splits)
    return stratified_kfold(cohort, k=k, seed=seed)
