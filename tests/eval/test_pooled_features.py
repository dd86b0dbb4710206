"""PooledFeatures: per-patient features of every modality, every statistic fitted on the training patients only."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

if str(Path(__file__).parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from pooled_cohorts import days, meds_cohort, meds_rows, phenotype_cohort, small_synthetic  # noqa: E402

from multimodal.cohorts.sources import SlideRef, SlideSource  # noqa: E402
from multimodal.errors import ConfigError, InputError  # noqa: E402
from multimodal.pooled import PooledFeatures, PooledFeaturesConfig  # noqa: E402

MIXES = {f"T{i}": [0.8, 0.1, 0.1] if i % 2 else [0.1, 0.1, 0.8] for i in range(12)}
SMALL = PooledFeaturesConfig(pca_components=4, clusters=3, fit_patches_per_patient=40)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    cohort = small_synthetic(tmp_path_factory.mktemp("pooled") / "syn", patients=40, seed=2)
    ids = cohort.patient_ids
    pooled = PooledFeatures(PooledFeaturesConfig(gene_sets="omics/pathways.gmt", pca_components=6, clusters=4))
    return cohort, pooled.fit(cohort, ids[:28]), ids[:28], ids[28:]


def _block(X: pd.DataFrame, modality: str) -> pd.DataFrame:
    return X[[c for c in X.columns if c.startswith(f"{modality}:")]]


def test_every_modality_gets_named_columns(synthetic):
    cohort, pooled, train, test = synthetic
    X = pooled.transform(cohort, test)
    assert list(X.index) == test
    assert {c.split(":", 1)[0] for c in X.columns} == {"pathology", "genomics", "ehr", "clinical"}
    path = _block(X, "pathology").columns
    assert [c for c in path if c.endswith("_mean")] == [f"pathology:pc{j}_mean" for j in range(6)]
    assert sum(c.endswith("_frac") for c in path) == 4
    assert any(c.startswith("genomics:set:SYN_") for c in X.columns)  # gene-set scores from the GMT
    assert any(c.endswith("_rnaseq") for c in X.columns)  # plus the wide table of make_tabular
    assert any(c.startswith("ehr:LAB//") and c.endswith(":slope") for c in X.columns)
    assert "clinical:stage" in X.columns
    frac = _block(X, "pathology").filter(like="_frac").dropna()
    np.testing.assert_allclose(frac.sum(axis=1), 1.0)
    # patients without slides / EHR: missing values there (imputed later from the training rows)
    no_slides = [p for p in test if not cohort.has("pathology", p)]
    assert no_slides and _block(X.loc[no_slides], "pathology").isna().all().all()
    has = [p for p in test if cohort.has("pathology", p)]
    assert np.isfinite(_block(X.loc[has], "pathology").to_numpy()).all()


def test_a_row_does_not_depend_on_the_other_rows(synthetic):
    cohort, pooled, train, test = synthetic
    alone = pooled.transform(cohort, test[:1])
    mixed = pooled.transform(cohort, [test[3], *train[:5], test[0]]).loc[test[:1]]
    pd.testing.assert_frame_equal(alone, mixed, check_dtype=False)


def test_gene_set_score_is_the_mean_standardized_expression(synthetic):
    cohort, pooled, train, _ = synthetic
    gs = pooled.parts_["genomics"][1].adapter_
    X = pooled.transform(cohort, train)
    pid = next(p for p in train if cohort.has("genomics", p))
    stream = gs.transform(pid)
    members = [[bool(m) for m in row] for row in stream.meta["members"]]
    k = next(i for i, row in enumerate(members) if sum(row) > 1)
    values = stream.features[0, k].numpy()[np.array(members[k])]
    name = stream.names[0][k]
    assert X.loc[pid, f"genomics:set:{name}"] == pytest.approx(float(values.mean()), rel=1e-5)


# ---- pathology -------------------------------------------------------------------------------------------------------
def test_pathology_features_follow_the_phenotype_mix(tmp_path):
    mixes = {**MIXES, "A": [0.9, 0.05, 0.05], "B": [0.05, 0.05, 0.9], "C": [0.3, 0.4, 0.3], "none": None}
    cohort = phenotype_cohort(tmp_path, mixes, n=120)
    pooled = PooledFeatures(SMALL).fit(cohort, list(MIXES))
    X = _block(pooled.transform(cohort, ["A", "B", "C", "none"]), "pathology")
    frac = X.filter(like="_frac")
    # A and B are mostly of different phenotypes: their dominant clusters differ and their mixes are far apart
    assert frac.loc["A"].idxmax() != frac.loc["B"].idxmax()
    assert np.abs(frac.loc["A"] - frac.loc["B"]).sum() > 1.2
    assert frac.loc["A"].max() > 0.8 and frac.loc["B"].max() > 0.8
    assert np.abs(X.filter(like="_mean").loc["A"] - X.filter(like="_mean").loc["B"]).max() > 1.0
    assert X.loc["none"].isna().all()


def test_test_patients_patches_change_no_fitted_statistic(tmp_path):
    train = list(MIXES)
    mixes = {**MIXES, "X1": [0.2, 0.6, 0.2], "X2": [0.5, 0.5, 0.0]}
    cohort = phenotype_cohort(tmp_path / "a", mixes)
    ref = PooledFeatures(SMALL).fit(cohort, train)
    # the held-out patients' bags replaced by wild ones (other scale, other size)
    poisoned = dict(cohort.modalities["pathology"].slides)
    for pid in ("X1", "X2"):
        path = tmp_path / f"wild_{pid}.npy"
        np.save(path, np.random.default_rng(9).normal(50.0, 30.0, (500, 8)).astype(np.float32))
        poisoned[pid] = (SlideRef(pid, f"{pid}_s1", path, "npy"),)
    bad = cohort.subset(cohort.patient_ids)
    bad.modalities["pathology"] = SlideSource(slides=poisoned)
    new = PooledFeatures(SMALL).fit(bad, train)
    a, b = ref.parts_["pathology"][0], new.parts_["pathology"][0]
    np.testing.assert_array_equal(a.components_, b.components_)
    np.testing.assert_array_equal(a.mean_, b.mean_)
    np.testing.assert_array_equal(a.centres_, b.centres_)
    pd.testing.assert_frame_equal(ref.transform(cohort, train), new.transform(bad, train))
    assert not ref.transform(cohort, ["X1"]).equals(new.transform(bad, ["X1"]))  # (the poison did arrive)


def test_pathology_needs_enough_training_patches(tmp_path):
    cohort = phenotype_cohort(tmp_path, {"A": [1.0, 0.0, 0.0], "B": None}, n=4)
    with pytest.raises(InputError, match="cannot fit"):
        PooledFeatures(PooledFeaturesConfig(clusters=8)).fit(cohort, ["A", "B"])


# ---- EHR -------------------------------------------------------------------------------------------------------------
def _ehr(tmp_path: Path, rows, train=("P1", "P2", "P3", "P4", "P5", "P6")):
    cohort = meds_cohort(tmp_path, rows)
    cfg = PooledFeaturesConfig(ehr_min_patients=2)
    pooled = PooledFeatures(cfg).fit(cohort, list(train))
    return cohort, pooled, pooled.transform(cohort, cohort.patient_ids)


def test_ehr_summaries(tmp_path):
    cohort, pooled, X = _ehr(tmp_path, meds_rows())
    # vocabulary: codes of >= 2 training patients (RARE//ONE has one); numeric codes get last + slope
    assert list(X.columns) == ["ehr:DX//C50:count", "ehr:HEIGHT:count", "ehr:HEIGHT:last", "ehr:HEIGHT:slope",
                               "ehr:LAB//HR:count", "ehr:LAB//HR:last", "ehr:LAB//HR:slope"]
    assert X.loc["P2", "ehr:LAB//HR:count"] == 2
    assert X.loc["P2", "ehr:LAB//HR:last"] == pytest.approx(66.0)  # the latest value (day -2)
    assert X.loc["P2", "ehr:LAB//HR:slope"] == pytest.approx((66.0 - 62.0) / 8.0)  # per day
    assert X.loc["P7", "ehr:HEIGHT:last"] == pytest.approx(167.0)  # static value
    assert np.isnan(X.loc["P7", "ehr:HEIGHT:slope"])  # one static value: no slope


def test_an_event_after_the_prediction_time_changes_no_feature(tmp_path):
    _, _, ref = _ehr(tmp_path / "a", meds_rows())
    late = [(1, days(3), "LAB//HR", 500.0), (2, days(0.01), "LAB//HR", -40.0), (7, days(30), "LAB//HR", 1e6),
            (3, days(1), "NEW//LATER", 1.0), (4, days(2), "NEW//LATER", 1.0), (5, days(2), "DX//C50", None)]
    _, pooled, new = _ehr(tmp_path / "b", meds_rows() + late)
    pd.testing.assert_frame_equal(ref, new)
    assert "NEW//LATER" not in pooled.parts_["ehr"][0].codes_
    # at the prediction time itself the event counts (inclusive, MEDS LabelSchema)
    _, _, at = _ehr(tmp_path / "c", meds_rows() + [(2, days(0), "LAB//HR", 99.0)])
    assert at.loc["P2", "ehr:LAB//HR:count"] == 3 and at.loc["P2", "ehr:LAB//HR:last"] == 99.0


def test_ehr_vocabulary_comes_from_training_patients(tmp_path):
    rows = meds_rows() + [(7, days(-1), "TEST//ONLY", 1.0), (8, days(-1), "TEST//ONLY", 2.0)]
    cohort, pooled, X = _ehr(tmp_path, rows)
    assert not any("TEST//ONLY" in c for c in X.columns)
    capped = PooledFeatures(PooledFeaturesConfig(ehr_min_patients=2, ehr_max_codes=1)).fit(cohort, ["P1", "P2", "P3"])
    assert capped.parts_["ehr"][0].codes_ == ("DX//C50",)  # ties in patients: by code


# ---- misc ------------------------------------------------------------------------------------------------------------
def test_config_and_input_errors(tmp_path):
    with pytest.raises(ConfigError, match="pca_components"):
        PooledFeaturesConfig(pca_components=0)
    cohort = phenotype_cohort(tmp_path, MIXES)
    with pytest.raises(InputError, match="not in cohort"):
        PooledFeatures(SMALL).fit(cohort, ["T1", "nobody"])
    with pytest.raises(InputError, match="no modality 'ehr'"):
        PooledFeatures(PooledFeaturesConfig(modalities=("ehr",))).fit(cohort, ["T1"])
    with pytest.raises(RuntimeError, match="not fitted"):
        PooledFeatures().transform(cohort, ["T1"])
    only = PooledFeatures(PooledFeaturesConfig(modalities=("clinical",))).fit(cohort, list(MIXES))
    assert list(only.transform(cohort, ["T1"]).columns) == ["clinical:age"]


def test_tcga_gene_families(shared_data):
    from multimodal.cohorts.tcga import load_tcga_cohort

    cohort = load_tcga_cohort(shared_data, "blca")
    fold = cohort.splits[0]
    cfg = PooledFeaturesConfig(gene_sets="tcga_porpoise/datasets_csv/signatures.csv")
    pooled = PooledFeatures(cfg).fit(cohort, list(fold.train))
    X = pooled.transform(cohort, list(fold.val))
    sets = X.filter(like="genomics:set:")
    assert sets.shape[1] == 6 and np.isfinite(sets.to_numpy()).all()


def test_a_scored_cohort_without_a_trained_mutation_gene_reads_not_carried(tmp_path):
    """A cohort scored later whose MAF lacks a gene the training patients carried (no new patient has it) gets the
    training columns, in the training order: the missing mutation 0 for sequenced patients, missing for the others;
    the fitted state keeps the columns through a save / load."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "cohorts"))
    from fixtures_cohort import write_tiny_cohort

    from multimodal.cohorts.cohort import Cohort
    from multimodal.pooled.omics import Tabular

    train = write_tiny_cohort(tmp_path / "train")
    scored = write_tiny_cohort(tmp_path / "scored")
    maf = scored.root / "omics" / "mutations.maf"
    maf.write_text("".join(line for line in maf.read_text().splitlines(keepends=True) if not line.startswith("KRAS")))
    ct, cs = Cohort.from_manifest(train.manifest_path), Cohort.from_manifest(scored.manifest_path)
    part = Tabular("genomics").fit(ct, ct.patient_ids)
    assert "KRAS_mut" in part.columns_
    meta, arrays = part.state()
    loaded = Tabular("genomics").load(meta, arrays)
    out = loaded.transform(cs, cs.patient_ids)
    assert list(out.columns) == part.columns_
    seq = out["TP53_mut"].notna()
    assert seq.any() and (out.loc[seq, "KRAS_mut"] == 0).all() and out.loc[~seq, "KRAS_mut"].isna().all()
    same = part.transform(ct, ct.patient_ids)  # the training cohort itself: unchanged
    pd.testing.assert_frame_equal(same, part._read(ct, ct.patient_ids))
