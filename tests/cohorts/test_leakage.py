"""No outcome leakage by construction: declared, excluded, outcome-like and identifier-like columns never reach a
feature path (the clinical source's table, the tabular baselines, the clinical adapter), whatever the file layout.

Three layouts on disk: (1) separate patient and clinical tables (the clinical one carrying copies of the outcome),
(2) one table named as both ``patients.path`` and ``clinical.path``, (3) a cBioPortal patient table. The outcome is
planted as perfectly predictive columns, so every test here fails when a leak comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from multimodal.adapters.clinical import ClinicalAdapter
from multimodal.baselines import create_baseline, make_tabular
from multimodal.cohorts import ClinicalSource, Cohort
from multimodal.cohorts.clinical_columns import clinical_feature_table, identifier_reason
from multimodal.cohorts.validate import validate_manifest
from multimodal.metrics import auroc, harrell_c

N = 160
FEATURES = ("age", "sex", "stage")


def _raw(n: int = N, seed: int = 0) -> pd.DataFrame:
    """One row per patient: outcomes, declared fields, identifiers and three real features (age, sex, stage)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(35, 85, n)
    stage = rng.choice(["I", "II", "III", "IV"], n)
    lp = 0.02 * (age - 60) + 0.3 * pd.Series(stage).map({"I": 0, "II": 1, "III": 2, "IV": 3}).to_numpy()
    t = rng.exponential(30 * np.exp(-lp))
    c = rng.exponential(45, n)
    time = np.round(np.minimum(t, c), 2) + 0.01
    df = pd.DataFrame({
        "patient_id": [f"P{i:04d}" for i in range(n)],
        "OS_months": time,
        "OS_status": (t <= c).astype(int),
        "best_response": (time > np.median(time)).astype(int),  # perfectly predictive of time
        "arm": rng.choice(["A", "B"], n),
        "index_date": pd.date_range("2016-01-01", periods=n, freq="3D").strftime("%Y-%m-%d"),
        "subject_id": np.arange(5000, 5000 + n),
        "mrn": [f"MRN{int(x):08d}" for x in rng.choice(10**8, n, replace=False)],
        "dx_date": pd.date_range("2015-01-01", periods=n, freq="5D").strftime("%d/%m/%Y"),
        "notes": [f"seen in clinic on visit {i}, discussed plan and follow on imaging #{i * 7}" for i in range(n)],
        "record_number": rng.choice(np.arange(10**6, 10**7), n, replace=False),
        "age": age,
        "sex": rng.choice(["F", "M"], n),
        "stage": stage,
        "leak_score": -time,  # excluded in the manifest
        "PFS_MONTHS": time * 0.8,  # undeclared, outcome-like name
    })
    order = np.argsort(df["OS_months"].to_numpy(), kind="stable")
    df = df.iloc[order].reset_index(drop=True)
    df.insert(0, "Unnamed: 0", np.arange(n))  # a row number of a file sorted by outcome: perfectly predictive
    return df


PATIENT_COLUMNS = ("patient_id", "OS_months", "OS_status", "best_response", "arm", "index_date", "subject_id")
PATIENTS_SPEC: dict[str, Any] = {
    "id": "patient_id", "time": "OS_months", "event": "OS_status", "time_unit": "months", "response": "best_response",
    "treatment": "arm", "prediction_time": "index_date", "meds_subject_id": "subject_id",
}
IDENTIFIERS = ("mrn", "dx_date", "notes", "record_number", "Unnamed: 0")


@dataclass
class Layout:
    manifest: Path
    forbidden: tuple[str, ...]  # columns of the clinical file that must never be a feature
    features: tuple[str, ...] = FEATURES


def _manifest(root: Path, patients: dict[str, Any], clinical: dict[str, Any]) -> Path:
    data = {"version": 1, "name": root.name, "patients": patients,
            "modalities": {"clinical": {"type": "clinical", **clinical}}}
    path = root / "manifest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def separate_tables(root: Path, *, copies: bool = True, clinical: dict[str, Any] | None = None) -> Layout:
    """Layout 1: patients.csv with the declared columns, clinical.csv with the rest (and, with ``copies``, the
    outcome columns again, as exports often have them)."""
    root.mkdir(parents=True, exist_ok=True)
    raw = _raw()
    raw[list(PATIENT_COLUMNS)].to_csv(root / "patients.csv", index=False)
    clin_cols = [c for c in raw.columns if c not in PATIENT_COLUMNS or c == "patient_id" or copies]
    raw[clin_cols].to_csv(root / "clinical.csv", index=False)
    spec = {"path": "clinical.csv", "id": "patient_id", "exclude": ["leak_score"], **(clinical or {})}
    path = _manifest(root, {"path": "patients.csv", **PATIENTS_SPEC}, spec)
    forbidden = tuple(c for c in clin_cols if c not in FEATURES and c != "patient_id")
    return Layout(path, forbidden)


def shared_table(root: Path, *, clinical: dict[str, Any] | None = None) -> Layout:
    """Layout 2: one CSV named both as the patient table and as the clinical table."""
    root.mkdir(parents=True, exist_ok=True)
    raw = _raw()
    raw.to_csv(root / "cohort.csv", index=False)
    spec = {"path": "cohort.csv", "id": "patient_id", "exclude": ["leak_score"], **(clinical or {})}
    path = _manifest(root, {"path": "cohort.csv", **PATIENTS_SPEC}, spec)
    return Layout(path, tuple(c for c in raw.columns if c not in FEATURES and c != "patient_id"))


def cbioportal(root: Path) -> Layout:
    """Layout 3: a cBioPortal ``data_clinical_patient`` table (coded statuses), shared by patients and clinical."""
    root.mkdir(parents=True, exist_ok=True)
    raw = _raw()
    df = pd.DataFrame({
        "PATIENT_ID": [f"TCGA-{i:02d}-{i * 37 % 9999:04d}" for i in range(N)],
        "OTHER_PATIENT_ID": [f"{i:04x}-aa{i * 13:05d}-uuid" for i in range(N)],
        "OS_MONTHS": raw["OS_months"],
        "OS_STATUS": np.where(raw["OS_status"] == 1, "1:DECEASED", "0:LIVING"),
        "DFS_MONTHS": raw["OS_months"] * 0.7,
        "DFS_STATUS": np.where(raw["OS_status"] == 1, "1:Recurred/Progressed", "0:DiseaseFree"),
        "PFS_STATUS": np.where(raw["OS_status"] == 1, "1:PROGRESSION", "0:CENSORED"),
        "DAYS_LAST_FOLLOWUP": (raw["OS_months"] * 30.4).round(),
        "PERSON_NEOPLASM_CANCER_STATUS": np.where(raw["OS_status"] == 1, "With Tumor", "Tumor Free"),
        "FORM_COMPLETION_DATE": pd.date_range("2013-01-01", periods=N, freq="2D").strftime("%Y-%m-%d"),
        "AGE": raw["age"],
        "SEX": raw["sex"],
        "AJCC_PATHOLOGIC_TUMOR_STAGE": "Stage " + raw["stage"],
    })
    df.to_csv(root / "data_clinical_patient.txt", sep="\t", index=False)
    patients = {"path": "data_clinical_patient.txt", "id": "PATIENT_ID", "time": "OS_MONTHS", "event": "OS_STATUS",
                "time_unit": "months"}
    path = _manifest(root, patients, {"path": "data_clinical_patient.txt", "id": "PATIENT_ID"})
    features = ("AGE", "SEX", "AJCC_PATHOLOGIC_TUMOR_STAGE")
    return Layout(path, tuple(c for c in df.columns if c not in features and c != "PATIENT_ID"), features)


LAYOUTS = {"separate": separate_tables, "shared": shared_table, "cbioportal": cbioportal}


def _split(cohort: Cohort) -> tuple[list[str], list[str]]:
    ids = list(cohort.patient_ids)
    rng = np.random.default_rng(1)
    rng.shuffle(ids)
    cut = int(0.7 * len(ids))
    return ids[:cut], ids[cut:]


def _source(cohort: Cohort) -> ClinicalSource:
    src = cohort.modalities["clinical"]
    assert isinstance(src, ClinicalSource)
    return src


# ---- every layout: nothing forbidden reaches a feature path --------------------------------------------------------
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_no_declared_or_identifier_column_reaches_a_feature_path(tmp_path: Path, layout: str) -> None:
    lay = LAYOUTS[layout](tmp_path / layout)
    cohort = Cohort.from_manifest(lay.manifest)
    src = _source(cohort)
    # (a) the clinical source's table
    assert tuple(src.table.columns) == lay.features
    assert set(src.removed) == set(lay.forbidden), src.removed
    # (b) the tabular baselines' features
    X = make_tabular(cohort, cohort.patient_ids, modalities=("clinical",))
    assert list(X.columns) == [f"clinical:{c}" for c in lay.features]
    # (c) the clinical adapter's vocabulary and token names
    train, _ = _split(cohort)
    adapter = ClinicalAdapter().fit(cohort, train)
    assert [v.name for v in adapter.variables] == list(lay.features)
    vocab_columns = {code.split("=")[0] for code in adapter.vocabulary[2:]}
    names = {n.split(" = ")[0] for pid in cohort.patient_ids for n in adapter.transform(pid).names[0]}
    for col in lay.forbidden:
        assert col not in vocab_columns and col not in names, col


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_identifier_like_columns_are_warned_about_by_file_and_column(tmp_path: Path, layout: str) -> None:
    lay = LAYOUTS[layout](tmp_path / layout)
    report = validate_manifest(lay.manifest)
    assert report.ok, report.problems
    src = _source(Cohort.from_manifest(lay.manifest))
    identifiers = [c for c, why in src.removed.items() if why.startswith("identifier-like")]
    assert identifiers
    for col in identifiers:
        hits = [w for w in report.warnings if w.field == col and "identifier-like" in w.message]
        assert len(hits) == 1 and Path(str(hits[0].file)).name == Path(str(src.path)).name, col
    assert report.summary["modalities"]["clinical"]["removed_columns"] == src.removed


def test_identifier_rules() -> None:
    n = 40
    rng = np.random.default_rng(0)
    cases = {
        "mrn_text": pd.Series([f"MRN{i:07d}" for i in range(n)]),
        "date_text": pd.Series(pd.date_range("2020-01-01", periods=n).strftime("%Y-%m-%d")),
        "date_dtype": pd.Series(pd.date_range("2020-01-01", periods=n)),
        "free_text": pd.Series([f"patient reports mild pain, score {i % 25}, and fatigue" for i in range(n)]),
        "mrn": pd.Series(rng.choice(10**7, n, replace=False)),
        "Unnamed: 0": pd.Series(np.arange(n)),
    }
    for name, s in cases.items():
        assert identifier_reason(name, s) is not None, name
    kept = {
        "age": pd.Series(np.arange(40, 40 + n)),  # distinct consecutive integers, but an age
        "platelets": pd.Series(rng.choice(np.arange(150_000, 400_000), n, replace=False)),  # distinct, not an id
        "stage": pd.Series(rng.choice(["I", "II", "III"], n)),
        "histology": pd.Series(rng.choice(["Infiltrating Ductal Carcinoma of the breast, NOS", "Lobular"], n)),
        "weight": pd.Series(rng.normal(70, 10, n)),
        "few_rows_ids": pd.Series([f"X{i}" for i in range(5)]),
    }
    for name, s in kept.items():
        assert identifier_reason(name, s) is None, name


# ---- the planted outcome cannot be learnt ----------------------------------------------------------------------------
def test_shared_table_coxph_clinical_cannot_see_the_outcome(tmp_path: Path) -> None:
    cohort = Cohort.from_manifest(shared_table(tmp_path / "shared").manifest)
    train, test = _split(cohort)
    X = make_tabular(cohort, cohort.patient_ids, modalities=("clinical",))
    (tt, te), (vt, ve) = cohort.survival_arrays(train), cohort.survival_arrays(test)
    model = create_baseline("coxph_clinical").fit(X.loc[train], tt, te)
    c = harrell_c(vt, ve, model.predict_risk(X.loc[test]))
    assert c < 0.8, c
    # the test can fail: the same model given the planted column scores near 1
    leaky = X.assign(**{"clinical:OS_months": cohort.patients["time"].reindex(X.index)})
    leaky_model = create_baseline("coxph_clinical").fit(leaky.loc[train], tt, te)
    assert harrell_c(vt, ve, leaky_model.predict_risk(leaky.loc[test])) > 0.9


def test_shared_table_logistic_clinical_cannot_see_the_response(tmp_path: Path) -> None:
    cohort = Cohort.from_manifest(shared_table(tmp_path / "shared").manifest)
    train, test = _split(cohort)
    X = make_tabular(cohort, cohort.patient_ids, modalities=("clinical",))
    y = cohort.patients["response"].astype(int)
    model = create_baseline("logistic_clinical").fit(X.loc[train], y.loc[train].to_numpy())
    assert auroc(y.loc[test].to_numpy(), model.predict_proba(X.loc[test])[:, 1]) < 0.85


def test_shared_table_gives_the_same_features_as_two_files(tmp_path: Path) -> None:
    one = Cohort.from_manifest(shared_table(tmp_path / "one").manifest)
    two = Cohort.from_manifest(separate_tables(tmp_path / "two", copies=False).manifest)
    ids = one.patient_ids
    assert sorted(ids) == sorted(two.patient_ids)
    pd.testing.assert_frame_equal(make_tabular(one, ids, modalities=("clinical",)),
                                  make_tabular(two, ids, modalities=("clinical",)))


# ---- explicit declarations ---------------------------------------------------------------------------------------
def test_an_explicitly_declared_identifier_column_is_kept(tmp_path: Path) -> None:
    lay = shared_table(tmp_path / "declared", clinical={"categorical": ["sex", "stage", "mrn"], "numeric": ["age"]})
    report = validate_manifest(lay.manifest)
    assert report.ok, report.problems
    assert any(w.field == "mrn" and "used because it is declared" in w.message for w in report.warnings)
    cohort = Cohort.from_manifest(lay.manifest)
    src = _source(cohort)
    assert "mrn" in src.table.columns and "mrn" not in src.removed and src.allowed == ("mrn",)
    assert "clinical:mrn" in make_tabular(cohort, cohort.patient_ids, modalities=("clinical",)).columns
    adapter = ClinicalAdapter().fit(cohort, _split(cohort)[0])
    assert "mrn" in [v.name for v in adapter.variables]


def test_an_identifier_declared_in_the_adapter_config_reaches_that_adapter_only(tmp_path: Path) -> None:
    cohort = Cohort.from_manifest(shared_table(tmp_path / "adapter").manifest)
    src = _source(cohort)
    assert src.withheld is not None and "dx_date" in src.withheld.columns and "dx_date" not in src.table.columns
    adapter = ClinicalAdapter(categorical=("sex", "dx_date")).fit(cohort, _split(cohort)[0])
    assert [v.name for v in adapter.variables] == [*FEATURES, "dx_date"]
    assert "clinical:dx_date" not in make_tabular(cohort, cohort.patient_ids, modalities=("clinical",)).columns


def test_declaring_an_outcome_as_a_feature_is_a_problem(tmp_path: Path) -> None:
    lay = shared_table(tmp_path / "conflict", clinical={"numeric": ["age", "OS_months"]})
    report = validate_manifest(lay.manifest)
    bad = [p for p in report.problems if "'OS_months'" in p.message]
    assert bad and "patients.time" in bad[0].message and bad[0].field == "modalities.clinical.numeric"
    cohort = Cohort.from_manifest(shared_table(tmp_path / "ok").manifest)
    from multimodal.errors import InputError

    with pytest.raises(InputError, match="removed from the features.*patients.time"):
        ClinicalAdapter(numeric=("OS_months",), exclude_patterns=()).fit(cohort, cohort.patient_ids)


def test_clinical_feature_table_reports_every_reason() -> None:
    raw = _raw().set_index("patient_id")
    clean, removed = clinical_feature_table(raw, {"OS_months": "patients.time"}, exclude=["leak_score"])
    assert removed["OS_months"] == "declared as patients.time"
    assert removed["leak_score"] == "listed in exclude"
    assert removed["PFS_MONTHS"].startswith("outcome-like") and removed["best_response"].startswith("outcome-like")
    assert all(removed[c].startswith("identifier-like") for c in IDENTIFIERS)
    assert removed["subject_id"].startswith("identifier-like")  # consecutive integers
    assert list(clean.columns) == ["arm", *FEATURES]
