"""TCGA first-course response cohorts: endpoint mapping, exclusion counts, leakage guard, folds and a tiny cv run."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from multimodal.adapters.clinical import ClinicalAdapter, ClinicalAdapterConfig
from multimodal.baselines import make_tabular
from multimodal.cohorts import ClinicalSource, Cohort, OmicsSource
from multimodal.cohorts.tcga_response import (
    EXCLUDED_OUTCOMES,
    POST_BASELINE_COLUMNS,
    RESPONSE_COLUMN,
    is_post_baseline,
    load_tcga_response_cohort,
    response_exclusions,
)
from multimodal.config import from_dict
from multimodal.errors import InputError

REPO = Path(__file__).resolve().parents[2]
MMP = Path("tcga_mmp/splits/survival")
# Counted independently from the raw CDR rows of MMP fold 0 (train + test, one row per case_id).
EXPECTED = {
    "blca": {"labelled": 317, "pos": 215, "neg": 102, "redacted": 1,
             "no_label": {"[Unknown]": 21, "[Not Applicable]": 11, "[Not Available]": 9, "[Discrepancy]": 0,
                          "missing": 0}},
    "kirc": {"labelled": 107, "pos": 94, "neg": 13, "redacted": 0,
             "no_label": {"[Unknown]": 5, "[Not Applicable]": 6, "[Not Available]": 222, "[Discrepancy]": 0,
                          "missing": 0}},
}


def _raw_cdr(root: Path, c: str, k: int = 0) -> pd.DataFrame:
    d = root / MMP / f"TCGA_{c.upper()}_overall_survival_k={k}"
    df = pd.concat([pd.read_csv(d / f"{p}.csv.gz", low_memory=False) for p in ("train", "test")])
    return df.drop_duplicates("case_id").set_index("case_id")


@pytest.fixture(scope="module")
def cohorts(shared_data: Path) -> dict[str, Cohort]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {c: load_tcga_response_cohort(shared_data, c.upper() if c == "kirc" else c) for c in EXPECTED}


def _config_section(name: str) -> dict:
    return yaml.safe_load((REPO / "configs" / f"tcga_response_{name}.yaml").read_text())


# ---- endpoint -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_endpoint_mapping_against_raw_rows(cohorts, shared_data, name):
    co, exp = cohorts[name], EXPECTED[name]
    raw = _raw_cdr(shared_data, name)
    p = co.patients
    assert co.response_classes == 2 and str(p["response"].dtype) == "Int64" and p["response"].notna().all()
    assert len(co) == exp["labelled"] and int((p["response"] == 1).sum()) == exp["pos"]
    assert int((p["response"] == 0).sum()) == exp["neg"]
    outcome = raw.loc[p.index, RESPONSE_COLUMN]
    assert ((outcome == "Complete Remission/Response") == (p["response"] == 1)).all()
    assert outcome.isin(["Partial Remission/Response", "Stable Disease", "Progressive Disease"])[p["response"] == 0].all()
    assert not outcome.isin(EXCLUDED_OUTCOMES).any()
    # time / event: CDR overall survival (days), event = 1 - os_censorship
    assert (p["time"].to_numpy() == raw.loc[p.index, "os_survival_days"].to_numpy(float)).all()
    assert (p["event"].to_numpy() == (raw.loc[p.index, "os_censorship"] == 0).to_numpy()).all()
    assert co.time_unit == "days"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exclusion_counts(cohorts, shared_data, name):
    exp = EXPECTED[name]
    ex = cohorts[name].patients.attrs["response_exclusions"]
    assert ex["excluded_no_label"] == exp["no_label"] and ex["excluded_redacted"] == exp["redacted"]
    assert ex["n_labelled"] == exp["labelled"]
    assert ex["n_excluded"] + ex["n_labelled"] == ex["n_cdr_patients"] == len(_raw_cdr(shared_data, name))
    assert response_exclusions(shared_data, name) == {k: ex[k] for k in response_exclusions(shared_data, name)}


def test_cohort_without_labels_is_an_input_error_with_counts(shared_data):
    ex = response_exclusions(shared_data, "brca")
    assert ex["n_labelled"] == 0 and ex["excluded_no_label"]["[Not Available]"] == ex["n_cdr_patients"] == 868
    with pytest.raises(InputError, match=r"no usable treatment_outcome_first_course.*868"):
        load_tcga_response_cohort(shared_data, "brca")


def test_unrecognised_outcome_names_the_patient(shared_data, tmp_path):
    src = shared_data / MMP / "TCGA_KIRC_overall_survival_k=0"
    dst = tmp_path / MMP / "TCGA_KIRC_overall_survival_k=0"
    dst.mkdir(parents=True)
    for part in ("train", "test"):
        df = pd.read_csv(src / f"{part}.csv.gz", low_memory=False)
        if part == "train":
            bad = df["case_id"].iloc[0]
            df.loc[df["case_id"] == bad, RESPONSE_COLUMN] = "Complete response"
        df.to_csv(dst / f"{part}.csv.gz", index=False)
    with pytest.raises(InputError, match="unrecognised outcome 'Complete response'") as info:
        load_tcga_response_cohort(tmp_path, "kirc")
    assert info.value.problems[0].patient == bad and info.value.problems[0].field == RESPONSE_COLUMN


# ---- leakage guard -------------------------------------------------------------------------------------------------
def test_post_baseline_columns_never_reach_inputs(cohorts, shared_data):
    for name, co in cohorts.items():
        raw_cols = _raw_cdr(shared_data, name).columns
        leaky = [c for c in raw_cols if is_post_baseline(c)]
        assert set(POST_BASELINE_COLUMNS) <= set(raw_cols) | {"pfs_censorship", "pfs_survival_days"}
        assert {"vital_status", "tumor_status", RESPONSE_COLUMN, "os_survival_days", "new_tumor_event_type"} <= set(leaky)
        clin = co.modalities["clinical"]
        assert isinstance(clin, ClinicalSource) and isinstance(co.modalities["genomics"], OmicsSource)
        assert not set(clin.table.columns) & set(leaky)
        assert {"age_at_initial_pathologic_diagnosis", "sex", "ajcc_pathologic_tumor_stage"} <= set(clin.table.columns)
        # the tabular baselines read the same table
        tab = make_tabular(co, co.patient_ids[:5])
        assert not [c for c in tab.columns if c.startswith("clinical:") and is_post_baseline(c.split(":", 1)[1])]


@pytest.mark.parametrize("name", ["blca", "brca", "kirc"])
def test_config_declares_the_exclusion_list(name):
    section = _config_section(name)
    assert section["task"] == "response" and section["data"]["layout"] == "tcga_response"
    assert section["training"]["select_metric"] == "auroc"
    assert section["evaluation"]["baselines"] == ["logistic_clinical", "enet_logistic", "random_forest", "gradient_boosting",
                                                  "attention_mil"]
    cfg = from_dict(ClinicalAdapterConfig, section["adapters"]["clinical"])
    assert set(POST_BASELINE_COLUMNS) <= set(cfg.exclude)
    for col in POST_BASELINE_COLUMNS:  # the patterns alone catch every one of them as well
        assert any(re.fullmatch(p, col, flags=re.IGNORECASE) for p in cfg.exclude_patterns), col


def test_no_excluded_column_reaches_a_token(cohorts):
    co = cohorts["blca"]
    cfg = from_dict(ClinicalAdapterConfig, _config_section("blca")["adapters"]["clinical"])
    # a table that does carry leaky columns: the adapter's exclusion still keeps them out of every token
    clin = co.modalities["clinical"]
    assert isinstance(clin, ClinicalSource)
    leaky_table = clin.table.assign(vital_status="Dead", os_survival_days=100.0, tumor_status="WITH TUMOR")
    leaky = Cohort(name=co.name, patients=co.patients, modalities={"clinical": ClinicalSource(
        table=leaky_table, categorical=(*clin.categorical, "vital_status", "tumor_status"),
        numeric=(*clin.numeric, "os_survival_days"))})
    for cohort in (co, leaky):
        ad = ClinicalAdapter(cfg).fit(cohort, cohort.patient_ids[:200])
        names = {v.name for v in ad.variables}
        assert names == set(clin.table.columns)
        assert not [v for v in ad.vocabulary if is_post_baseline(v.split("=", 1)[0])]
        stream = ad.transform(cohort.patient_ids[-1])
        assert all(not is_post_baseline(n.split(" = ", 1)[0]) for n in stream.names[0])
    assert set(ad.excluded) == {"vital_status", "tumor_status", "os_survival_days"}


# ---- folds ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_folds_patient_level_disjoint_labelled(cohorts, shared_data, name):
    co = cohorts[name]
    labelled = set(co.patient_ids)
    assert co.splits
    for f in co.splits:
        f.check_disjoint()
        assert set(f.train) | set(f.val) <= labelled and f.val and f.train
        assert len(set(f.val)) == len(f.val)  # patient level: one entry per patient
        raw = pd.read_csv(shared_data / MMP / f"TCGA_{name.upper()}_overall_survival_k={f.index}" / "test.csv.gz",
                          usecols=["case_id"])
        assert set(f.val) == set(raw["case_id"]) & labelled
    vals = [p for f in co.splits for p in f.val]
    assert len(vals) == len(set(vals))  # the reporting folds do not overlap
    ex = co.patients.attrs["response_exclusions"]
    if name == "blca":
        assert [f.index for f in co.splits] == [0, 1, 2, 3, 4] and set(vals) == labelled
    else:  # KIRC: MMP fold 3's test part has no labelled patient
        assert [f.index for f in co.splits] == [0, 1, 2, 4] and ex["folds_dropped_no_labelled_test"] == [3]


# ---- a tiny study ----------------------------------------------------------------------------------------------------
def test_tiny_cv_run_writes_response_summary(shared_data, tmp_path):
    from multimodal.cli.main import main

    out = tmp_path / "run"
    sets = [f"data.root={shared_data}", "evaluation.max_folds=1", "evaluation.bootstrap=20",
            "evaluation.ablations=false", "evaluation.baselines=[logistic_clinical, random_forest]",
            "training.epochs=2", "training.patience=2", "model.d_model=16", "model.num_latents=2",
            "adapters.genomics.datatypes=[rna]", "adapters.genomics.max_members=16"]
    argv = ["cv", str(REPO / "configs" / "tcga_response_kirc.yaml"), "--out", str(out)]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "response" and summary["n_folds"] == 1
    assert set(summary["methods"]) == {"multimodal", "logistic_clinical", "random_forest"}
    for m in summary["methods"].values():
        assert set(m["mean"]) == {"auroc", "auprc", "brier", "calibration_slope", "ici"}
        assert 0.0 <= m["mean"]["auroc"] <= 1.0 and 0.0 <= m["mean"]["brier"] <= 1.0
        lo, hi = m["ci95"]["auroc_bootstrap"]
        assert lo <= hi
        assert m["folds"][0]["n"] == 14 and m["folds"][0]["n_positive"] == 12
    preds = pd.read_parquet(out / "predictions.parquet")
    assert preds["response"].notna().all() and preds["response_prob"].between(0, 1).all()


# ---- the codebook's vocabulary, not the values seen in three cohorts (issue 23 class 11) --------------------------------
def _cdr(values: list[object]) -> pd.DataFrame:
    ids = [f"TCGA-XX-{i:04d}" for i in range(len(values))]
    return pd.DataFrame({RESPONSE_COLUMN: values}, index=pd.Index(ids, name="case_id"))


def test_codebook_missing_value_codes_are_counted_and_excluded(tmp_path: Path) -> None:
    from multimodal.cohorts.tcga_response import _labels

    cdr = _cdr(["Complete Remission/Response", "Stable Disease", "[Not Evaluated]", "[Not Evaluated]",
                "[Not Reported]", "[Unknown]", None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # codebook codes: no warning
        y, counts = _labels(cdr, tmp_path / "cdr.csv")
    assert y.tolist()[:2] == [1, 0] and y.iloc[2:].isna().all()
    ex = counts["excluded_no_label"]
    assert ex["[Not Evaluated]"] == 2 and ex["[Not Reported]"] == 1 and ex["[Unknown]"] == 1 and ex["missing"] == 1
    assert ex["[Discrepancy]"] == 0  # the four historical codes are always listed
    assert counts["n_excluded"] == 5 and counts["n_labelled"] == 2


def test_an_unlisted_bracketed_code_is_excluded_with_a_warning(tmp_path: Path) -> None:
    from multimodal.cohorts.tcga_response import _labels

    cdr = _cdr(["Progressive Disease", "[Not Yet Collected]"])
    with pytest.warns(UserWarning, match=r"\[Not Yet Collected\].*not in the TCGA codebook"):
        y, counts = _labels(cdr, tmp_path / "cdr.csv")
    assert y.tolist()[0] == 0 and pd.isna(y.iloc[1]) and counts["excluded_no_label"]["[Not Yet Collected]"] == 1


def test_an_unbracketed_unknown_outcome_would_change_a_label_and_is_refused(tmp_path: Path) -> None:
    from multimodal.cohorts.tcga_response import _labels

    cdr = _cdr(["Complete Remission/Response", "No Measureable Tumor or Tumor Markers"])
    with pytest.raises(InputError, match="would change a label") as info:
        _labels(cdr, tmp_path / "cdr.csv")
    p = info.value.problems[0]
    assert p.patient == "TCGA-XX-0001" and p.field == RESPONSE_COLUMN and "No Measureable" in p.message
