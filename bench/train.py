"""Accuracy of the fusion model against the oracle and the baselines (issue #4 targets) → bench/results/train.json.

* **Synthetic**: a 300-patient cohort (seed 1, three modalities + the clinical table) written by ``multimodal synth``;
  ``configs/demo.yaml`` with ``task=survival`` and one model (``model.ensemble=1``, ``training.average_epochs=1``);
  stratified 5-fold CV (``Study.folds``), the same inner validation split as ``multimodal cv``. Per fold: our model's
  Harrell c-index on the reporting fold, the same model's c-index when the slides of a random half of the reporting
  patients are removed (the missing-modality path), and the baselines on the same folds. The oracle is the c-index of
  the true linear predictor.
* **TCGA** (``configs/tcga_{blca,brca,kirc}.yaml``, published PORPOISE 5 folds): ``multimodal cv`` end to end, our
  mean c-index against the baselines and MCAT's published values, and the wall time of the BLCA run.

Usage: ``python -m bench.train`` (everything), ``python -m bench.train synthetic``, ``python -m bench.train tcga``.
Throughput lives in its own file (``python -m bench.throughput`` → bench/results/throughput.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    SHARED_DATA,
    experiment_config,
    fit_fold,
    survival_study_config,
    synthetic_survival_study,
    write_results,
)
from multimodal.cohorts.sources import SlideSource
from multimodal.experiment import load_experiment
from multimodal.metrics import harrell_c
from multimodal.study import Study

REPO = Path(__file__).resolve().parents[1]
MCAT_PUBLISHED = {"blca": 0.624, "brca": 0.580}  # MCAT (Chen et al. 2021), mean c-index on these 5 folds
PARTS = ("synthetic", "tcga")
SYNTHETIC = {"patients": 300, "seed": 1}
TCGA_COHORTS = ("blca", "brca", "kirc")


def _data_root() -> Path:
    env = os.environ.get("MULTIMODAL_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def synthetic(patients: int = SYNTHETIC["patients"], seed: int = SYNTHETIC["seed"]) -> dict[str, Any]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        manifest, truth, st = synthetic_survival_study(Path(tmp), patients, seed)
        cfg, c = st.config, st.cohort
        lp = {p["patient_id"]: p["linear_predictor"] for p in truth["patients"]}
        rng = np.random.default_rng(seed)
        folds = []
        for fold in st.folds():
            pipe, fit, test = fit_fold(st, fold)
            t, e = c.survival_arrays(test)

            def cindex(cohort: Any, ids: list[str] = test, t: Any = t, e: Any = e, pipe: Any = pipe) -> float:
                pred = pipe.predict(cohort, ids).set_index("patient_id").loc[ids]
                return float(harrell_c(t, e, pred["risk"].to_numpy()))

            full = cindex(c)
            # remove the slides of a random half of the reporting patients (the model's missing-modality path)
            drop = set(rng.choice(test, size=len(test) // 2, replace=False).tolist())
            src = c.modalities["pathology"]
            assert isinstance(src, SlideSource)
            no_slides = dataclasses.replace(c, modalities={**c.modalities, "pathology": SlideSource(
                {p: refs for p, refs in src.slides.items() if p not in drop})})
            half = cindex(no_slides)
            pipe.bind(c)
            rec = {"fold": fold.index, "c_index": full, "c_index_half_slides_removed": half,
                   "oracle_c_index": float(harrell_c(t, e, np.array([lp[p] for p in test]))),
                   "best_epoch": fit.best_epoch, "n_test": len(test)}
            for name in cfg.evaluation.baselines:
                res = st._fit_baseline(name, fold)
                pred = res.predictions.set_index("patient_id").loc[test]
                rec[name] = float(harrell_c(t, e, pred["risk"].to_numpy()))
            folds.append(rec)
            print(json.dumps(rec), flush=True)
    mean = {k: float(np.mean([f[k] for f in folds])) for k in folds[0] if k not in ("fold", "best_epoch", "n_test")}
    return {
        "cohort": {"patients": patients, "seed": seed, "config": "configs/demo.yaml (task=survival, model.ensemble=1, training.average_epochs=1)"},
        "folds": folds, "mean": mean,
        "gap_to_oracle": mean["oracle_c_index"] - mean["c_index"],
        "drop_with_half_slides_removed": mean["c_index"] - mean["c_index_half_slides_removed"],
        "targets": {"gap_to_oracle_max": 0.03, "drop_max": 0.05},
        "met": {"gap_to_oracle": mean["oracle_c_index"] - mean["c_index"] <= 0.03,
                "missing_slides": mean["c_index"] - mean["c_index_half_slides_removed"] < 0.05},
        "seconds": time.perf_counter() - t0,
    }


def tcga(cohorts: tuple[str, ...] = TCGA_COHORTS) -> dict[str, Any]:
    root = _data_root()
    if not root.is_dir():
        return {"skipped": f"shared data not found at {root} (set MULTIMODAL_SHARED_DATA)"}
    out: dict[str, Any] = {}
    for name in cohorts:
        cfg = load_experiment(REPO / "configs" / f"tcga_{name}.yaml", [f"data.root={root}"])
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            summary = Study(cfg).run(Path(tmp) / "run")
        secs = time.perf_counter() - t0
        methods = {m: {"mean_c_index": v["mean"].get("c_index"), "ci95": v.get("ci95", {}).get("c_index"),
                       "folds": [f.get("c_index") for f in v["folds"]]} for m, v in summary["methods"].items()}
        ours = methods["multimodal"]["mean_c_index"]
        base = {m: v["mean_c_index"] for m, v in methods.items() if not m.startswith("multimodal")}
        best = max(base, key=lambda m: base[m])
        out[name] = {
            "methods": methods, "best_baseline": best, "seconds": secs,
            "mcat_published": MCAT_PUBLISHED.get(name),
            "met": {"vs_best_baseline": ours >= base[best],
                    "vs_mcat": None if name not in MCAT_PUBLISHED else ours >= MCAT_PUBLISHED[name]},
        }
        print(name, json.dumps({k: v for k, v in out[name].items() if k != "methods"}), flush=True)
    if "blca" in out:
        out["cv_blca_seconds"] = out["blca"]["seconds"]
        out["cv_blca_under_10_min"] = out["blca"]["seconds"] < 600
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("parts", nargs="*", metavar="PART", help=f"any of {', '.join(PARTS)} (default: both)")
    return ap


def _parts(ap: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    parts = ap.parse_args(argv).parts or list(PARTS)
    if unknown := sorted(set(parts) - set(PARTS)):
        ap.error(f"unknown part(s) {unknown}: choose from {', '.join(PARTS)}")
    return [p for p in PARTS if p in parts]


def _part_config(part: str) -> dict[str, Any]:
    if part == "synthetic":
        return {**survival_study_config(SYNTHETIC["patients"]), "seed": SYNTHETIC["seed"]}
    return {"cohorts": list(TCGA_COHORTS), "mcat_published": MCAT_PUBLISHED, "experiments": {
        c: experiment_config(REPO / "configs" / f"tcga_{c}.yaml", [f"data.root={SHARED_DATA}"]) for c in TCGA_COHORTS}}


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """The parts of train.json that ``python -m bench.train ARGV`` writes (``None``: both), each with its settings."""
    return {part: _part_config(part) for part in _parts(_parser(), argv or [])}


def main(argv: list[str]) -> int:
    config = bench_config(argv)
    runs = {"synthetic": synthetic, "tcga": tcga}
    res = {part: runs[part]() for part in config}
    path = write_results("train", res, config, merge=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
