"""Training throughput, inference latency and memory of the fusion model (issue #4 targets).

* training patients/s with 4096 sampled patches of dim 1024 per patient, d_model 256, 2 threads, fp32, and the
  achieved fraction of the machine's fp32 matmul peak measured in the same run (FLOPs counted analytically for the
  dense layers that dominate: the patch projection forward + weight-gradient and the cross-attention);
* inference wall time on one 100k-patch patient;
* peak RSS growth of inference at 1k, 10k and 100k patches (should be linear in N).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import torch

from bench.common import PeakRSS, matmul_peak_gflops
from multimodal.model import MultimodalConfig, MultimodalModel
from multimodal.types import Batch, SurvivalTarget, TokenStream

D_IN = 1024
D_MODEL = 256
THREADS = 2
TRAIN = {"patches": 4096, "batch": 8, "steps": 6, "warmup_steps": 2, "lr": 1e-4, "seed": 0}
INFERENCE_PATCHES = (1_000, 10_000, 100_000)
MATMUL_PEAK = {"n": 2048, "reps": 8}


def _model_config() -> MultimodalConfig:
    return MultimodalConfig(
        streams=[{"modality": "pathology", "kind": "patches", "feature_dim": D_IN}], d_model=D_MODEL, num_heads=8,
        num_latents=16, depth=2, bin_edges=[1.0, 2.0, 3.0], dropout=0.0,
    )


def _model() -> MultimodalModel:
    return MultimodalModel(_model_config())


def _batch(b: int, n: int) -> Batch:
    return Batch(
        streams={"pathology": TokenStream(
            "pathology", torch.ones(b, n, dtype=torch.bool), features=torch.randn(b, n, D_IN),
            positions=torch.randint(0, 200, (b, n, 2)).float(), slide_index=torch.zeros(b, n, dtype=torch.long))},
        patient_ids=tuple(str(i) for i in range(b)),
        survival=SurvivalTarget(torch.rand(b) * 4, torch.ones(b, dtype=torch.bool)),
    )


def train_flops_per_patient(n: int, m: MultimodalModel) -> float:
    q = 1 + m.config.num_latents
    proj = 2 * n * D_IN * D_MODEL  # forward
    attn = 2 * 2 * n * q * D_MODEL  # scores + weighted sum
    return proj * 2 + attn * 3  # projection: fwd + weight grad (inputs need no grad); attention: fwd + 2 bwd


def training_throughput(n_patches: int = TRAIN["patches"], batch: int = TRAIN["batch"],
                        steps: int = TRAIN["steps"]) -> dict[str, float]:
    torch.manual_seed(TRAIN["seed"])
    m = _model()
    opt = torch.optim.AdamW(m.parameters(), TRAIN["lr"])
    b = _batch(batch, n_patches)
    for _ in range(TRAIN["warmup_steps"]):
        m(b).loss.backward()
        opt.step()
        opt.zero_grad()
    t = time.perf_counter()
    for _ in range(steps):
        m(b).loss.backward()
        opt.step()
        opt.zero_grad()
    dt = time.perf_counter() - t
    pps = batch * steps / dt
    return {"train_patients_per_s": pps, "train_gflops_per_s": pps * train_flops_per_patient(n_patches, m) / 1e9}


@torch.no_grad()
def inference(n: int) -> dict[str, float]:
    m = _model().eval()
    feats = torch.randn(1, n, D_IN)
    b = Batch(streams={"pathology": TokenStream(
        "pathology", torch.ones(1, n, dtype=torch.bool), features=feats,
        positions=torch.randint(0, 500, (1, n, 2)).float(), slide_index=torch.zeros(1, n, dtype=torch.long))},
        patient_ids=("p",))
    m(b)
    gc.collect()
    with PeakRSS() as rss:
        t = time.perf_counter()
        m(b)
        dt = time.perf_counter() - t
    return {"seconds": dt, "peak_rss_growth_mb": rss.peak_mb - rss.start_mb}


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=__doc__.split("\n\n")[0])


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """What ``python -m bench.throughput`` runs (no arguments): its part ``throughput`` of train.json."""
    from multimodal.config import to_dict

    _parser().parse_args(argv or [])
    return {"throughput": {"threads": THREADS, "model": to_dict(_model_config()), "train": TRAIN,
                           "inference_patches": list(INFERENCE_PATCHES), "matmul_peak": MATMUL_PEAK,
                           "precision": "fp32"}}


def run() -> dict[str, Any]:
    torch.set_num_threads(THREADS)
    peak = matmul_peak_gflops(**MATMUL_PEAK)
    tr = training_throughput()
    inf = {str(n): inference(n) for n in INFERENCE_PATCHES}
    return {
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": peak,
        **tr,
        "train_fraction_of_peak": tr["train_gflops_per_s"] / peak,
        "train_config": {"patches": TRAIN["patches"], "feature_dim": D_IN, "d_model": D_MODEL, "batch": TRAIN["batch"],
                         "precision": "fp32"},
        "inference_100k_seconds": inf["100000"]["seconds"],
        "inference_by_patches": inf,
    }


def main(argv: list[str] | None = None) -> int:
    import json

    from bench.common import write_results

    config = bench_config(sys.argv[1:] if argv is None else argv)
    res = run()
    write_results("train", {"throughput": res}, config, merge=True)
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
