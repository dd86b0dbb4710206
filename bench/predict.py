"""``multimodal predict`` under load: 10k synthetic patients streamed to parquet, with flat memory (issue #6).

A tiny pipeline is trained on a small synthetic cohort, then :func:`multimodal.api.predict_to_parquet` predicts a
10k-patient cohort of the same generative model (small per-patient sizes: one slide of 16 patches, 40 genes, MEDS
events, clinical table) chunk by chunk. A background thread samples this process's RSS; ``rss_growth_pct`` compares
the RSS after warm-up (the largest sample in 10-20 % of the run) with the RSS at the end (the largest sample in the
last 10 %). Flat memory means growth near 0 %.

Writes ``bench/results/predict.json``: patients_per_s, rss_growth_pct, peak/warm/end RSS, timings, settings.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
import yaml

from bench.common import SYNTHETIC_MANIFEST, cohort_settings, experiment_config, write_results

EXPERIMENT = {
    "name": "bench-predict", "seed": 0, "task": "both",
    "data": {"layout": "manifest", "manifest": None},
    "adapters": {"pathology": {"max_patches": 16}, "genomics": {"tokens": "pathways", "gene_sets": "omics/pathways.gmt"},
                 "ehr": {"max_events": 32}, "clinical": {}},
    "model": {"d_model": 32, "depth": 1, "num_heads": 2, "num_latents": 4, "num_bins": 4},
    "training": {"epochs": 1, "batch_size": 16, "progress": False},
}
#: Per-patient sizes of both cohorts (the 10k predicted, seed 1; the small training one, seed 0).
COHORT = {"patches_per_slide": 16, "patches_per_slide_sigma": 0.0, "slides_per_patient": (1, 1), "embed_dim": 8,
          "n_genes": 40, "n_pathways": 4}
SEEDS = {"predict": 1, "train": 0}
TRAIN_PATIENTS, BATCH_SIZE, THREADS = 200, 32, 1


class RSSTrace:
    """RSS samples (seconds since start, MiB) taken by a background thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._proc = psutil.Process()
        self._stop = threading.Event()

    def __enter__(self) -> RSSTrace:
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._t0, self._proc.memory_info().rss / 2**20))
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter() - self._t0, self._proc.memory_info().rss / 2**20))

    def window_max(self, lo: float, hi: float) -> float:
        end = self.samples[-1][0]
        vals = [r for t, r in self.samples if lo * end <= t <= hi * end]
        return max(vals) if vals else self.samples[-1][1]


def _cohort(out: Path, patients: int, seed: int) -> Path:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    return generate_synthetic_cohort(out, SyntheticConfig(patients=patients, seed=seed, **COHORT))


def run(patients: int = 10_000, train_patients: int = TRAIN_PATIENTS, batch_size: int = BATCH_SIZE, chunk: int = 512,
        threads: int = THREADS) -> dict[str, Any]:
    """Generate, train, predict; return the figures."""
    from multimodal.api import predict_to_parquet, train_pipeline

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        big = _cohort(d / "big", patients, seed=SEEDS["predict"])
        gen_s = time.perf_counter() - t
        small = _cohort(d / "small", train_patients, seed=SEEDS["train"])
        exp = dict(EXPERIMENT, data={"layout": "manifest", "manifest": str(small)})
        (d / "exp.yaml").write_text(yaml.safe_dump(exp))
        t = time.perf_counter()
        pipe = train_pipeline(d / "exp.yaml", d / "pipeline")
        train_s = time.perf_counter() - t
        gc.collect()
        out = d / "preds.parquet"
        with RSSTrace() as trace:
            t = time.perf_counter()
            n = predict_to_parquet(pipe, big, out, batch_size=batch_size, chunk=chunk)
            predict_s = time.perf_counter() - t
        import pyarrow.parquet as pq

        rows = pq.read_metadata(out).num_rows
    warm, end = trace.window_max(0.10, 0.20), trace.window_max(0.90, 1.0)
    return {
        "patients": n,
        "rows_written": rows,
        "patients_per_s": n / predict_s,
        "predict_s": predict_s,
        "rss_warm_mb": warm,
        "rss_end_mb": end,
        "rss_peak_mb": max(r for _, r in trace.samples),
        "rss_growth_pct": 100.0 * (end - warm) / warm,
        "rss_by_tenth_mb": [round(trace.window_max(i / 10, (i + 1) / 10), 1) for i in range(10)],
        "rss_samples": len(trace.samples),
        "generate_s": gen_s,
        "train_s": train_s,
        "settings": {"batch_size": batch_size, "chunk": chunk, "threads": threads, "train_patients": train_patients,
                     "patches_per_patient": 16, "embed_dim": 8, "genes": 40},
    }


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--chunk", type=int, default=512)
    return ap


def _part(patients: int) -> str:
    return "predict_10k" if patients == 10_000 else f"predict_{patients}"


def _config(a: argparse.Namespace) -> dict[str, Any]:
    return {_part(a.patients): {
        "patients": a.patients, "chunk": a.chunk, "train_patients": TRAIN_PATIENTS, "batch_size": BATCH_SIZE,
        "threads": THREADS, "cohort_seeds": SEEDS,
        "cohort_settings": cohort_settings(**COHORT),
        "experiment": experiment_config({**EXPERIMENT, "data": {"layout": "manifest", "manifest": SYNTHETIC_MANIFEST}}),
    }}


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """The part of predict.json that ``python -m bench.predict ARGV`` writes (``None``: ``predict_10k``)."""
    return _config(_parser().parse_args(argv or []))


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    config = _config(args)
    res = run(args.patients, chunk=args.chunk)
    print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in res.items()})
    write_results("predict", {_part(args.patients): res}, config, merge=True)


if __name__ == "__main__":
    main()
