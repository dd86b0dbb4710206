"""EHR tokenization benchmark: a synthetic 10M-event MEDS 0.4 dataset tokenized end to end.

Usage::

    python bench/bench_ehr.py                      # 50k subjects, 10M events; prints JSON
    python bench/bench_ehr.py --subjects 5000 --events 1000000 --out bench_ehr.json

What is timed (generation is not): ``EHRAdapter.fit`` on all subjects (footer checks of every shard, one polars plan
-- scan, join prediction times, leakage filter, code table, sort, collect -- then vocabulary, per-code statistics and
the flat token arrays in numpy) and then every patient's tokens taken out with :meth:`EHRAdapter.transform_batch`
(padded batches of 256, the bulk equivalent of ``transform`` + ``collate_streams``): ``ehr_events_per_s`` = dataset
rows / that time. ``transform`` itself (one patient, with token names) is timed over every patient too and reported as
``transform_us_per_patient`` and ``ehr_events_per_s_with_per_patient_transform``. The work runs in a fresh subprocess
with 2 polars/torch threads; its peak RSS is ``resource.getrusage`` ``ru_maxrss`` and a psutil background sampler.
CPU seconds are reported too (``ehr_events_per_cpu_s``): wall time depends on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

N_CODES = 4000
N_STATIC = 3
N_SHARDS = 20
SEED = 0
THREADS = 2  # polars / torch threads of the timed subprocess
TRANSFORM_BATCH = 256
US_PER_DAY = 86_400_000_000


def generate(
    root: Path, *, n_subjects: int = 50_000, n_events: int = 10_000_000, n_shards: int = N_SHARDS, seed: int = SEED
) -> pd.DataFrame:
    """Write a MEDS 0.4 directory ``root/data/{train,tuning,held_out}/<k>.parquet`` and return the patient table.

    ``n_events`` counts every row, static rows included (``N_STATIC`` per subject). Rows are sorted by (subject, time)
    within each shard as MEDS requires. Each patient's prediction time is the time of its event at 80% of its history,
    so about a fifth of the dynamic events lie after it and must be dropped by the leakage guard.
    """
    rng = np.random.default_rng(seed)
    n_dyn_total = n_events - N_STATIC * n_subjects
    if n_dyn_total < n_subjects:
        msg = f"n_events={n_events} too small for {n_subjects} subjects"
        raise ValueError(msg)
    weights = rng.gamma(2.0, 1.0, size=n_subjects)
    counts = 1 + rng.multinomial(n_dyn_total - n_subjects, weights / weights.sum())  # >= 1 dynamic event each
    subject_ids = np.sort(rng.choice(10**9, size=n_subjects, replace=False)).astype(np.int64) + 1

    codes = np.array(
        [f"LAB//{i:05d}//mg/dL" for i in range(N_CODES // 2)] + [f"DX//ICD10//C{i:05d}" for i in range(N_CODES // 2)]
    )
    p = 1.0 / np.arange(1, N_CODES + 1) ** 1.1
    p /= p.sum()
    perm = rng.permutation(N_CODES)  # mix labs and diagnoses across frequency ranks
    code_idx = perm[rng.choice(N_CODES, size=n_dyn_total, p=p)].astype(np.int32)
    is_lab = code_idx < N_CODES // 2
    lab_mean = rng.uniform(1, 200, size=N_CODES).astype(np.float32)
    values = np.where(is_lab, lab_mean[code_idx] * rng.lognormal(0, 0.3, size=n_dyn_total).astype(np.float32), np.nan)

    start = rng.integers(pd.Timestamp("2005-01-01").value // 1000, pd.Timestamp("2015-01-01").value // 1000, n_subjects)
    gaps = rng.exponential(5 * 365 * US_PER_DAY / 200, size=n_dyn_total).astype(np.int64)
    subj_of_event = np.repeat(np.arange(n_subjects), counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    csum = np.cumsum(gaps)
    base = np.repeat(csum[offsets[:-1]] - gaps[offsets[:-1]], counts)
    times = start[subj_of_event] + (csum - base)
    pt_pos = offsets[:-1] + (0.8 * (counts - 1)).astype(np.int64)
    prediction_time = times[pt_pos]

    # static rows: sex, a race code and a height measurement (null time)
    sex = np.where(rng.random(n_subjects) < 0.5, "GENDER//F", "GENDER//M")
    race = np.array([f"RACE//{k}" for k in "ABCDE"])[rng.integers(0, 5, n_subjects)]
    height = rng.normal(170, 10, n_subjects).astype(np.float32)

    shard_of_subject = np.arange(n_subjects) * n_shards // n_subjects
    splits = ["train"] * (n_shards - 4) + ["tuning"] * 2 + ["held_out"] * 2
    for shard in range(n_shards):
        subj = np.flatnonzero(shard_of_subject == shard)
        lo, hi = offsets[subj[0]], offsets[subj[-1] + 1]
        n_s, n_d = len(subj), int(hi - lo)
        # static rows first per subject, then its events (already in time order)
        order_key = np.concatenate([np.repeat(subj, N_STATIC) * 2, subj_of_event[lo:hi] * 2 + 1])
        order = np.argsort(order_key, kind="stable")
        sid = np.concatenate([np.repeat(subject_ids[subj], N_STATIC), subject_ids[subj_of_event[lo:hi]]])[order]
        t = np.concatenate([np.zeros(N_STATIC * n_s, dtype=np.int64), times[lo:hi]])[order]
        t_null = np.concatenate([np.ones(N_STATIC * n_s, dtype=bool), np.zeros(n_d, dtype=bool)])[order]
        static_codes = np.stack([sex[subj], race[subj], np.full(n_s, "HEIGHT")], axis=1).ravel()
        code = np.concatenate([static_codes, codes[code_idx[lo:hi]]])[order]
        static_vals = np.stack([np.full(n_s, np.nan), np.full(n_s, np.nan), height[subj]], axis=1).ravel()
        val = np.concatenate([static_vals, values[lo:hi]]).astype(np.float32)[order]
        table = pa.table(
            {
                "subject_id": pa.array(sid, pa.int64()),
                "time": pa.array(t, pa.timestamp("us"), mask=t_null),
                "code": pa.array(code, pa.string()),
                "numeric_value": pa.array(val, pa.float32(), mask=np.isnan(val)),
            }
        )
        out = root / "data" / splits[shard] / f"{shard}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out, row_group_size=128_000)
    patients = pd.DataFrame(
        {
            "time": rng.exponential(1000, n_subjects),
            "event": rng.random(n_subjects) < 0.3,
            "prediction_time": pd.to_datetime(prediction_time, unit="us").astype("datetime64[us]"),
            "subject_id": subject_ids,
        },
        index=pd.Index([f"P{i:06d}" for i in range(n_subjects)], name="patient_id"),
    )
    patients.to_parquet(root / "patients.parquet")
    return patients


def _rss_sampler(stop: threading.Event, peak: list[int], interval: float = 0.02) -> None:
    try:
        import psutil
    except ImportError:  # ru_maxrss still measures the peak
        return
    proc = psutil.Process()
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        stop.wait(interval)


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _worker(root: Path, transform_all: bool) -> dict[str, Any]:
    """The timed part, run in a fresh process so that its peak RSS is its own."""
    import torch

    from multimodal.adapters.ehr import EHRAdapter
    from multimodal.cohorts import Cohort, MedsSource

    torch.set_num_threads(THREADS)
    patients = pd.read_parquet(root / "patients.parquet")
    mapping = dict(zip(patients.index, patients["subject_id"].astype(int), strict=True))
    source = MedsSource(root=root, subject_ids=mapping)
    cohort = Cohort(name="bench", patients=patients.drop(columns=["subject_id"]), modalities={"ehr": source})
    ids = list(cohort.patients.index)
    n_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (root / "data").rglob("*.parquet"))

    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=_rss_sampler, args=(stop, peak), daemon=True)
    sampler.start()
    c0, t0 = _cpu_s(), time.perf_counter()
    adapter = EHRAdapter().fit(cohort, ids)
    c1, t1 = _cpu_s(), time.perf_counter()
    n_tokens = 0
    for i in range(0, len(ids), TRANSFORM_BATCH):
        # numpy, not a torch reduction: idle OpenMP threads would spin against polars on 2 cores
        n_tokens += int(adapter.transform_batch(ids[i : i + TRANSFORM_BATCH]).mask.numpy().sum())
    c2, t2 = _cpu_s(), time.perf_counter()
    t_fit, t_batch = t1 - t0, t2 - t1
    t0 = time.perf_counter()
    sample = ids if transform_all else ids[: min(len(ids), 5000)]
    for pid in sample:
        adapter.transform(pid)
    t_each = time.perf_counter() - t0
    stop.set()
    sampler.join()
    tok = adapter.tokens
    assert tok is not None and n_tokens == len(tok.codes)
    per_patient_s = t_each / len(sample)
    return {
        "ehr_events_per_s": n_rows / (t_fit + t_batch),
        "ehr_peak_rss_mb": max(peak[0] / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "ehr_events_per_s_with_per_patient_transform": n_rows / (t_fit + per_patient_s * len(ids)),
        "n_events": n_rows,
        "n_subjects": len(ids),
        "n_usable_events": int(tok.n_usable.sum()),
        "n_tokens": n_tokens,
        "vocab_size": adapter.stream_spec().vocab_size,
        "ehr_events_per_cpu_s": n_rows / (c2 - c0),
        "fit_s": t_fit,
        "fit_cpu_s": c1 - c0,
        "transform_batch_all_cpu_s": c2 - c1,
        "load_average_1min": os.getloadavg()[0],
        "transform_batch_all_s": t_batch,
        "transform_us_per_patient": per_patient_s * 1e6,
        "transform_patients_timed": len(sample),
        "peak_rss_sampled_mb": peak[0] / 2**20,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(n_subjects: int = 50_000, n_events: int = 10_000_000, *, transform_all: bool = True,
        workdir: str | None = None) -> dict[str, Any]:
    """Generate the dataset (untimed), then time fit + tokens of every patient in a fresh 2-thread subprocess."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="bench_ehr_") as tmp:
        root = Path(tmp) / "meds"
        t0 = time.perf_counter()
        generate(root, n_subjects=n_subjects, n_events=n_events)
        gen_s = time.perf_counter() - t0
        env = dict(os.environ, POLARS_MAX_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
                   MKL_NUM_THREADS=str(THREADS))
        cmd = [sys.executable, __file__, "--worker", str(root)] + ([] if transform_all else ["--sample-transform"])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = f"benchmark worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
            raise RuntimeError(msg)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    import polars as pl

    result.update(
        generate_s=gen_s, polars_threads=THREADS, polars_version=pl.__version__, cpu_count=os.cpu_count(),
        target_events_per_s=1_000_000, target_peak_rss_mb=4096,
        meets_target=result["ehr_events_per_s"] >= 1e6 and result["ehr_peak_rss_mb"] < 4096,
    )
    return result


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--sample-transform", action="store_true", help="time transform() on 5000 patients only")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    return ap


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """The dataset and timing settings of a run with ``argv`` (``None``: the defaults); nothing is generated."""
    a = _parser().parse_args(argv or [])
    return {"n_subjects": a.subjects, "n_events": a.events, "transform_all": not a.sample_transform,
            "n_shards": N_SHARDS, "seed": SEED, "n_codes": N_CODES, "n_static": N_STATIC, "threads": THREADS,
            "transform_batch": TRANSFORM_BATCH}


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(args.worker, not args.sample_transform)))
        return
    result = run(args.subjects, args.events, transform_all=not args.sample_transform)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
