"""The pooled features' ``structure`` families: tissue co-localisation on the patch grid, lab kinetics and gene-set x
mutation products (what a per-modality mean cannot see), each fitted on training patients only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

if str(Path(__file__).parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from pooled_cohorts import days, meds_cohort, meds_rows  # noqa: E402

from multimodal.errors import ConfigError  # noqa: E402
from multimodal.pooled import (  # noqa: E402
    STRUCTURE,
    PooledFeatures,
    PooledFeaturesConfig,
    describe_column,
    neighbour_shares,
)


def test_neighbour_shares_on_a_hand_built_grid():
    # a 3 x 3 block of label 0 with label 1 in the centre, on slide 0
    pos = np.array([(x, y) for y in range(3) for x in range(3)], dtype=np.float32)
    lab = np.array([1 if (x, y) == (1, 1) else 0 for x, y in pos.astype(int)])
    share = neighbour_shares(lab, pos, np.zeros(9, np.int64), 3)
    np.testing.assert_allclose(share, [[1, 1, 0], [1, 0, 0], [0, 0, 0]])  # label 2 has no patch: 0s
    # a label-2 patch next to the block but on another slide is nobody's neighbour
    pos2 = np.vstack([pos, [[3, 1]]])
    lab2 = np.append(lab, 2)
    share2 = neighbour_shares(lab2, pos2, np.append(np.zeros(9, np.int64), 1), 3)
    assert share2[0, 2] == 0 and share2[2].sum() == 0
    # on the same slide it touches the three patches of column 2
    share3 = neighbour_shares(lab2, pos2, np.zeros(10, np.int64), 3)
    assert share3[0, 2] == pytest.approx(3 / 8) and share3[2, 0] == 1
    # no wrap-around: the last cell of a row is not next to the first cell of the next row
    row = np.array([[0, 0], [5, 0], [0, 1]], dtype=np.float32)
    wrap = neighbour_shares(np.array([0, 1, 0]), row, np.zeros(3, np.int64), 2)
    assert wrap[1].sum() == 0 and wrap[0, 1] == 0 and wrap[0, 0] == 1


@pytest.fixture(scope="module")
def interaction(tmp_path_factory):
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort, load_ground_truth
    from multimodal.experiment import load_cohort, load_experiment

    root = Path(__file__).resolve().parents[2]
    manifest = generate_synthetic_cohort(tmp_path_factory.mktemp("structure") / "ix", SyntheticConfig(
        patients=80, seed=5, signal="interaction", patches_per_slide=400, embed_dim=16, n_genes=120, n_pathways=8))
    cfg = load_experiment(root / "configs" / "demo.yaml", [f"data.manifest={manifest}"])
    cohort = load_cohort(cfg.data)
    ids = cohort.patient_ids
    pooled = PooledFeatures(PooledFeaturesConfig(gene_sets="omics/pathways.gmt", pca_components=6, clusters=6,
                                                 structure=STRUCTURE)).fit(cohort, ids[:60])
    truth = load_ground_truth(manifest)
    latent = {p["patient_id"]: p["latent"] for p in truth["patients"]}
    return cohort, pooled, pooled.transform(cohort, ids), latent


def _corr(a: pd.Series, b: pd.Series) -> float:
    ok = a.notna() & b.notna()
    return float(np.corrcoef(a[ok].rank(), b[ok].rank())[0, 1])


def test_each_family_recovers_its_planted_mechanism(interaction):
    cohort, pooled, x, latent = interaction
    ids = list(x.index)
    z_til = pd.Series({p: latent[p]["z_til"] for p in ids})
    z_accel = pd.Series({p: latent[p]["z_accel"] for p in ids})
    # (a) TILs: some cluster-pair co-localisation share tracks the planted TIL share; no phenotype fraction does
    nbr = [c for c in x.columns if c.startswith("pathology:nbr")]
    assert len(nbr) == 36
    assert max(abs(_corr(x[c], z_til)) for c in nbr) > 0.5
    assert max(abs(_corr(x[c], z_til)) for c in x.columns if c.endswith("_frac")) < 0.35
    # (c) CEA kinetics: the 90-day log change tracks z_accel, the year-long slope much less
    assert _corr(x["ehr:LAB//CEA:change90d"], z_accel) > 0.6
    assert abs(_corr(x["ehr:LAB//CEA:slope"], z_accel)) < _corr(x["ehr:LAB//CEA:change90d"], z_accel) - 0.2
    # (b) set x mutation: the product is z(set) * (mutation - training prevalence)
    col = "genomics:set:SYN_HYPOXIA*TP53_mut"
    assert col in x.columns
    train = list(pooled.transform(cohort, cohort.patient_ids[:60]).dropna(subset=["genomics:TP53_mut"]).index)
    s, m = x["genomics:set:SYN_HYPOXIA"], x["genomics:TP53_mut"].astype(float)
    expect = (s - s[train].mean()) / s[train].std(ddof=0) * (m - m[train].mean())
    np.testing.assert_allclose(x[col].to_numpy(float), expect.to_numpy(float), rtol=1e-9, equal_nan=True)
    # every structure column is listed as such, and none of the item-1 columns is
    extra = set(pooled.structure_columns())
    assert set(nbr) <= extra and col in extra and "ehr:LAB//CEA:change90d" in extra
    assert not any(c in extra for c in x.columns if c.endswith(("_frac", "_mean", ":last", ":slope", "_rnaseq")))


def test_structure_features_survive_the_json_and_arrays_round_trip(interaction):
    cohort, pooled, x, _ = interaction
    meta, arrays = pooled.state()
    again = PooledFeatures.from_state(json.loads(json.dumps(meta)), {k: v.copy() for k, v in arrays.items()})
    assert again.structure_columns() == pooled.structure_columns()
    pd.testing.assert_frame_equal(again.transform(cohort, cohort.patient_ids), x)


def test_without_structure_the_features_are_the_item_1_set(interaction):
    cohort, pooled, x, _ = interaction
    plain = PooledFeatures(PooledFeaturesConfig(gene_sets="omics/pathways.gmt", pca_components=6, clusters=6))
    xp = plain.fit(cohort, cohort.patient_ids[:60]).transform(cohort, cohort.patient_ids)
    assert plain.structure_columns() == []
    assert list(xp.columns) == [c for c in x.columns if c not in set(pooled.structure_columns())]
    pd.testing.assert_frame_equal(xp, x[list(xp.columns)])


def test_kinetics_is_a_log_ratio_over_the_window_and_sees_nothing_after_the_prediction_time(tmp_path):
    rows = meds_rows() + [(sid, days(-120), "LAB//HR", 50.0 + sid) for sid in range(1, 9)]
    rows += [(sid, days(-100), "LAB//DELTA", -1.0 * sid) for sid in range(1, 9)]
    rows += [(sid, days(-5), "LAB//DELTA", 2.0) for sid in range(1, 9)]
    late = [(sid, days(10), "LAB//HR", 1e4) for sid in range(1, 9)] + [(1, days(1), "LAB//DELTA", 99.0)]
    cfg = PooledFeaturesConfig(ehr_min_patients=2, structure=("kinetics",))
    out = []
    for name, extra in (("a", []), ("b", late)):
        cohort = meds_cohort(tmp_path / name, rows + extra)
        out.append(PooledFeatures(cfg).fit(cohort, cohort.patient_ids[:6]).transform(cohort, cohort.patient_ids))
    x = out[0]
    pd.testing.assert_frame_equal(x, out[1])
    # HR (all positive in training): log(latest / latest at least 90 days back) = log((60 + 3 sid) / (50 + sid))
    sid = np.arange(1, 9)
    np.testing.assert_allclose(x["ehr:LAB//HR:change90d"], np.log((60 + 3 * sid) / (50 + sid)))
    # DELTA has non-positive training values: a difference
    np.testing.assert_allclose(x["ehr:LAB//DELTA:change90d"], 2.0 + sid)
    assert "ehr:HEIGHT:change90d" in x.columns and x["ehr:HEIGHT:change90d"].isna().all()  # static: no change
    assert "ehr:DX//C50:change90d" not in x.columns  # no values: no change


def test_structure_config_errors():
    with pytest.raises(ConfigError, match="structure"):
        PooledFeaturesConfig(structure=("spatial", "graph"))
    with pytest.raises(ConfigError, match="kinetics_window_days"):
        PooledFeaturesConfig(kinetics_window_days=0)
    with pytest.raises(ConfigError, match="interaction_min_prevalence"):
        PooledFeaturesConfig(interaction_min_prevalence=1.5)


def test_every_column_kind_has_a_readers_description(interaction):
    _, _, x, _ = interaction
    described = {c: describe_column(c) for c in x.columns}
    assert described["pathology:nbr2_5"] == "pathology: share of tissue-cluster-2 patches touching a cluster-5 patch"
    assert described["genomics:set:SYN_HYPOXIA*TP53_mut"] == "genomics: SYN_HYPOXIA score x TP53 mutation (centred)"
    assert described["ehr:LAB//CEA:change90d"] == "ehr: LAB//CEA: change over the last 90 days before the prediction time"
    assert described["ehr:LAB//CEA:last"] == "ehr: LAB//CEA: latest value"
    # every pooled column but the clinical table's own names gets a sentence, not its raw feature name
    raw = [c for c, d in described.items() if d == c.replace(":", ": ", 1) and not c.startswith("clinical:")]
    assert raw == []
