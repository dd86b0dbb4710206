"""Treatment-response benchmark (issue #8): TCGA first-course outcome from genomics + baseline clinical data.

``run()`` runs ``multimodal cv`` on ``configs/tcga_response_{blca,brca,kirc}.yaml`` (MMP folds restricted to labelled
patients) and writes ``bench/results/response.json`` with, per cohort: the mean AUROC of our model and of each
baseline on the same folds, the per-fold values, the t-interval and bootstrap 95% CIs, the endpoint's exclusion counts,
the runtime and whether the target (our mean AUROC >= the best baseline's) is met. A cohort whose CDR records no
first-course outcome (TCGA-BRCA) is reported as not evaluable, with its counts.

``tune()`` is the declared tuning protocol behind the model section of those configs. Candidates are compared by their
mean AUROC in a stratified 4-fold CV **inside the training part of BLCA's MMP fold 0** (BLCA fold 0's reporting
patients and the whole KIRC cohort are never seen), with the baselines on the same inner folds for reference. The
chosen candidate is the best by that inner score; its numbers on the reporting folds are whatever ``run()`` finds.

Usage: ``python -m bench.response`` (all cohorts), ``python -m bench.response blca kirc``,
``python -m bench.response --tune`` (writes ``tuning`` into the same JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import SHARED_DATA, experiment_config, write_results
from multimodal.config import apply_overrides
from multimodal.errors import InputError
from multimodal.experiment import load_cohort, load_experiment
from multimodal.study import Study

REPO = Path(__file__).resolve().parents[1]
COHORTS = ("blca", "brca", "kirc")
RUNS = REPO / "runs" / "bench_response"
#: Tuning candidates: overrides of the BLCA config (see ``tune``).
CANDIDATES: dict[str, list[str]] = {}
TUNE_COHORT, TUNE_INNER_FOLDS = "blca", 4


def _tune_overrides(inner_folds: int) -> list[str]:
    return ["evaluation.ablations=false", "evaluation.bootstrap=0", "data.splits=kfold", f"evaluation.folds={inner_folds}"]


def _data_root() -> Path:
    env = os.environ.get("MULTIMODAL_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _config(cohort: str, overrides: Sequence[str] = ()) -> Any:
    return load_experiment(REPO / "configs" / f"tcga_response_{cohort}.yaml",
                           [f"data.root={_data_root()}", *overrides])


def _fold_values(method: dict[str, Any], key: str = "auroc") -> list[dict[str, Any]]:
    return [{"fold": f["fold"], key: f.get(key), "n": f.get("n"), "n_positive": f.get("n_positive")}
            for f in method["folds"]]


def _cohort_result(summary: dict[str, Any], exclusions: dict[str, Any], seconds: float) -> dict[str, Any]:
    methods = {}
    for name, m in summary["methods"].items():
        methods[name] = {
            "mean_auroc": m["mean"].get("auroc"),
            "mean": m["mean"],
            "ci95_t": m["ci95"].get("auroc"),
            "ci95_bootstrap": m["ci95"].get("auroc_bootstrap"),
            "folds": _fold_values(m),
        }
    baselines = [n for n in methods if not n.startswith("multimodal")]
    best = max(baselines, key=lambda n: methods[n]["mean_auroc"] if methods[n]["mean_auroc"] is not None else -1.0)
    ours = methods["multimodal"]["mean_auroc"]
    return {
        "evaluable": True,
        "n_folds": summary["n_folds"],
        "multimodal_mean_auroc": ours,
        "best_baseline": best,
        "best_baseline_mean_auroc": methods[best]["mean_auroc"],
        "target_met": ours is not None and ours >= methods[best]["mean_auroc"],
        "methods": methods,
        "exclusions": exclusions,
        "seconds": seconds,
    }


def run_cohort(cohort: str, out_root: Path = RUNS, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """One cohort's study (resumes a finished run of the same config), summarized for the results JSON."""
    from multimodal.cohorts.tcga_response import response_exclusions

    cfg = _config(cohort, overrides)
    t0 = time.perf_counter()
    try:
        c = load_cohort(cfg.data)
    except InputError as exc:
        return {"evaluable": False, "reason": str(exc), "exclusions": response_exclusions(_data_root(), cohort)}
    run_dir = out_root / cohort
    if run_dir.exists():  # a benchmark measures the code as it is now: never resume folds of an earlier run
        shutil.rmtree(run_dir)
    summary = Study(cfg, cohort=c).run(run_dir, overwrite=True)
    return _cohort_result(summary, c.patients.attrs["response_exclusions"], time.perf_counter() - t0)


def run(cohorts: Sequence[str] = COHORTS) -> dict[str, Any]:
    """Run the response studies and return the results (``__main__`` writes them)."""
    t0 = time.perf_counter()
    res: dict[str, Any] = {"cohorts": {c: run_cohort(c) for c in cohorts}}
    res["seconds"] = time.perf_counter() - t0
    res["target"] = "mean AUROC of multimodal >= the best baseline's, same folds, per cohort"
    return res


def tune(candidates: dict[str, list[str]] | None = None, cohort: str = TUNE_COHORT, inner_folds: int = TUNE_INNER_FOLDS,
         out_root: Path = RUNS / "tuning") -> dict[str, Any]:
    """Compare model candidates inside the training part of ``cohort``'s fold 0 (see the module docstring)."""
    cands = candidates if candidates is not None else CANDIDATES
    base = _config(cohort, _tune_overrides(inner_folds))
    full = load_cohort(base.data)
    assert full.splits
    sub = full.subset(full.splits[0].train)
    out: dict[str, Any] = {"protocol": f"stratified {inner_folds}-fold CV on the {len(sub)} training patients of "
                                       f"{full.name} MMP fold 0 (its reporting patients unseen)", "candidates": {}}
    for i, (name, overrides) in enumerate(cands.items()):
        cfg = apply_overrides(base, [*overrides, *([] if i == 0 else ["evaluation.baselines=[]"])])
        t0 = time.perf_counter()
        if (out_root / name).exists():
            shutil.rmtree(out_root / name)
        s = Study(cfg, cohort=sub).run(out_root / name, overwrite=True)
        rec = {k: v["mean"].get("auroc") for k, v in s["methods"].items()}
        rec["folds"] = [f.get("auroc") for f in s["methods"]["multimodal"]["folds"]]
        rec["overrides"], rec["seconds"] = overrides, time.perf_counter() - t0
        out["candidates"][name] = rec
        print(f"tune {name}: {json.dumps({k: v for k, v in rec.items() if k != 'overrides'})}", flush=True)
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cohorts", nargs="*", metavar="COHORT", help=f"any of {', '.join(COHORTS)} (default: all)")
    ap.add_argument("--tune", action="store_true", help="the tuning protocol instead (writes 'tuning')")
    return ap


def _experiment(cohort: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    return experiment_config(REPO / "configs" / f"tcga_response_{cohort}.yaml", [f"data.root={SHARED_DATA}", *overrides])


def _run_config(a: argparse.Namespace, ap: argparse.ArgumentParser) -> dict[str, Any]:
    if a.tune:
        return {"tuning": {"cohort": TUNE_COHORT, "inner_folds": TUNE_INNER_FOLDS, "candidates": CANDIDATES,
                           "experiment": _experiment(TUNE_COHORT, _tune_overrides(TUNE_INNER_FOLDS))}}
    cohorts = a.cohorts or list(COHORTS)
    if unknown := sorted(set(cohorts) - set(COHORTS)):
        ap.error(f"unknown cohort(s) {unknown}: choose from {', '.join(COHORTS)}")
    return {"run": {"cohorts": cohorts, "experiments": {c: _experiment(c) for c in cohorts}}}


def bench_config(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The part of response.json that ``python -m bench.response ARGV`` writes (``None``: ``run``, every cohort);
    ``--tune`` writes the part ``tuning``."""
    ap = _parser()
    return _run_config(ap.parse_args(list(argv or [])), ap)


def main(argv: Sequence[str]) -> int:
    config = bench_config(argv)
    if "tuning" in config:
        write_results("response", {"tuning": tune()}, config, merge=True)
        return 0
    res = run(config["run"]["cohorts"])
    write_results("response", res, config, merge=True)
    brief = {c: {k: r.get(k) for k in ("evaluable", "multimodal_mean_auroc", "best_baseline",
                                       "best_baseline_mean_auroc", "target_met", "seconds")}
             for c, r in res["cohorts"].items()}
    print(json.dumps(brief, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
