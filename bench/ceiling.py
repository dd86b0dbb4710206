"""What any learner can reach on the synthetic benchmarks: reference models given the planted features.

The accuracy targets of issues #4 and #5 compare our model with the oracle (the true linear predictor / the true
per-arm response probabilities). This benchmark measures how close a *correctly specified* model fitted on the same
training patients gets, so a gap can be split into "the data allow no better" and "our model falls short":

* ``latent_true_form``: Cox on the true latent variables that drive the hazard (no decoys): only estimation error.
* ``latent_all``: Cox on every latent variable the generator draws (decoy pathways, decoy drivers, grade, sex): what
  remains is the cost of not knowing which variables matter.
* ``observed_true_form`` / ``observed_all``: the same from features computed from the cohort's files — the
  high-risk-phenotype patch fraction from the generator's *true* patch labels (a perfect patch classifier), the mean
  log-expression z-score of each GMT pathway, non-silent mutations from the MAF, the least-squares LDH slope from MEDS
  events at or before the prediction time, the clinical table, the arm and arm x biomarker interaction.

All reference models are fitted on the training fold only (standardization included) and scored on the reporting
fold with Harrell's c-index; folds are ``Study.folds`` of ``configs/demo.yaml`` (those of ``bench.train``).
For treatment response (the per-arm correlation of issue #5, on ``bench.explain``'s split): logistic regressions
with the true form (response pathway, causal driver, arm, arm x biomarker) and with every observed feature and its
arm interaction (L2, C = 1; and L1 with the penalty chosen by 5-fold CV on the training patients), scored as the
Pearson correlation of the predicted and true per-arm probabilities.

Usage: ``python -m bench.ceiling [SEED ...]`` (default seeds 1 2 3) → ``bench/results/ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from bench.common import cohort_settings, survival_study_config, synthetic_survival_study, write_results
from multimodal.adapters.genesets import read_gene_sets
from multimodal.adapters.meds_io import scan_meds
from multimodal.adapters.omics_io import read_expression, read_maf
from multimodal.metrics import harrell_c

REPO = Path(__file__).resolve().parents[1]
STAGE_INDEX = {"I": 0.0, "II": 1.0, "III": 2.0, "IV": 3.0}
SEEDS = (1, 2, 3)
SURVIVAL_PATIENTS = 300
RESPONSE = {"seed": 0, "patients": 300}


def _latent_frame(truth: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """Every latent variable per patient, and the columns of the true hazard model."""
    from multimodal.cohorts.synthetic_model import CAUSAL_GENE, MODIFIER_PATHWAYS

    rows = {}
    for p in truth["patients"]:
        lat = p["latent"]
        arm = float(p["arm_index"] > 0)
        rows[p["patient_id"]] = {
            "z_high_risk": lat["z_high_risk"], **lat["pathway_activity"],
            **{f"mut_{g}": float(v) for g, v in lat["driver_mutations"].items()},
            "z_ldh_slope": lat["z_ldh_slope"], "age": lat["age"] / 10, "stage": STAGE_INDEX[lat["stage"]],
            "grade": float(lat["grade"]), "male": float(lat["sex"] == "M"), "arm": arm,
            "arm_x_biomarker": arm * lat["pathway_activity"][MODIFIER_PATHWAYS[0]],
        }
    causal = list(truth["causal"]["pathways"])
    true_form = ["z_high_risk", *causal, f"mut_{CAUSAL_GENE}", "z_ldh_slope", "age", "stage", "arm", "arm_x_biomarker"]
    return pd.DataFrame.from_dict(rows, orient="index"), true_form


def observed_features(root: Path, truth: dict[str, Any], patient_ids: list[str]) -> pd.DataFrame:
    """Hand-built features from the cohort's files (NaN where the modality is missing; see the module doc)."""
    from multimodal.cohorts.synthetic import patch_labels
    from multimodal.cohorts.synthetic_model import MODIFIER_PATHWAYS

    f = pd.DataFrame(index=pd.Index(patient_ids, dtype=str))
    hr = truth["causal"]["high_risk_cluster_id"]
    slides = pd.read_csv(root / "slides.csv")
    logit = {}
    for pid, g in slides.groupby("patient_id"):
        labels = np.concatenate([patch_labels(root, s) for s in g["slide_id"]])
        k, n = float(np.sum(labels == hr)), float(labels.size)
        logit[pid] = np.log((k + 0.5) / (n - k + 0.5))  # empirical logit: finite when no patch is high-risk
    f["path_high_risk_logit"] = pd.Series(logit).reindex(f.index)
    expr, _ = read_expression(root / "omics" / "expression.h5ad")
    # per-gene z over all patients (no outcome used): information a fold-wise fit would not have, so it can only
    # raise the reference ceiling
    z = (expr - expr.mean()) / (expr.std() + 1e-6)
    for gs in read_gene_sets(root / "omics" / "pathways.gmt"):
        genes = [g for g in gs.genes if g in z.columns]
        f[gs.name] = z[genes].mean(axis=1).reindex(f.index)
    muts = read_maf(root / "omics" / "mutations.maf", root / "omics" / "sequenced_samples.txt",
                    r"^(?P<patient>.+)-\d{2}[A-Z]$")
    for g in truth["causal"].get("decoy_genes", []) + [truth["causal"]["genes"][0]]:
        f[f"mut_{g}"] = (muts[g] if g in muts.columns else pd.Series(0.0, index=muts.index)).reindex(f.index)
    outcomes = pd.read_parquet(root / "outcomes.parquet").set_index("patient_id")
    lab = truth["causal"]["ehr_codes"][0]
    ev = (scan_meds(root / "meds").filter(pl.col("code") == lab).select("subject_id", "time", "numeric_value")
          .collect().to_pandas())
    pid_of = dict(zip(outcomes["subject_id"], outcomes.index, strict=True))
    ev["pid"] = ev["subject_id"].map(pid_of)
    ev = ev[ev["time"] <= ev["pid"].map(outcomes["prediction_time"])]
    slope = {}
    for pid, g in ev.groupby("pid"):
        years = (g["time"] - g["time"].min()).dt.total_seconds().to_numpy() / (365.25 * 86400)
        if len(g) >= 3 and years.std() > 0:
            slope[pid] = float(np.polyfit(years, g["numeric_value"].to_numpy(float), 1)[0])
    f["ldh_slope"] = pd.Series(slope).reindex(f.index)
    clin = pd.read_csv(root / "clinical.csv").set_index("patient_id").reindex(f.index)
    f["age"] = clin["age"] / 10
    f["stage"] = clin["stage"].map(STAGE_INDEX)
    f["grade"] = clin["grade"].str[1:].astype(float)
    f["male"] = (clin["sex"] == "M").astype(float).where(clin["sex"].notna())
    f["arm"] = (outcomes.loc[f.index, "arm"] != truth["arms"][0]).astype(float)
    f["arm_x_biomarker"] = f["arm"] * f[MODIFIER_PATHWAYS[0]]
    return f


def _design(f: pd.DataFrame, train: list[str], cols: list[str]) -> tuple[pd.DataFrame, Any]:
    """Train-fitted imputation (mean + missing indicator) and standardization; returns (X_train, transform)."""
    x = f[cols]
    miss = [c for c in cols if x[c].isna().any()]
    mean = x.loc[train].mean()

    def transform(ids: list[str]) -> pd.DataFrame:
        out = x.loc[ids].fillna(mean)
        for c in miss:
            out[f"{c}_missing"] = x.loc[ids, c].isna().astype(float)
        return out

    xt = transform(train)
    mu, sd = xt.mean(), xt.std().replace(0, 1.0) + 1e-9
    return (xt - mu) / sd, lambda ids: (transform(ids) - mu) / sd


def _cox_c(f: pd.DataFrame, cols: list[str], cohort: Any, train: list[str], test: list[str]) -> float:
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    xtr, tf = _design(f, train, cols)
    t, e = cohort.survival_arrays(train)
    model = CoxPHSurvivalAnalysis(alpha=1.0).fit(xtr.to_numpy(), Surv.from_arrays(e.astype(bool), t))
    tt, et = cohort.survival_arrays(test)
    return float(harrell_c(tt, et, model.predict(tf(test).to_numpy())))


def survival_ceiling(seed: int, patients: int = SURVIVAL_PATIENTS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        manifest, truth, st = synthetic_survival_study(Path(tmp), patients, seed)
        c = st.cohort
        lat, lat_true = _latent_frame(truth)
        obs = observed_features(manifest.parent, truth, list(c.patient_ids))
        obs_true = ["path_high_risk_logit", *truth["causal"]["pathways"], f"mut_{truth['causal']['genes'][0]}",
                    "ldh_slope", "age", "stage", "arm", "arm_x_biomarker"]
        lp = {p["patient_id"]: p["linear_predictor"] for p in truth["patients"]}
        folds = []
        for fold in st.folds():
            train, test = list(fold.train), list(fold.val)
            t, e = c.survival_arrays(test)
            folds.append({
                "fold": fold.index,
                "oracle": float(harrell_c(t, e, np.array([lp[p] for p in test]))),
                "latent_true_form": _cox_c(lat, lat_true, c, train, test),
                "latent_all": _cox_c(lat, list(lat.columns), c, train, test),
                "observed_true_form": _cox_c(obs, obs_true, c, train, test),
                "observed_all": _cox_c(obs, list(obs.columns), c, train, test),
            })
    mean = {k: float(np.mean([f[k] for f in folds])) for k in folds[0] if k != "fold"}
    return {"seed": seed, "patients": patients, "folds": folds, "mean": mean,
            "gap_to_oracle": {k: mean["oracle"] - v for k, v in mean.items() if k != "oracle"}}


def response_ceiling(seed: int = RESPONSE["seed"], patients: int = RESPONSE["patients"]) -> dict[str, Any]:
    """Per-arm response correlation of reference logistic models on bench.explain's split (seed 0, 1/4 test)."""
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_synthetic_cohort(Path(tmp) / "cohort", SyntheticConfig(patients=patients, seed=seed))
        return {"seed": seed, "patients": patients, **explain_references(manifest)}


def explain_references(manifest: Path) -> dict[str, Any]:
    """Reference models on bench.explain's split of the cohort at ``manifest``.

    ``per_arm_response_corr``: per-arm response correlation of logistic regressions (true form; every observed feature
    with its arm interaction, L2 or L1 with CV). ``pathway_recall_at_5``: recall@5 of the causal pathways when the
    GMT pathway scores are ranked by |coefficient| in a Cox model (ridge, alpha 1) on every observed feature.
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    from multimodal.cohorts.cohort import Cohort
    from multimodal.cohorts.synthetic import load_ground_truth
    from multimodal.cohorts.synthetic_model import CAUSAL_GENE, MODIFIER_PATHWAYS, RESPONSE_PATHWAY
    from multimodal.explain.validation import holdout_split

    truth = load_ground_truth(manifest)
    cohort = Cohort.from_manifest(manifest)
    ids = list(cohort.patient_ids)
    obs = observed_features(manifest.parent, truth, ids)
    train, test = holdout_split(ids)  # the split of bench.explain._train
    y = cohort.patients.loc[train, "response"].to_numpy().astype(int)
    gt = {p["patient_id"]: p["response_probability_by_arm"] for p in truth["patients"]}
    base = [c for c in obs.columns if c not in ("arm", "arm_x_biomarker")]
    forms = {"true_form": [RESPONSE_PATHWAY, f"mut_{CAUSAL_GENE}"], "all_observed": base,
             "all_observed_l1_cv": base}
    out: dict[str, Any] = {}
    for name, cols in forms.items():
        def design(frame: pd.DataFrame, arm: pd.Series | float, cols: list[str] = cols,
                   interact: bool = name != "true_form") -> pd.DataFrame:
            d = frame[cols].copy()
            d["arm"] = arm
            if interact:
                for c in cols:
                    d[f"arm_x_{c}"] = d["arm"] * d[c]
            else:
                d["arm_x_biomarker"] = d["arm"] * frame[MODIFIER_PATHWAYS[0]]
            return d
        xtr = design(obs.loc[train], obs.loc[train, "arm"])
        mean = xtr.mean()
        xtr = xtr.fillna(mean)
        mu, sd = xtr.mean(), xtr.std().replace(0, 1.0) + 1e-9
        if name.endswith("_l1_cv"):  # sparse: penalty by 5-fold CV on the training patients
            with warnings.catch_warnings():  # scikit-learn 1.8 deprecation notices about the penalty spelling
                warnings.simplefilter("ignore", FutureWarning)
                model = LogisticRegressionCV(Cs=20, penalty="l1", solver="liblinear", cv=5, scoring="neg_log_loss",
                                             max_iter=5000, random_state=0).fit((xtr - mu) / sd, y)
        else:
            model = LogisticRegression(C=1.0, max_iter=5000).fit((xtr - mu) / sd, y)
        xs, ys = [], []
        for a, arm in enumerate(truth["arms"]):
            xt = design(obs.loc[test], float(a > 0)).fillna(mean)
            xs += model.predict_proba((xt - mu) / sd)[:, 1].tolist()
            ys += [gt[p][arm] for p in test]
        out[name] = float(np.corrcoef(xs, ys)[0, 1])
    return {"n_test": len(test), "per_arm_response_corr": out,
            "pathway_recall_at_5": _cox_pathway_recall(obs, truth, cohort, train)}


def _cox_pathway_recall(obs: pd.DataFrame, truth: dict[str, Any], cohort: Any, train: list[str]) -> float:
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    cols = [c for c in obs.columns if c != "arm_x_biomarker"]
    xtr, _ = _design(obs, train, cols)
    t, e = cohort.survival_arrays(train)
    coef = pd.Series(CoxPHSurvivalAnalysis(alpha=1.0).fit(xtr.to_numpy(), Surv.from_arrays(e.astype(bool), t)).coef_,
                     index=xtr.columns)
    pathways = [g for g in truth["pathways"] if g in coef.index]
    top5 = coef[pathways].abs().sort_values(ascending=False).index[:5]
    causal = truth["causal"]["pathways"]
    return len(set(top5) & set(causal)) / len(causal)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("seeds", nargs="*", type=int, metavar="SEED", help="survival cohort seeds (default: 1 2 3)")
    return ap


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """What ``python -m bench.ceiling ARGV`` runs (``None``: seeds 1 2 3): each survival study, the response cohort."""
    seeds = _parser().parse_args(argv or []).seeds or list(SEEDS)
    return {"seeds": seeds, "survival": survival_study_config(SURVIVAL_PATIENTS),
            "response": {**RESPONSE, "cohort_settings": cohort_settings()}}


def main(argv: list[str]) -> int:
    config = bench_config(argv)
    seeds = config["seeds"]
    t0 = time.perf_counter()
    surv = [survival_ceiling(s) for s in seeds]
    for s in surv:
        print(json.dumps({"seed": s["seed"], **{k: round(v, 4) for k, v in s["mean"].items()}}), flush=True)
    resp = response_ceiling()
    print(json.dumps(resp), flush=True)
    write_results("ceiling", {"survival": surv, "response": resp, "seconds": time.perf_counter() - t0,
                              "note": "reference models given the planted features; see bench/ceiling.py"}, config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
