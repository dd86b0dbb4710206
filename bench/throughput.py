"""Speed and memory of the fusion model against the physical bound of its patch path (issue #24).

The only per-patch work whose cost must grow with the bag is the 1024 → d_model projection; everything else per patch
is folded, cached or streamed. So the bench times, in one process and interleaved round by round (other processes
share the machine: ratios taken within a round are what is comparable), the projection matmuls alone at the same
shapes (forward; forward + weight gradient) and our training step / inference, and reports the ratios:

* ``train_step_over_projection``: one training step (forward, backward, AdamW) at N=4096 patches of dim 1024,
  batch 8, d_model 256, over the projection's forward + weight gradient (median of the rounds' ratios, ``_min`` the
  least disturbed round; target <= 1.5);
* ``infer_64k_over_projection``: inference of one 64,000-patch patient over the projection's forward (target <= 1.3);
  ``infer_64k_seconds`` its median time;
* peak RSS by N (1k ... 256k patches), each N in a fresh process: ``infer_64k_peak_rss_mb`` (the whole process) and
  ``infer_rss_growth_256k_over_16k`` (growth during the forward, 256k over 16k: ~1 when inference streams);
* ``profile``: torch.profiler's top operators of one training step with their share of its CPU time
  (``profile_before``: the same profile of the code before issue #24, carried over from the results file).

``--device cuda`` runs the GPU path instead (bf16 autocast, pinned-memory batches from DataLoader workers, with and
without ``torch.compile``) and writes ``throughput_cuda.json``: patients/s, GPU utilization and the share of time the
loader makes the GPU wait. Without a CUDA device it stops with exit code 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bench import common
from bench.common import PeakRSS

Tensor = torch.Tensor

D_IN = 1024
D_MODEL = 256
THREADS = 2
TRAIN = {"patches": 4096, "batch": 8, "rounds": 5, "warmup_steps": 2, "lr": 1e-4, "seed": 0}
INFERENCE = {"patches": 64_000, "rounds": 5}
RSS_PATCHES = (1_000, 4_000, 16_000, 64_000, 256_000)
RSS_REPEATS = 3
PROFILE_TOP = 12
PROFILE_STEPS = 3
CUDA = {"patients": 512, "batch": 64, "patches": 4096, "steps": 20, "warmup_steps": 3, "workers": 4,
        "precision": "bf16-autocast"}


def _model_config(**kw: Any) -> Any:
    from multimodal.model import MultimodalConfig

    return MultimodalConfig(
        streams=[{"modality": "pathology", "kind": "patches", "feature_dim": D_IN}], d_model=D_MODEL, num_heads=8,
        num_latents=16, depth=2, bin_edges=[1.0, 2.0, 3.0], dropout=0.0, **kw,
    )


def _model() -> Any:
    from multimodal.model import MultimodalModel

    return MultimodalModel(_model_config())


def _batch(b: int, n: int, device: str = "cpu") -> Any:
    from multimodal.types import Batch, SurvivalTarget, TokenStream

    return Batch(
        streams={"pathology": TokenStream(
            "pathology", torch.ones(b, n, dtype=torch.bool, device=device),
            features=torch.randn(b, n, D_IN, device=device),
            positions=torch.randint(0, 200, (b, n, 2), device=device).float(),
            slide_index=torch.zeros(b, n, dtype=torch.long, device=device))},
        patient_ids=tuple(str(i) for i in range(b)),
        survival=SurvivalTarget(torch.rand(b, device=device) * 4, torch.ones(b, dtype=torch.bool, device=device)),
    )


def _seconds(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _summary(ours: list[float], bound: list[float]) -> dict[str, Any]:
    ratios = [a / b for a, b in zip(ours, bound, strict=True)]
    return {"ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratios": ratios, "seconds": ours,
            "projection_seconds": bound}


def training_vs_projection() -> dict[str, Any]:
    """Training step and projection forward + weight gradient, interleaved round by round."""
    torch.manual_seed(TRAIN["seed"])
    m = _model().train()
    opt = torch.optim.AdamW(m.parameters(), TRAIN["lr"])
    b = _batch(TRAIN["batch"], TRAIN["patches"])
    feats = b.streams["pathology"].features.reshape(-1, D_IN)
    w = torch.randn(D_MODEL, D_IN, requires_grad=True)
    bias = torch.zeros(D_MODEL, requires_grad=True)
    grad = torch.randn(feats.shape[0], D_MODEL)

    def step() -> None:
        m(b).loss.backward()
        opt.step()
        opt.zero_grad()

    def projection() -> None:  # the same GEMMs our step runs for the patches: forward and weight gradient
        F.linear(feats, w, bias).backward(grad)
        w.grad = bias.grad = None

    for _ in range(TRAIN["warmup_steps"]):
        step()
        projection()
    ours, bound = [], []
    for _ in range(TRAIN["rounds"]):
        bound.append(_seconds(projection))
        ours.append(_seconds(step))
    res = _summary(ours, bound)
    res["patients_per_s"] = TRAIN["batch"] / statistics.median(ours)
    return res


@torch.no_grad()
def inference_vs_projection() -> dict[str, Any]:
    """Inference of one patient of ``INFERENCE['patches']`` patches and the projection forward, interleaved."""
    torch.manual_seed(TRAIN["seed"])
    m = _model().eval()
    b = _batch(1, INFERENCE["patches"])
    feats = b.streams["pathology"].features.reshape(-1, D_IN)
    proj = m.encoders["pathology"].proj
    m(b)
    proj(feats)
    ours, bound = [], []
    for _ in range(INFERENCE["rounds"]):
        bound.append(_seconds(lambda: proj(feats)))
        ours.append(_seconds(lambda: m(b)))
    return _summary(ours, bound)


@torch.no_grad()
def _rss_child(n: int) -> dict[str, float]:
    """In a fresh process: RSS before / at the peak of one inference of an ``n``-patch patient (input in memory)."""
    torch.set_num_threads(THREADS)
    m = _model().eval()
    b = _batch(1, n)
    m(_batch(1, 1000))  # warm the allocator and kernels at a small size
    gc.collect()
    with PeakRSS() as rss:
        m(b)
    input_mb = n * D_IN * 4 / 2**20
    return {"start_mb": rss.start_mb, "peak_mb": rss.peak_mb, "growth_mb": rss.peak_mb - rss.start_mb,
            "input_mb": input_mb}


def rss_by_patches() -> dict[str, dict[str, Any]]:
    """Per N, ``RSS_REPEATS`` fresh processes (the allocator's reuse of freed chunks makes one sample noisy by
    ~20 MB): every sample, and the median growth and peak."""
    out = {}
    for n in RSS_PATCHES:
        runs = []
        for _ in range(RSS_REPEATS):
            r = subprocess.run([sys.executable, "-m", "bench.throughput", "--rss-child", str(n)], capture_output=True,
                               text=True, check=True, cwd=Path(__file__).resolve().parents[1])
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        out[str(n)] = {"growth_mb": statistics.median(r["growth_mb"] for r in runs),
                       "peak_mb": statistics.median(r["peak_mb"] for r in runs), "runs": runs}
    return out


def profile_train_step(top: int = PROFILE_TOP) -> dict[str, Any]:
    """torch.profiler's top operators (self CPU time) of one training step (the fastest of ``PROFILE_STEPS``), with
    their shares and the share of the projection's GEMMs (forward and weight gradient)."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(TRAIN["seed"])
    m = _model().train()
    opt = torch.optim.AdamW(m.parameters(), TRAIN["lr"])
    b = _batch(TRAIN["batch"], TRAIN["patches"])

    def step() -> None:
        m(b).loss.backward()
        opt.step()
        opt.zero_grad()

    for _ in range(TRAIN["warmup_steps"]):
        step()
    best: tuple[float, list[Any]] | None = None
    for _ in range(PROFILE_STEPS):  # the least disturbed of a few steps (other processes share the cores)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            step()
        rows = [e for e in prof.key_averages(group_by_input_shape=True) if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in rows)
        if best is None or total < best[0]:
            best = (total, rows)
    assert best is not None
    total, rows = best
    rows.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    proj = sum(e.self_cpu_time_total for e in rows if e.key in ("aten::addmm", "aten::addmm_", "aten::mm")
               and any(D_IN in s and TRAIN["batch"] * TRAIN["patches"] in s for s in e.input_shapes if s))
    return {
        "self_cpu_ms_total": total / 1e3,
        "projection_share": proj / total,
        "top_ops": [{"op": e.key, "shapes": str(e.input_shapes)[:120], "self_cpu_ms": e.self_cpu_time_total / 1e3,
                     "share": e.self_cpu_time_total / total, "calls": e.count} for e in rows[:top]],
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (throughput.json) or cuda "
                   "(throughput_cuda.json)")
    p.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--profile-only", type=Path, default=None, help="write only the training-step profile to this "
                   "JSON file (run against older code to record its profile_before)")
    p.add_argument("--profile-before", type=Path, default=None, help="record this --profile-only JSON (of the code "
                   "before issue #24) as profile_before; without it, the results file's profile_before is kept")
    return p


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """What ``python -m bench.throughput`` runs (no arguments: the CPU bench written to throughput.json)."""
    from multimodal.config import to_dict

    args = _parser().parse_args(argv or [])
    if args.device == "cuda":
        return {"device": "cuda", "model": to_dict(_model_config()), "cuda": CUDA}
    return {"threads": THREADS, "model": to_dict(_model_config()), "train": TRAIN, "inference": INFERENCE,
            "rss_patches": list(RSS_PATCHES), "rss_repeats": RSS_REPEATS, "profile_top": PROFILE_TOP, "profile_steps": PROFILE_STEPS, "precision": "fp32"}


def run() -> dict[str, Any]:
    torch.set_num_threads(THREADS)
    tr = training_vs_projection()
    inf = inference_vs_projection()
    rss = rss_by_patches()
    return {
        "train_step_over_projection": tr["ratio_median"],
        "train_step_over_projection_min": tr["ratio_min"],
        "infer_64k_over_projection": inf["ratio_median"],
        "infer_64k_over_projection_min": inf["ratio_min"],
        "infer_64k_seconds": statistics.median(inf["seconds"]),
        "infer_rss_growth_256k_over_16k": rss["256000"]["growth_mb"] / max(rss["16000"]["growth_mb"], 1e-9),
        "infer_64k_peak_rss_mb": rss["64000"]["peak_mb"],
        "threads": torch.get_num_threads(),
        "train": tr,
        "inference_64k": inf,
        "inference_rss_by_patches": rss,
        "profile": profile_train_step(),
    }


class _Patients(torch.utils.data.Dataset):
    """Synthetic patients for the GPU bench: bags of bf16 patch features (a shared in-memory array)."""

    def __init__(self, patients: int, patches: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.features = torch.randn(patients, patches, D_IN, generator=g).to(torch.bfloat16).share_memory_()
        self.positions = torch.randint(0, 200, (patients, patches, 2), generator=g).float()

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.features[i], self.positions[i]


def _collate(items: list[tuple[Tensor, Tensor]]) -> Any:
    from multimodal.types import Batch, SurvivalTarget, TokenStream

    f = torch.stack([a for a, _ in items])
    b, n = f.shape[:2]
    return Batch(streams={"pathology": TokenStream("pathology", torch.ones(b, n, dtype=torch.bool), features=f,
                                                   positions=torch.stack([p for _, p in items]),
                                                   slide_index=torch.zeros(b, n, dtype=torch.long))},
                 patient_ids=tuple(map(str, range(b))),
                 survival=SurvivalTarget(torch.rand(b) * 4, torch.ones(b, dtype=torch.bool)))


def _cuda_loop(model: Any, loader: Any, steps: int, warmup: int) -> dict[str, float]:
    from multimodal.data import pin_batch

    opt = torch.optim.AdamW(model.parameters(), TRAIN["lr"])
    dev = torch.device("cuda")
    it, wait, done = iter(loader), 0.0, 0
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            t0, wait, util = time.perf_counter(), 0.0, []
        tw = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        batch = pin_batch(batch).to(dev)
        if i >= warmup:
            torch.cuda.synchronize()  # the GPU idles while it waits for this batch
            wait += time.perf_counter() - tw
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            done += batch.batch_size
            try:
                util.append(float(torch.cuda.utilization()))
            except Exception:  # noqa: BLE001 (pynvml missing: utilization unknown)
                pass
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"patients_per_s": done / dt, "loader_wait_share": wait / dt,
            "gpu_utilization_percent": statistics.mean(util) if util else None}


def run_cuda() -> dict[str, Any]:
    """The GPU path: bf16 autocast, pinned batches from loader workers, eager and ``torch.compile``."""
    from multimodal.data import cuda_loader_kwargs

    ds = _Patients(CUDA["patients"], CUDA["patches"])
    loader = torch.utils.data.DataLoader(ds, batch_size=CUDA["batch"], shuffle=True, collate_fn=_collate,
                                         **cuda_loader_kwargs(CUDA["workers"]))
    out: dict[str, Any] = {"device_name": torch.cuda.get_device_name(0)}
    for name in ("eager", "compiled"):
        torch.manual_seed(TRAIN["seed"])
        model = _model().cuda().train()
        try:
            if name == "compiled":
                model = torch.compile(model)
            out[name] = _cuda_loop(model, loader, CUDA["steps"], CUDA["warmup_steps"])
        except Exception as exc:  # noqa: BLE001 (recorded: compile may not support a path)
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    best = max((v for v in (out["eager"], out["compiled"]) if "patients_per_s" in v),
               key=lambda v: v["patients_per_s"], default={})
    out["patients_per_s"] = best.get("patients_per_s")
    out["loader_wait_share"] = best.get("loader_wait_share")
    out["gpu_utilization_percent"] = best.get("gpu_utilization_percent")
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.common import write_results

    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.rss_child is not None:
        print(json.dumps(_rss_child(args.rss_child)))
        return 0
    if args.profile_only is not None:
        torch.set_num_threads(THREADS)
        args.profile_only.write_text(json.dumps(profile_train_step(), indent=1))
        return 0
    config = bench_config(argv)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("bench.throughput --device cuda: no CUDA device is available (torch.cuda.is_available() is False)",
                  file=sys.stderr)
            return 2
        res = run_cuda()
        write_results("throughput_cuda", res, config)
    else:
        res = run()
        old = common.RESULTS / "throughput.json"
        if args.profile_before is not None:
            res["profile_before"] = json.loads(args.profile_before.read_text())
        elif old.is_file() and "profile_before" in (prev := json.loads(old.read_text())):
            res["profile_before"] = prev["profile_before"]
        write_results("throughput", res, config)
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
