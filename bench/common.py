"""Shared helpers for the benchmarks: results JSON, machine facts, fp32 matmul peak, RSS sampling."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "processor": platform.processor(),
    }


def matmul_peak_gflops(n: int = 2048, reps: int = 8) -> float:
    """Best-of-3 fp32 GEMM throughput (GFLOP/s) at the current thread count: the machine's practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        dt = time.perf_counter() - t
        best = max(best, 2 * n**3 * reps / dt / 1e9)
    return best


class PeakRSS:
    """Sample this process's RSS in a background thread; ``.peak_mb`` after the block."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.proc = psutil.Process()
        self.start_mb = 0.0
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.start_mb = self.proc.memory_info().rss / 2**20
        self.peak_mb = self.start_mb
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self.proc.memory_info().rss / 2**20)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak_mb = max(self.peak_mb, self.proc.memory_info().rss / 2**20)


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Merge ``data`` into ``bench/results/<name>.json`` (atomic)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
    old.update(data)
    old["machine"] = machine()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(old, indent=2) + "\n")
    tmp.replace(path)
    return path


def synthetic_survival_study(folder: Path, patients: int, seed: int) -> tuple[Path, dict[str, Any], Any]:
    """The survival benchmark's synthetic cohort written under ``folder``: (manifest, ground truth, Study).

    ``configs/demo.yaml`` with ``task=survival`` and one model with the selected epoch's weights
    (``model.ensemble=1``, ``training.average_epochs=1``: the figures are those of one training, as before both
    existed); ``Study.folds()`` gives the folds ``bench.train`` and ``bench.ceiling`` share.
    """
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort, load_ground_truth
    from multimodal.experiment import load_experiment
    from multimodal.study import Study

    manifest = generate_synthetic_cohort(folder / "cohort", SyntheticConfig(patients=patients, seed=seed))
    repo = Path(__file__).resolve().parents[1]
    cfg = load_experiment(repo / "configs" / "demo.yaml", [f"data.manifest={manifest}", "task=survival",
                                                                 "model.ensemble=1", "training.average_epochs=1"])
    return manifest, load_ground_truth(manifest), Study(cfg)


def fit_fold(st: Any, fold: Any) -> tuple[Any, Any, list[str]]:
    """Our model on one fold of ``Study`` ``st`` exactly as ``multimodal cv`` fits it: (pipeline, fit result, test ids).

    The inner validation split (``training.val_fraction``, seeded by the fold) is carved from the training fold.
    """
    from multimodal.cohorts.splits import validation_split
    from multimodal.experiment import make_adapters
    from multimodal.pipeline import Pipeline

    cfg, c = st.config, st.cohort
    train = list(fold.train)
    itr, iva = validation_split(train, st._stratify_labels(train), cfg.training.val_fraction, cfg.seed + fold.index)
    pipe, fit = Pipeline.fit(c, itr, val_ids=iva, adapters=make_adapters(cfg), model_config=cfg.model,
                             training=cfg.training, task=cfg.task, seed=cfg.seed + fold.index)
    return pipe, fit, list(fold.val)
