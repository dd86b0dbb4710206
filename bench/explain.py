"""Explanations vs the synthetic ground truth, and report latency (issue #5).

Writes ``bench/results/explain.json``: pathway_recall_at_5 (target ≥ 0.8), patch_auroc_high_risk (≥ 0.8),
causal_lab_top3_fraction (≥ 0.7), per_arm_response_corr (≥ 0.7), report_seconds (explanation + HTML + PDF for one
patient with 3 slides × 10k patches; target < 5 s).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import write_results

REPO = Path(__file__).resolve().parents[1]


def _train(manifest: Path, overrides: list[str]):
    from multimodal.cohorts.splits import inner_split
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.pipeline import Pipeline

    cfg = load_experiment(REPO / "configs" / "demo.yaml", [f"data.manifest={manifest}", *overrides])
    cohort = load_cohort(cfg.data)
    ids = cohort.patient_ids
    rng = np.random.default_rng(0)
    perm = list(rng.permutation(ids))
    n_test = len(ids) // 4
    test, train = perm[:n_test], perm[n_test:]
    tr, val = inner_split(train, cohort.patients.loc[train, "event"].astype(int).to_numpy(), 0.15, 0)
    pipe, _ = Pipeline.fit(cohort, tr, val_ids=val, adapters=make_adapters(cfg), model_config=cfg.model,
                           training=cfg.training, task=cfg.task, seed=0)
    return pipe, cohort, test


def run(patients: int = 300, overrides: list[str] | None = None) -> dict:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.explain.risk import explain_patient
    from multimodal.explain.validation import validate_explanations
    from multimodal.report.patient import write_patient_report

    torch.set_num_threads(2)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_synthetic_cohort(Path(tmp) / "c", SyntheticConfig(patients=patients, seed=0))
        t0 = time.perf_counter()
        pipe, cohort, test = _train(manifest, overrides or [])
        out["train_seconds"] = time.perf_counter() - t0
        gt = json.loads((manifest.parent / "ground_truth.json").read_text())
        out.update(validate_explanations(pipe, cohort, gt, test))
        # latency: one patient with 3 slides x 10k patches
        big = generate_synthetic_cohort(Path(tmp) / "big", SyntheticConfig(
            patients=8, seed=1, patches_per_slide=10_000, patches_per_slide_sigma=0.0, slides_per_patient=(3, 3),
            embed_dim=64))
        from multimodal.cohorts.cohort import Cohort

        bc = Cohort.from_manifest(big)
        pid = next(p for p in bc.patient_ids if all(bc.has(m, p) for m in bc.modalities))
        explain_patient(pipe, bc, pid, mc_samples=2, n_steps=4)  # warm-up (imports, caches); binds to bc
        n_patches = pipe.adapters["pathology"].num_tokens_hint(pid)
        t0 = time.perf_counter()
        res = explain_patient(pipe, bc, pid)
        t1 = time.perf_counter()
        write_patient_report(res, Path(tmp) / "rep", pdf=True)
        t2 = time.perf_counter()
        out.update({"report_seconds": t2 - t0, "explain_seconds": t1 - t0, "render_seconds": t2 - t1,
                    "report_patches": int(n_patches)})
    out["targets"] = {"pathway_recall_at_5": ">= 0.8", "patch_auroc_high_risk": ">= 0.8",
                      "causal_lab_top3_fraction": ">= 0.7", "per_arm_response_corr": ">= 0.7", "report_seconds": "< 5"}
    return out


if __name__ == "__main__":
    res = run(overrides=sys.argv[1:])
    write_results("explain", res)
    print(json.dumps(res, indent=2))
