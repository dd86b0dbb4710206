"""Experiment tracking (``training.log_with: tensorboard | mlflow``) through Accelerate's trackers.

Each training (one ensemble member of one model) is one tracker run; its per-epoch metrics (``train_loss``,
``val_score`` and, when selecting on the loss, ``val_loss``) are logged at step = epoch, on the main process only.
Runs are named by where they happen: a study names them ``fold_<k>/<method>/member_<m>`` under ``<run folder>/logs``
(:func:`tracking_run`), ``multimodal train`` ``train/member_<m>`` under ``<pipeline folder>_logs``; without a
surrounding :func:`tracking_run`, ``train/member_<m>`` under ``./multimodal_logs``.

TensorBoard: ``tensorboard --logdir RUN/logs``. MLflow: runs of the experiment ``multimodal`` in the local store
``RUN/logs`` (``mlflow ui --backend-store-uri RUN/logs``). Either needs its package (``pip install tensorboard`` /
``pip install mlflow``); a missing one is a configuration error before any training.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multimodal.errors import ConfigError

DEFAULT_DIR = Path("multimodal_logs")
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


@dataclass
class _Run:
    log_dir: Path
    name: str
    members: int = field(default=0)


_CURRENT: ContextVar[_Run | None] = ContextVar("multimodal_tracking_run", default=None)


@contextlib.contextmanager
def tracking_run(name: str, log_dir: str | Path | None = None) -> Iterator[None]:
    """Trainings inside are logged as ``<outer name>/<name>/member_<m>`` under ``log_dir`` (default: the outer
    run's folder, else ``./multimodal_logs``)."""
    outer = _CURRENT.get()
    base = Path(log_dir) if log_dir is not None else (outer.log_dir if outer is not None else DEFAULT_DIR)
    full = "/".join(p for p in ((outer.name if outer is not None and log_dir is None else ""), name) if p)
    token = _CURRENT.set(_Run(base, full))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def check_tracker(log_with: str) -> None:
    """ConfigError naming ``training.log_with`` when the tracker's package is not installed."""
    pkg = _PACKAGES.get(log_with)
    if pkg is not None and importlib.util.find_spec(pkg) is None:
        raise ConfigError(f"{log_with} is not installed", field="training.log_with",
                          hint=f"pip install {pkg}, or set training.log_with: none")


def start_tracker(log_with: str, hparams: dict[str, Any] | None = None) -> Any | None:
    """A started Accelerate tracker for one training (None for ``none``); call it on the main process only."""
    if log_with == "none":
        return None
    check_tracker(log_with)
    run = _CURRENT.get() or _Run(DEFAULT_DIR, "train")
    name = f"{run.name or 'train'}/member_{run.members}"
    run.members += 1
    run.log_dir.mkdir(parents=True, exist_ok=True)
    if log_with == "tensorboard":
        from accelerate.tracking import TensorBoardTracker

        tracker = TensorBoardTracker(name, run.log_dir)
    else:
        from accelerate.tracking import MLflowTracker

        tracker = MLflowTracker(experiment_name="multimodal", logging_dir=str(run.log_dir), run_name=name)
    tracker.start()
    if hparams:
        tracker.store_init_configuration({k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str))})
    return tracker


def epoch_metrics(rec: dict[str, Any]) -> dict[str, float]:
    """The numbers of one epoch record worth a curve."""
    return {k: float(v) for k, v in rec.items() if k != "epoch" and isinstance(v, (int, float)) and v == v}
