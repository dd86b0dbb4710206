"""TCGA PORPOISE/MCAT-layout loader: patient counts, events, features and folds against the data README."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from multimodal.cohorts import ClinicalSource, Cohort, OmicsSource
from multimodal.cohorts.tcga import list_tcga_cohorts, load_mmp_clinical, load_tcga_cohort
from multimodal.errors import InputError

# shared/data/README.md §1a: patients / OS deaths and rna / mut / cnv feature counts
EXPECTED = {
    "blca": (373, 169, {"_rnaseq": 1554, "_mut": 371, "_cnv": 256}),
    "brca": (956, 130, {"_rnaseq": 1558, "_mut": 21, "_cnv": 1333}),
    "kirc": (345, 92, {"_rnaseq": 1556, "_mut": 10, "_cnv": 937}),
}


@pytest.fixture(scope="module")
def cohorts(shared_data) -> dict[str, Cohort]:
    return {c: load_tcga_cohort(shared_data, c.upper() if c == "brca" else c) for c in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_patients_events_and_features(cohorts, name):
    n_patients, n_events, n_features = EXPECTED[name]
    co = cohorts[name]
    assert co.name == f"tcga_{name}" and co.time_unit == "months"
    assert len(co) == n_patients and co.patients.index.is_unique
    assert co.patients["event"].dtype == bool and int(co.patients["event"].sum()) == n_events
    assert co.patients["time"].dtype == np.float64 and (co.patients["time"] > 0).all()
    omics = co.modalities["genomics"]
    assert isinstance(omics, OmicsSource) and omics.wide is not None
    counts = {s: sum(c.endswith(s) for c in omics.wide.columns) for s in n_features}
    assert counts == n_features
    assert omics.wide.shape == (n_patients, sum(n_features.values()))
    assert set(omics.wide.index) == set(co.patient_ids) == omics.patients()


def test_event_is_one_minus_censorship(cohorts, shared_data):
    raw = (
        pd.read_csv(
            shared_data / "tcga_porpoise/datasets_csv_mutsig/tcga_blca_all_clean.csv.zip",
            compression="zip",
            usecols=["case_id", "survival_months", "censorship"],
        )
        .drop_duplicates("case_id")
        .set_index("case_id")
    )
    p = cohorts["blca"].patients.loc[raw.index]
    assert (p["event"].to_numpy() == (raw["censorship"] == 0).to_numpy()).all()
    assert np.array_equal(p["time"].to_numpy(), raw["survival_months"].to_numpy())
    assert (p["n_slides"] >= 1).all() and p["n_slides"].sum() == 437  # 437 slides in BLCA


def test_clinical_columns(cohorts):
    clin = cohorts["brca"].modalities["clinical"]
    assert isinstance(clin, ClinicalSource)
    assert list(clin.table.columns) == ["age", "is_female", "oncotree_code"]
    assert clin.numeric == ("age",) and clin.categorical == ("is_female", "oncotree_code")
    assert clin.table["age"].dtype == np.float64
    assert isinstance(clin.table["oncotree_code"].dtype, pd.CategoricalDtype)
    assert {"IDC", "ILC"} <= set(clin.table["oncotree_code"].cat.categories)
    assert int((clin.table["is_female"] == 0).sum()) > 0  # brca has a few male patients
    kirc = cohorts["kirc"].modalities["clinical"].table
    assert kirc["is_female"].isna().sum() == 1  # one patient without sex is kept as missing


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_porpoise_folds_partition_the_cohort(cohorts, name):
    co = cohorts[name]
    assert co.splits is not None and [f.index for f in co.splits] == [0, 1, 2, 3, 4]
    ids = set(co.patient_ids)
    vals = set()
    for f in co.splits:
        assert not set(f.train) & set(f.val)
        assert set(f.train) | set(f.val) == ids
        assert not vals & set(f.val)  # each patient is validated once
        vals |= set(f.val)
    assert vals == ids


def test_mmp_folds_and_clinical(shared_data):
    with pytest.warns(UserWarning, match="14 cohort patient"):
        co = load_tcga_cohort(shared_data, "blca", include=(), splits="mmp")
    assert co.modalities == {}
    assert [len(f.val) for f in co.splits] == [70, 72, 75, 71, 71]
    union = set().union(*(set(f.val) for f in co.splits))
    assert len(union) == 359 and union <= set(co.patient_ids)
    for f in co.splits:
        assert not set(f.train) & set(f.val) and set(f.train) | set(f.val) == union
    clin = load_mmp_clinical(shared_data, "BLCA")
    assert clin.index.is_unique and set(clin.index) == union
    assert {
        "os_censorship",
        "os_survival_days",
        "ajcc_pathologic_tumor_stage",
        "age_at_initial_pathologic_diagnosis",
    } <= set(clin.columns)
    assert "slide_id" not in clin.columns and "mpp" not in clin.columns
    assert int((clin["os_censorship"] == 0).sum()) == 156  # README: 156 OS events


def test_no_splits(shared_data):
    co = load_tcga_cohort(shared_data, "kirc", include=("clinical",), splits=None)
    assert co.splits is None and list(co.modalities) == ["clinical"]


def test_missing_cohort_lists_available(shared_data):
    assert list_tcga_cohorts(shared_data) == ["blca", "brca", "kirc"]
    with pytest.raises(InputError, match=r"no tcga_porpoise/.*tcga_luad.* cohorts available: blca, brca, kirc") as err:
        load_tcga_cohort(shared_data, "LUAD")
    assert err.value.field == "cohort"
    with pytest.raises(InputError, match="cohorts available: blca, brca, kirc"):
        load_mmp_clinical(shared_data, "luad")


def test_missing_root_and_bad_arguments(tmp_path, shared_data):
    with pytest.raises(InputError, match="not a folder"):
        load_tcga_cohort(tmp_path / "nope", "blca")
    with pytest.raises(InputError, match=r"cohorts available: \(none\)"):
        load_tcga_cohort(tmp_path, "blca")
    with pytest.raises(InputError, match="modality"):
        load_tcga_cohort(shared_data, "blca", include=("pathology",))
    with pytest.raises(InputError, match="splits"):
        load_tcga_cohort(shared_data, "blca", splits="survpath")


# ---- a tiny cohort in the same layout (written with pandas) ----------------------------------------------------------
def _write_layout(root, table: pd.DataFrame, folds: list[tuple[list[str], list[str]]]) -> None:
    d = root / "tcga_porpoise" / "datasets_csv_mutsig"
    d.mkdir(parents=True)
    table.to_csv(d / "tcga_toy_all_clean.csv.zip", compression={"method": "zip"})
    s = root / "tcga_porpoise" / "splits" / "5foldcv" / "tcga_toy"
    s.mkdir(parents=True)
    for k, (tr, va) in enumerate(folds):
        pd.DataFrame({"train": pd.Series(tr, dtype=object), "val": pd.Series(va, dtype=object)}).to_csv(
            s / f"splits_{k}.csv"
        )


def _toy_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "case_id": ["P1", "P1", "P2", "P3"],
            "slide_id": ["a.svs", "b.svs", "c.svs", "d.svs"],
            "age": [60, 60, 70, 50],
            "site": ["XX", "XX", "YY", "ZZ"],
            "survival_months": [10.0, 10.0, 5.0, 20.0],
            "censorship": [0, 0, 1, 0],
            "is_female": [1, 1, 0, 1],
            "oncotree_code": ["A", "A", "B", "A"],
            "train": [1.0, 1.0, 1.0, 0.0],
            "TP53_mut": [1, 1, 0, 0],
            "EGFR_rnaseq": [0.5, 0.5, -1.0, 2.0],
        }
    )


def test_any_cohort_in_the_layout_loads_the_same_way(tmp_path):
    _write_layout(tmp_path, _toy_table(), [(["P1", "P2"], ["P3"]), (["P3"], ["P1", "P2"])])
    co = load_tcga_cohort(tmp_path, "Toy")
    assert co.patients.to_dict("index") == {
        "P1": {"time": 10.0, "event": True, "n_slides": 2},
        "P2": {"time": 5.0, "event": False, "n_slides": 1},
        "P3": {"time": 20.0, "event": True, "n_slides": 1},
    }
    assert list(co.modalities["genomics"].wide.columns) == ["TP53_mut", "EGFR_rnaseq"]
    assert "site" not in co.modalities["clinical"].table.columns
    assert [(f.train, f.val) for f in co.splits] == [(("P1", "P2"), ("P3",)), (("P3",), ("P1", "P2"))]


def test_inconsistent_outcomes_across_slides_are_an_error(tmp_path):
    t = _toy_table()
    t.loc[1, "censorship"] = 1  # P1's second slide says censored
    _write_layout(tmp_path, t, [(["P1", "P2"], ["P3"])])
    with pytest.raises(InputError, match="disagree") as err:
        load_tcga_cohort(tmp_path, "toy")
    assert err.value.patient == "P1" and err.value.field == "censorship"


def test_bad_censorship_and_unknown_split_ids(tmp_path):
    t = _toy_table()
    t.loc[2, "censorship"] = 2
    _write_layout(tmp_path, t, [(["P1", "P2"], ["P3", "P9"])])
    with pytest.raises(InputError, match="0 or 1") as err:
        load_tcga_cohort(tmp_path, "toy")
    assert err.value.patient == "P2"
    t.loc[2, "censorship"] = 1
    t.to_csv(tmp_path / "tcga_porpoise/datasets_csv_mutsig/tcga_toy_all_clean.csv.zip", compression={"method": "zip"})
    with pytest.raises(InputError, match="not in the cohort") as err:
        load_tcga_cohort(tmp_path, "toy")
    assert err.value.patient == "P9"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_tcga_cohort(tmp_path, "toy", splits=None).splits is None
