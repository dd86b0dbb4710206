"""Survival + response training: how much of the response loss should reach the shared layers (development study).

Behind the default of ``model.response_trunk_grad`` and the demo config's ``dropout``, ``response_trunk_grad`` and
``ensemble`` / ``training.average_epochs`` (``demo_config``: the chosen setting, a 3-member deep ensemble with
weight averaging over 5 epochs).
On synthetic **development** cohorts (300 patients, seeds 11-13; the benchmark cohorts use seeds 0-2 and are not
touched), ``configs/demo.yaml`` with ``task=both`` is run with stratified 5-fold CV (``Study.folds``, inner
validation as in ``multimodal cv``) for each candidate, plus a survival-only reference. Per reporting fold: Harrell's
c-index, the response AUROC under the assigned arm and the Pearson correlation of the predicted per-arm response
probabilities with the true ones.

Usage: ``python -m bench.multitask`` → ``bench/results/multitask.json`` (about 1 hour on 2 cores; 69 min measured while tests shared the machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEMO_CONFIG, SYNTHETIC_MANIFEST, cohort_settings, experiment_config, fit_fold, write_results

REPO = Path(__file__).resolve().parents[1]
DEV_SEEDS = (11, 12, 13)
PATIENTS = 300
# every candidate pins what it compares: changing the demo config does not change what a candidate means
ONE = ["model.ensemble=1", "training.average_epochs=1"]  # one training, the selected epoch's weights
CANDIDATES: dict[str, list[str]] = {
    "trunk_grad_1.0": ["task=both", "model.dropout=0.1", "model.response_trunk_grad=1.0", *ONE],
    "trunk_grad_0.1": ["task=both", "model.dropout=0.1", "model.response_trunk_grad=0.1", *ONE],
    "dropout_0.3_trunk_grad_0.1": ["task=both", "model.dropout=0.3", "model.response_trunk_grad=0.1", *ONE],
    "dropout_0.3_trunk_grad_0.3": ["task=both", "model.dropout=0.3", "model.response_trunk_grad=0.3", *ONE],
    "dropout_0.3_trunk_grad_0.3_average_5": ["task=both", "model.dropout=0.3", "model.response_trunk_grad=0.3",
                                             "model.ensemble=1", "training.average_epochs=5"],
    "demo_config": ["task=both", "model.dropout=0.3", "model.response_trunk_grad=0.3", "model.ensemble=3",
                    "training.average_epochs=5"],
    "survival_only": ["task=survival", "model.dropout=0.1", *ONE],
    "survival_only_dropout_0.3": ["task=survival", "model.dropout=0.3", *ONE],
}


def _folds(manifest: Path, truth: dict[str, Any], overrides: list[str]) -> list[dict[str, float]]:
    from sklearn.metrics import roc_auc_score

    from multimodal.experiment import load_experiment
    from multimodal.metrics import harrell_c
    from multimodal.study import Study

    cfg = load_experiment(DEMO_CONFIG, [f"data.manifest={manifest}", *overrides])
    st = Study(cfg)
    c = st.cohort
    by_arm = {p["patient_id"]: p["response_probability_by_arm"] for p in truth["patients"]}
    out = []
    for fold in st.folds():
        pipe, _, test = fit_fold(st, fold)
        pred = pipe.predict(c, test).set_index("patient_id").loc[test]
        t, e = c.survival_arrays(test)
        rec = {"fold": fold.index, "c_index": float(harrell_c(t, e, pred["risk"].to_numpy()))}
        if "response_prob" in pred:
            rec["response_auroc"] = float(roc_auc_score(c.patients.loc[test, "response"].astype(int),
                                                        pred["response_prob"]))
            xs = np.concatenate([pred[f"response_prob_arm_{a}"] for a in range(len(truth["arms"]))])
            ys = np.concatenate([[by_arm[p][arm] for p in test] for arm in truth["arms"]])
            rec["per_arm_response_corr"] = float(np.corrcoef(xs, ys)[0, 1])
        out.append(rec)
    return out


def run(seeds: tuple[int, ...] = DEV_SEEDS, patients: int = PATIENTS) -> dict[str, Any]:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort, load_ground_truth

    t0 = time.perf_counter()
    res: dict[str, Any] = {"seeds": list(seeds), "patients": patients, "candidates": {}}
    with tempfile.TemporaryDirectory() as tmp:
        cohorts = {}
        for s in seeds:
            m = generate_synthetic_cohort(Path(tmp) / f"s{s}", SyntheticConfig(patients=patients, seed=s))
            cohorts[s] = (m, load_ground_truth(m))
        for name, overrides in CANDIDATES.items():
            per_seed = {s: _folds(m, truth, overrides) for s, (m, truth) in cohorts.items()}
            rows = [r for v in per_seed.values() for r in v]
            keys = [k for k in rows[0] if k != "fold"]
            res["candidates"][name] = {
                "overrides": overrides,
                "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
                "per_seed": {str(s): {k: float(np.mean([r[k] for r in v])) for k in keys} for s, v in per_seed.items()},
                "folds": {str(s): v for s, v in per_seed.items()},
            }
            print(name, json.dumps(res["candidates"][name]["mean"]), flush=True)
    res["seconds"] = time.perf_counter() - t0
    return res


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=__doc__.split("\n\n")[0])


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """What ``python -m bench.multitask`` runs (no arguments): the cohorts, configs/demo.yaml and each candidate's
    overrides of it."""
    _parser().parse_args(argv or [])
    return {"seeds": list(DEV_SEEDS), "patients": PATIENTS, "cohort_settings": cohort_settings(),
            "experiment": experiment_config(DEMO_CONFIG, [f"data.manifest={SYNTHETIC_MANIFEST}"]),
            "candidates": CANDIDATES}


def main(argv: list[str] | None = None) -> int:
    config = bench_config(sys.argv[1:] if argv is None else argv)
    write_results("multitask", run(tuple(config["seeds"]), config["patients"]), config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
