"""Shared helpers for the benchmarks: results JSON with provenance, machine facts, fp32 matmul peak, RSS sampling.

Every benchmark module has ``bench_config(argv=None) -> dict``: the settings it runs with for the command-line
arguments ``argv`` (``None``: its defaults, what ``make bench`` runs), computed without running anything heavy, and
writes its result with :func:`write_results`, which records that config, its digest and the git commit.
``tests/bench/test_results_provenance.py`` checks the committed results against what their benches would run now.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
#: Tracked folders whose uncommitted changes mark a result ``dirty`` (the results themselves excluded).
SOURCE_DIRS = ("multimodal", "adapters", "cohorts", "bench", "configs")
#: Placeholders recorded for machine-specific paths, so a config's digest is the same on every machine.
SYNTHETIC_MANIFEST = "<synthetic cohort>"
SHARED_DATA = "<shared data>"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
#: configs/demo.yaml as the survival benchmarks run it: one model with the selected epoch's weights.
SURVIVAL_OVERRIDES = ("task=survival", "model.ensemble=1", "training.average_epochs=1")


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


def _git(repo: Path, *args: str) -> str | None:
    """stdout of ``git -C repo ARGS``; ``None`` when git is missing or fails (e.g. not a repository)."""
    try:
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def git_state(repo: Path = REPO) -> dict[str, Any] | None:
    """``{"sha": HEAD, "dirty": uncommitted changes to tracked files under SOURCE_DIRS}``; ``None`` without git."""
    sha = _git(repo, "rev-parse", "HEAD")
    if not sha:
        return None
    status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", *SOURCE_DIRS,
                  ":(exclude)bench/results")
    return {"sha": sha.strip(), "dirty": None if status is None else bool(status.strip())}


def _plain(o: Any) -> Any:
    from multimodal.config import to_dict

    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return to_dict(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not allowed in a bench config: {type(o).__name__}")


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON: the form a config's digest is taken of."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=_plain)


def plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as JSON reads it back (tuples as lists, dataclasses as dicts): what a result file records."""
    return json.loads(canonical_json(config))


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``config``."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def experiment_config(source: Path | Mapping[str, Any], overrides: Iterable[str] = ()) -> dict[str, Any]:
    """An experiment config (a YAML path or a mapping) with ``overrides``, every default filled in, as a plain dict.

    Pass machine-specific paths as the placeholders above (``data.manifest=<synthetic cohort>``,
    ``data.root=<shared data>``) so that the digest does not depend on the machine.
    """
    from multimodal.config import apply_overrides, from_dict, to_dict
    from multimodal.experiment import ExperimentConfig, load_experiment

    if isinstance(source, Mapping):
        return to_dict(apply_overrides(from_dict(ExperimentConfig, source), overrides))
    return to_dict(load_experiment(source, overrides))


def synthetic_settings(**kw: Any) -> dict[str, Any]:
    """Every setting of the synthetic cohort generator (``SyntheticConfig(**kw)``) as a plain dict."""
    from multimodal.cohorts.synthetic import SyntheticConfig
    from multimodal.config import to_dict

    return to_dict(SyntheticConfig(**kw))


def cohort_settings(**kw: Any) -> dict[str, Any]:
    """:func:`synthetic_settings` less ``patients`` and ``seed`` (which the caller records): shared by several cohorts."""
    return {k: v for k, v in synthetic_settings(**kw).items() if k not in ("patients", "seed")}


def survival_study_config(patients: int) -> dict[str, Any]:
    """What :func:`synthetic_survival_study` runs, but for the seed: cohort size and settings, resolved experiment."""
    return {"patients": patients, "cohort_settings": cohort_settings(),
            "experiment": experiment_config(DEMO_CONFIG, [f"data.manifest={SYNTHETIC_MANIFEST}", *SURVIVAL_OVERRIDES])}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def write_results(name: str, data: dict[str, Any], config: Mapping[str, Any], *, merge: bool = False) -> Path:
    """Write ``bench/results/<name>.json`` atomically: ``data`` with its provenance.

    Adds ``commit`` (:func:`git_state`), ``config`` (the settings the bench ran with: its ``bench_config``),
    ``config_digest`` (:func:`config_digest` of ``config``) and ``machine``. By default the file is replaced.
    ``merge=True`` is for a file that several commands write a part of (``fusion_value.json``: one part per
    setting): ``data``'s keys replace those of the file, ``config``'s top-level keys (the parts this command
    ran) replace those of the recorded config, the digest covers the merged config, and ``part_commits`` records the
    commit of each part.
    """
    from multimodal.io import write_json_atomic

    path = RESULTS / f"{name}.json"
    old = _read_json(path) if merge else {}
    cfg = plain_config({**(old.get("config") or {}), **config} if merge else config)
    commit = git_state()
    out = {**old, **data, "commit": commit, "config": cfg, "config_digest": config_digest(cfg), "machine": machine()}
    if merge:
        out["part_commits"] = {**(old.get("part_commits") or {}), **dict.fromkeys(config, commit)}
    return write_json_atomic(path, out)


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
    cfg = load_experiment(DEMO_CONFIG, [f"data.manifest={manifest}", *SURVIVAL_OVERRIDES])
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
