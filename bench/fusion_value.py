"""Does fusion earn its place? Our model against the strongest classical baselines on identical folds (issue 19).

Every setting runs ``multimodal cv`` (``Study``) with the configuration's default baselines — every modality pooled for
the classical models (coxnet, random survival forest, gradient-boosted Cox; elastic-net / random-forest /
gradient-boosted classifiers for response) and an attention-MIL late-fusion model — on the same folds as our model,
and reports our mean c-index (AUROC for response) beside the best baseline's.

* ``synthetic_interaction`` / ``synthetic_additive``: ``multimodal synth --signal S --patients 500 --seed k`` for the
  benchmark seeds 0, 1, 2 (every choice of configuration was made on development seeds >= 100), run with
  ``configs/demo.yaml`` as the survival study (``task=survival``, no ablations, one model instead of the demo's
  3-member ensemble, to keep the run near an hour), 5 stratified folds. Slides are
  hidden from a seeded random half of each reporting fold's patients that have them
  (``evaluation.drop_test_modality=pathology``): ``slides_drop`` is our c-index lost by that, ``truth_slides_drop``
  what the planted truth loses when the same patients' pathology parts of the true log-hazard are set to zero (their
  population mean). Target: ours >= best + 0.03 (interaction), >= best - 0.005 (additive), slides_drop >=
  truth_slides_drop / 2 (interaction).
* ``tcga_blca`` / ``tcga_brca`` / ``tcga_kirc``: ``configs/tcga_<c>.yaml`` on the PORPOISE 5-fold splits (genomics +
  clinical). Target: ours >= best on each, 3-cohort mean >= best's mean + 0.02.
* ``response_blca``: ``configs/tcga_response_blca.yaml`` on the MMP folds: AUROC and calibration slope.

Usage::

    python -m bench.fusion_value                                   # every setting (hours on 2 cores)
    python -m bench.fusion_value --settings tcga_blca tcga_brca    # some; results merge into the same file
    python -m bench.fusion_value --settings synthetic_additive --seeds 101 102 --out fusion_value_dev \\
        --set model.wide=false                                     # development runs: another results file

→ ``bench/results/fusion_value.json`` (``--out`` names another ``fusion_value*`` file), with ``commit`` and the
config digest of each setting; per-setting run folders are kept under ``--work`` when it is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, SHARED_DATA, SYNTHETIC_MANIFEST, experiment_config, synthetic_settings, write_results

SYNTHETIC = ("synthetic_interaction", "synthetic_additive")
TCGA = ("tcga_blca", "tcga_brca", "tcga_kirc")
RESPONSE = ("response_blca",)
SETTINGS = SYNTHETIC + TCGA + RESPONSE
#: Benchmark seeds: the issue's targets are means over these three (a seed is about 15 minutes per signal on 2 cores).
#: Development seeds (>= 100) are for choices.
BENCHMARK_SEEDS = (0, 1, 2)
#: The survival study of the synthetic settings: configs/demo.yaml as a survival study with slides hidden from half
#: of each reporting fold.
#: One model per fold (no deep ensemble): the 30 synthetic studies must fit in about an hour on 2 cores.
SYNTHETIC_OVERRIDES = ("task=survival", "evaluation.ablations=false", "evaluation.drop_test_modality=pathology",
                       "model.ensemble=1")
CONFIG_OF = {"tcga_blca": "configs/tcga_blca.yaml", "tcga_brca": "configs/tcga_brca.yaml",
             "tcga_kirc": "configs/tcga_kirc.yaml", "response_blca": "configs/tcga_response_blca.yaml"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fusion_value", description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(BENCHMARK_SEEDS), help="synthetic cohort seeds")
    p.add_argument("--patients", type=int, default=500, help="synthetic cohort size")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="extra config override for every setting (development runs), e.g. model.wide=false")
    p.add_argument("--data-root", default=os.environ.get("MULTIMODAL_SHARED_DATA", str(REPO.parent / "shared" / "data")))
    p.add_argument("--work", default=None, help="keep cohorts and run folders here (default: a temporary folder)")
    p.add_argument("--out", default="fusion_value", help="results file name under bench/results (fusion_value*)")
    return p


def _args(argv: list[str] | None) -> argparse.Namespace:
    a = _parser().parse_args(argv)
    if not a.out.startswith("fusion_value") or "/" in a.out or a.out.endswith(".json"):
        _parser().error(f"--out: expected a name starting with 'fusion_value' (no path, no suffix), got {a.out!r}")
    if a.patients < 50:
        _parser().error(f"--patients: expected at least 50, got {a.patients}")
    return a


def _setting_config(name: str, a: argparse.Namespace) -> dict[str, Any]:
    if name in SYNTHETIC:
        signal = name.removeprefix("synthetic_")
        overrides = [f"data.manifest={SYNTHETIC_MANIFEST}", *SYNTHETIC_OVERRIDES, *a.overrides]
        return {"seeds": list(a.seeds), "patients": a.patients,
                "cohort": synthetic_settings(patients=a.patients, seed=0, signal=signal),
                "experiment": experiment_config(REPO / "configs" / "demo.yaml", overrides)}
    return {"experiment": experiment_config(REPO / CONFIG_OF[name], [f"data.root={SHARED_DATA}", *a.overrides])}


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """What ``python -m bench.fusion_value ARGV`` runs: one entry per setting (runs merge into one file)."""
    a = _args([] if argv is None else argv)
    return {name: _setting_config(name, a) for name in a.settings}


# ---- one study -------------------------------------------------------------------------------------------------------
def _run_study(config_path: Path, overrides: list[str], out: Path) -> dict[str, Any]:
    from multimodal.experiment import load_experiment
    from multimodal.study import Study

    cfg = load_experiment(config_path, overrides)
    t0 = time.perf_counter()
    summary = Study(cfg).run(out, progress=lambda s: print("   ", s, flush=True))
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary


def _compare(summary: dict[str, Any], key: str) -> dict[str, Any]:
    """Ours vs every baseline (methods not named ``multimodal*``) on the mean of ``key`` over folds."""
    methods = summary["methods"]
    ours = methods["multimodal"]["mean"].get(key)
    base = {n: m["mean"].get(key) for n, m in methods.items() if not n.startswith("multimodal")}
    base = {n: v for n, v in base.items() if v is not None}
    best = max(base, key=lambda n: base[n]) if base else None
    folds = {n: [f.get(key) for f in m["folds"]] for n, m in methods.items()}
    return {"ours": ours, "best_baseline": base.get(best) if best else None, "best_baseline_name": best,
            "baselines": base, "folds": folds, "seconds": summary.get("wall_seconds")}


def _calibration(summary: dict[str, Any], name: str) -> dict[str, Any]:
    m = summary["methods"][name]
    return {k: m["mean"].get(k) for k in ("calibration_slope", "ici") if k in m["mean"]} | {
        f"{k}_ci95": m["ci95"].get(k) for k in ("calibration_slope", "ici") if k in m.get("ci95", {})}


# ---- synthetic -------------------------------------------------------------------------------------------------------
def _truth_slides_drop(truth: dict[str, Any], folds: list[dict[str, Any]], cohort: Any) -> float | None:
    """Mean over folds of c(true lp) - c(true lp with the hidden patients' pathology parts set to 0)."""
    from multimodal.metrics import harrell_c

    lp = {p["patient_id"]: float(p["linear_predictor"]) for p in truth["patients"]}
    path = {p["patient_id"]: sum(v for k, v in p["risk_parts"].items() if k.startswith("pathology"))
            for p in truth["patients"]}
    drops = []
    for f in folds:
        hidden = set(f.get("dropped_patients") or [])
        ids = f.get("test_ids")
        if not hidden or not ids:
            continue
        t, e = cohort.survival_arrays(ids)
        full = np.array([lp[p] for p in ids])
        cut = np.array([lp[p] - (path[p] if p in hidden else 0.0) for p in ids])
        drops.append(harrell_c(t, e, full) - harrell_c(t, e, cut))
    return float(np.mean(drops)) if drops else None


def _synthetic_seed(name: str, seed: int, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    import pandas as pd

    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort, load_ground_truth
    from multimodal.experiment import load_cohort, load_experiment

    signal = name.removeprefix("synthetic_")
    folder = work / f"{name}_seed{seed}"
    manifest = folder / "cohort" / "manifest.yaml"
    if not manifest.is_file():
        generate_synthetic_cohort(folder / "cohort", SyntheticConfig(patients=a.patients, seed=seed, signal=signal))
    overrides = [f"data.manifest={manifest}", *SYNTHETIC_OVERRIDES, *a.overrides]
    print(f"== {name} seed {seed}", flush=True)
    summary = _run_study(REPO / "configs" / "demo.yaml", overrides, folder / "run")
    res = _compare(summary, "c_index")
    ours_folds = summary["methods"]["multimodal"]["folds"]
    preds = pd.read_parquet(folder / "run" / "predictions.parquet")
    for f in ours_folds:
        f["test_ids"] = preds.loc[(preds["method"] == "multimodal") & (preds["fold"] == f["fold"]), "patient_id"].tolist()
    drops = [f["c_index_full"] - f["c_index_dropped"] for f in ours_folds
             if f.get("c_index_full") is not None and f.get("c_index_dropped") is not None]
    truth = load_ground_truth(manifest)
    cohort = load_cohort(load_experiment(REPO / "configs" / "demo.yaml", overrides).data)
    res.update(seed=seed, slides_drop=float(np.mean(drops)) if drops else None,
               truth_slides_drop=_truth_slides_drop(truth, ours_folds, cohort),
               oracle=(summary.get("oracle") or {}).get("c_index"),
               calibration={n: _calibration(summary, n) for n in summary["methods"]})
    return res


def run_synthetic(name: str, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    per_seed = [_synthetic_seed(name, s, a, work) for s in a.seeds]

    def mean(key: str) -> float | None:
        vals = [r[key] for r in per_seed if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    names = sorted({n for r in per_seed for n in r["baselines"]})
    by_name = {n: float(np.mean([r["baselines"][n] for r in per_seed if n in r["baselines"]])) for n in names}
    best = max(by_name, key=lambda n: by_name[n]) if by_name else None
    out = {"ours": mean("ours"), "best_baseline": by_name.get(best) if best else None, "best_baseline_name": best,
           "baselines": by_name, "slides_drop": mean("slides_drop"), "truth_slides_drop": mean("truth_slides_drop"),
           "oracle": mean("oracle"), "per_seed": per_seed}
    margin = 0.03 if name == "synthetic_interaction" else -0.005
    out["target"] = f"ours >= best_baseline {'+' if margin > 0 else '-'} {abs(margin)}"
    out["met"] = None if out["ours"] is None or out["best_baseline"] is None else bool(
        out["ours"] >= out["best_baseline"] + margin)
    if name == "synthetic_interaction" and out["slides_drop"] is not None and out["truth_slides_drop"]:
        out["slides_target_met"] = bool(out["slides_drop"] >= 0.5 * out["truth_slides_drop"])
    return out


# ---- TCGA ------------------------------------------------------------------------------------------------------------
def run_tcga(name: str, a: argparse.Namespace, work: Path) -> dict[str, Any]:
    print(f"== {name}", flush=True)
    overrides = [f"data.root={a.data_root}", *a.overrides]
    summary = _run_study(REPO / CONFIG_OF[name], overrides, work / name)
    key = "auroc" if name in RESPONSE else "c_index"
    res = _compare(summary, key)
    res["metric"] = key
    res["calibration"] = {n: _calibration(summary, n) for n in summary["methods"]}
    res["met"] = None if res["ours"] is None or res["best_baseline"] is None else bool(res["ours"] >= res["best_baseline"])
    if name in RESPONSE:
        slope = res["calibration"].get("multimodal", {}).get("calibration_slope")
        res["calibration_target_met"] = None if slope is None else bool(0.7 <= slope <= 1.3)
    return res


def _tcga_mean(results: dict[str, Any]) -> dict[str, Any] | None:
    got = [results[n] for n in TCGA if n in results and results[n].get("ours") is not None]
    if len(got) < len(TCGA):
        return None
    ours = float(np.mean([r["ours"] for r in got]))
    best = float(np.mean([r["best_baseline"] for r in got]))
    return {"ours": ours, "best_baseline": best, "met": bool(ours >= best + 0.02),
            "target": "ours >= mean of each cohort's best baseline + 0.02"}


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    if any(s not in SYNTHETIC for s in a.settings) and not Path(a.data_root).is_dir():
        print(f"skip: the TCGA settings need ../shared/data (not found at {a.data_root}); "
              "pass --data-root or run only the synthetic settings", file=sys.stderr)
        a.settings = [s for s in a.settings if s in SYNTHETIC]
        if not a.settings:
            return 0
    config = {name: _setting_config(name, a) for name in a.settings}
    with tempfile.TemporaryDirectory(prefix="fusion_value_") as tmp:
        work = Path(a.work) if a.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {}
        for name in a.settings:
            data[name] = run_synthetic(name, a, work) if name in SYNTHETIC else run_tcga(name, a, work)
            print(json.dumps({name: {k: data[name].get(k) for k in ("ours", "best_baseline", "best_baseline_name",
                                                                     "met")}}), flush=True)
            write_results(a.out, {name: data[name]}, {name: config[name]}, merge=True)
    from bench.common import RESULTS

    merged = json.loads((RESULTS / f"{a.out}.json").read_text())
    mean = _tcga_mean(merged)
    if mean is not None:
        write_results(a.out, {"tcga_mean": mean}, {}, merge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
