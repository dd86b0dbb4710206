"""Slide-bag reading benchmark: whole-bag read throughput and the memory cost of train-time patch sampling.

Usage::

    python -m bench.bench_slides                 # 100k x 1536 float32 bags; prints JSON
    python -m bench.bench_slides --patches 20000 # smaller

What is measured (file writing is not timed):

* ``slide_read_gb_per_s``: :meth:`SlideBag.read_all` of one 100k x 1536 float32 TRIDENT-style h5 (``features`` +
  ``coords`` with TRIDENT attrs), after a warm-up read has put the file in the page cache; the median of 3 reads,
  each into a fresh buffer, chunked as at inference (``inference_chunk`` rows per read, straight into the output).
  The file is written with row-block chunks of ``CHUNK_ROWS`` full rows (contiguous rows per chunk; reads bypass the
  HDF5 chunk cache). Target >= 1 GB/s.
* ``slide_transform_gb_per_s``: the same bag through ``PathologyAdapter.transform(train=False)`` (adds coords, grid
  positions and the per-token names).
* ``slide_read_trident_layout_gb_per_s``: the same read on TRIDENT's own layout (one row per chunk, as its
  incremental writer produces), for comparison; ``slide_trident_index_seconds`` is the one-time cost (per file and
  process) of indexing its chunks' byte offsets for the raw read path.
* ``slide_sample_rss_growth_mb``: RSS growth of a fresh subprocess while ``transform(train=True)`` samples 4096
  patches from a patient with three such slides (peak sampled with psutil in a background thread, and the
  ``resource.getrusage`` high-water mark), relative to the RSS just before the call. Target < 100 MB (the sampled
  stream itself is 4096 x 1536 x 4 B = 25 MB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

CHUNK_ROWS = 256
N_PATCHES = 100_000
DIM = 1536
SAMPLE = 4096
SLIDES = 3  # slides of the sampled patient
READ_CHUNK = 16384  # rows per read in read_all, as at inference


def write_bag(path: Path, n: int, dim: int, *, seed: int, row_chunks: bool = False) -> Path:
    """A TRIDENT-style features h5 written block by block (never the whole bag in memory)."""
    rng = np.random.default_rng(seed)
    chunks = (1, dim) if row_chunks else (min(CHUNK_ROWS, max(n, 1)), dim)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("features", shape=(n, dim), dtype=np.float32, chunks=chunks)
        ds.attrs["encoder"] = "uni_v2"
        i = np.arange(n, dtype=np.int64)
        side = int(np.ceil(np.sqrt(n)))
        c = f.create_dataset("coords", data=np.stack([i % side, i // side], 1) * 512,
                             chunks=(1, 2) if row_chunks else None)
        c.attrs.update({"patch_size": 256, "patch_size_level0": 512, "level0_magnification": 40,
                        "target_magnification": 20, "overlap": 0})
        block = 8192
        for s in range(0, n, block):
            e = min(s + block, n)
            ds[s:e] = rng.standard_normal((e - s, dim), dtype=np.float32)
    return path


def _warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def _median_read(fn: Any, nbytes: int, reps: int = 3) -> float:
    fn()  # warm-up (page cache, allocator)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        del out
    return nbytes / statistics.median(times) / 1e9


_CHILD = r"""
import json, resource, sys, threading, time, warnings
import numpy as np, pandas as pd, psutil
from multimodal.adapters.pathology import PathologyAdapter
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import SlideRef, SlideSource
args = json.loads(sys.argv[1])
refs = tuple(SlideRef("P", f"s{i}", p, "trident") for i, p in enumerate(args["paths"]))
co = Cohort(name="bench", patients=pd.DataFrame({"time": [1.0], "event": [True]}, index=["P"]),
            modalities={"pathology": SlideSource(slides={"P": refs})})
a = PathologyAdapter(max_patches=args["sample"]).fit(co, ["P"])
a.transform("P", train=True, seed=123)  # first call: imports, caches (not measured)
proc = psutil.Process()
base = proc.memory_info().rss
hw0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
peak = [base]
stop = threading.Event()
def watch():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.002)
th = threading.Thread(target=watch, daemon=True); th.start()
t = time.perf_counter()
s = a.transform("P", train=True, seed=7)
dt = time.perf_counter() - t
stop.set(); th.join()
after = proc.memory_info().rss
hw1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"tokens": s.num_tokens, "seconds": dt, "base_mb": base / 2**20,
                  "growth_mb": (max(peak[0], after) - base) / 2**20, "after_growth_mb": (after - base) / 2**20,
                  "highwater_growth_mb": max(hw1 - max(hw0, base), 0) / 2**20}))
"""


def run(n: int = N_PATCHES, dim: int = DIM, *, sample: int = SAMPLE, trident_layout: bool = True) -> dict[str, Any]:
    """Write the bags in a temporary folder, measure, clean up; return the figures."""
    from multimodal.adapters.pathology import PathologyAdapter
    from multimodal.adapters.slide_io import open_slide
    from multimodal.cohorts.cohort import Cohort
    from multimodal.cohorts.sources import SlideRef, SlideSource

    res: dict[str, Any] = {"slide_patches": n, "slide_dim": dim, "slide_chunk_rows": CHUNK_ROWS}
    with tempfile.TemporaryDirectory(prefix="bench_slides_") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        paths = [write_bag(root / f"s{i}.h5", n, dim, seed=i) for i in range(SLIDES)]
        res["slide_write_seconds"] = round(time.perf_counter() - t, 2)
        nbytes = n * dim * 4
        for p in paths:
            _warm(p)
        bag = open_slide(paths[0])
        res["slide_read_gb_per_s"] = round(_median_read(lambda: bag.read_all(READ_CHUNK), nbytes), 3)

        co = Cohort(name="bench", patients=pd_frame(), modalities={
            "pathology": SlideSource(slides={"P": (SlideRef("P", "s0", paths[0], "trident"),)})})
        ad = PathologyAdapter().fit(co, ["P"])
        res["slide_transform_gb_per_s"] = round(_median_read(lambda: ad.transform("P"), nbytes), 3)

        child = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps({"paths": [str(p) for p in paths], "sample": sample})],
            capture_output=True, text=True, check=True,
        )
        out = json.loads(child.stdout.strip().splitlines()[-1])
        res["slide_sample_tokens"] = out["tokens"]
        res["slide_sample_seconds"] = round(out["seconds"], 4)
        res["slide_sample_rss_growth_mb"] = round(max(out["growth_mb"], out["highwater_growth_mb"]), 1)
        res["slide_sample_rss_retained_mb"] = round(out["after_growth_mb"], 1)

        if trident_layout:
            for p in paths:
                p.unlink()
            tp = write_bag(root / "trident_rows.h5", n, dim, seed=9, row_chunks=True)
            _warm(tp)
            tbag = open_slide(tp)
            t = time.perf_counter()
            tbag.read(np.arange(0, n, max(n // 16, 1)))  # first session: builds the per-file raw offset index
            res["slide_trident_index_seconds"] = round(time.perf_counter() - t, 3)
            res["slide_read_trident_layout_gb_per_s"] = round(_median_read(lambda: tbag.read_all(READ_CHUNK), nbytes), 3)
    res["targets"] = {"slide_read_gb_per_s": ">= 1.0", "slide_sample_rss_growth_mb": "< 100"}
    return res


def pd_frame() -> Any:
    import pandas as pd

    return pd.DataFrame({"time": [1.0], "event": [True]}, index=["P"])


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=N_PATCHES)
    ap.add_argument("--dim", type=int, default=DIM)
    ap.add_argument("--sample", type=int, default=SAMPLE)
    ap.add_argument("--no-trident-layout", action="store_true", help="skip the one-row-per-chunk comparison")
    return ap


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """The bag sizes and read settings of a run with ``argv`` (``None``: the defaults); nothing is written."""
    a = _parser().parse_args(argv or [])
    return {"patches": a.patches, "dim": a.dim, "sample": a.sample, "trident_layout": not a.no_trident_layout,
            "slides": SLIDES, "chunk_rows": CHUNK_ROWS, "read_chunk": READ_CHUNK}


def main(argv: list[str] | None = None) -> None:
    a = _parser().parse_args(argv)
    print(json.dumps(run(a.patches, a.dim, sample=a.sample, trident_layout=not a.no_trident_layout), indent=2))


if __name__ == "__main__":
    main()
