"""The synthetic cohort: real formats read back with their own libraries, planted truth, determinism, CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from multimodal.cli.main import main
from multimodal.cohorts.manifest import parse_manifest
from multimodal.cohorts.synthetic import (
    SyntheticConfig,
    draw_missing,
    generate_synthetic_cohort,
    high_risk_patch_mask,
    load_ground_truth,
    patch_labels,
)
from multimodal.cohorts.synthetic_model import PHENOTYPES, harrell_c, survival_prob
from multimodal.config import from_dict, load_yaml
from multimodal.errors import ConfigError, InputError

SMALL = SyntheticConfig(patients=30, patches_per_slide=200, seed=7)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-patient, 200-patches-per-slide cohort; returns its folder."""
    root = tmp_path_factory.mktemp("synth") / "cohort"
    manifest = generate_synthetic_cohort(root, SMALL)
    assert manifest == root / "manifest.yaml"
    return root


@pytest.fixture(scope="module")
def truth(cohort: Path) -> dict:
    return load_ground_truth(cohort)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


# ---- files and formats ------------------------------------------------------------------------------------------


def test_manifest_parses_and_names_existing_files(cohort: Path) -> None:
    spec = parse_manifest(load_yaml(cohort / "manifest.yaml"), file=str(cohort / "manifest.yaml"))
    assert set(spec.modalities) == {"pathology", "genomics", "ehr", "clinical"}
    assert spec.patients.time_unit == "days" and spec.patients.treatment_arms == ("standard", "targeted")
    assert spec.modalities["pathology"].format == "trident"
    om = spec.modalities["genomics"]
    for rel in (spec.patients.path, spec.modalities["pathology"].table, om.expression, om.mutations,
                om.mutation_samples, spec.modalities["clinical"].path):
        assert (cohort / rel).is_file(), rel
    assert (cohort / spec.modalities["ehr"].path / "metadata" / "dataset.json").is_file()


def test_trident_h5_layout(cohort: Path, truth: dict) -> None:
    slides = pd.read_csv(cohort / "slides.csv")
    assert list(slides.columns) == ["patient_id", "slide_id", "path"]
    sizes = set()
    for row in slides.itertuples():
        with h5py.File(cohort / row.path, "r") as f:
            feats, coords = f["features"], f["coords"]
            assert feats.dtype == np.float32 and feats.ndim == 2 and feats.shape[1] == SMALL.embed_dim
            assert coords.dtype == np.int64 and coords.shape == (feats.shape[0], 2)
            assert feats.attrs["encoder"] == "synthetic-uni" and feats.attrs["name"] == row.slide_id
            a = dict(coords.attrs)
            ps0 = int(a["patch_size_level0"])
            assert int(a["patch_size"]) == 256 and int(a["target_magnification"]) == 20 and int(a["overlap"]) == 0
            assert ps0 == 256 * int(a["level0_magnification"]) // 20
            xy = coords[:]
            assert (xy % ps0 == 0).all() and (xy >= 0).all()
            assert len({tuple(r) for r in xy}) == len(xy)  # one patch per grid cell
            sizes.add(ps0)
            labels = patch_labels(cohort, row.slide_id)
            assert labels.dtype == np.int8 and labels.shape == (feats.shape[0],)
            assert truth["slides"][row.slide_id]["n_patches"] == feats.shape[0]
    assert sizes == {256, 512}  # both magnifications occur, so patch_size_level0 varies per slide
    counts = [truth["slides"][s]["n_patches"] for s in slides.slide_id]
    assert len(set(counts)) > 1  # bag sizes vary


def test_patch_labels_match_the_embedding_clusters(cohort: Path, truth: dict) -> None:
    """Patches of one phenotype cluster together, and the high-risk mask picks the planted cluster."""
    slides = pd.read_csv(cohort / "slides.csv").slide_id.tolist()[:6]
    feats, labels = [], []
    for sid in slides:
        with h5py.File(cohort / "slides" / f"{sid}.h5", "r") as f:
            feats.append(f["features"][:])
        labels.append(patch_labels(cohort, sid))
        assert (high_risk_patch_mask(cohort, sid) == (labels[-1] == truth["causal"]["high_risk_cluster_id"])).all()
    x, y = np.concatenate(feats), np.concatenate(labels)
    present = np.unique(y)
    centres = np.stack([x[y == k].mean(0) for k in present])
    pred = present[np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)]
    assert (pred == y).mean() > 0.9
    assert truth["causal"]["high_risk_phenotype"] == PHENOTYPES[truth["causal"]["high_risk_cluster_id"]]


def test_expression_gmt_and_mutations(cohort: Path, truth: dict) -> None:
    adata = ad.read_h5ad(cohort / "omics" / "expression.h5ad")
    with_genomics = [p["patient_id"] for p in truth["patients"] if "genomics" not in p["missing_modalities"]]
    assert list(adata.obs_names) == with_genomics
    assert adata.n_vars == SMALL.n_genes and "TP53" in adata.var_names and adata.var_names.is_unique
    counts = np.asarray(adata.layers["counts"])
    assert np.issubdtype(counts.dtype, np.integer) and (counts >= 0).all()
    expected = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(np.asarray(adata.X), expected, rtol=1e-5)

    gmt = [line.split("\t") for line in (cohort / "omics" / "pathways.gmt").read_text().splitlines()]
    assert [g[0] for g in gmt] == truth["pathways"] and len(gmt) == SMALL.n_pathways
    assert all(set(g[2:]) <= set(adata.var_names) and len(g) > 10 for g in gmt)
    assert set(truth["causal"]["pathways"]) <= {g[0] for g in gmt}

    samples = (cohort / "omics" / "sequenced_samples.txt").read_text().split()
    assert [s.rsplit("-", 1)[0] for s in samples] == with_genomics
    assert (cohort / "omics" / "mutations.maf").read_text().startswith("#version")
    maf = pd.read_csv(cohort / "omics" / "mutations.maf", sep="\t", comment="#")
    for col in ("Hugo_Symbol", "Variant_Classification", "Tumor_Sample_Barcode", "Chromosome", "Start_Position"):
        assert col in maf.columns
    assert {"Missense_Mutation", "Silent"} <= set(maf.Variant_Classification)
    assert set(maf.Tumor_Sample_Barcode) <= set(samples)
    # the causal driver's non-silent calls are exactly the latent driver status; silent TP53 rows are noise
    tp53 = maf[(maf.Hugo_Symbol == "TP53") & (maf.Variant_Classification != "Silent")]
    mutated = {s.rsplit("-", 1)[0] for s in tp53.Tumor_Sample_Barcode}
    latent = {p["patient_id"] for p in truth["patients"]
              if p["latent"]["driver_mutations"]["TP53"] and "genomics" not in p["missing_modalities"]}
    assert mutated == latent and 0 < len(mutated) < len(samples)  # mutated and unmutated samples both exist


def test_meds_schema_sort_order_and_leakage_events(cohort: Path, truth: dict) -> None:
    meds = cohort / "meds"
    files = sorted((meds / "data").glob("*/*.parquet"))
    assert {f.parent.name for f in files} <= {"train", "tuning", "held_out"} and files
    for f in files:
        schema = pq.read_schema(f)
        assert [(fld.name, str(fld.type)) for fld in schema] == [
            ("subject_id", "int64"), ("time", "timestamp[us]"), ("code", "string"), ("numeric_value", "float")
        ]
        df = pl.read_parquet(f)
        # sorted by subject, static (null time) rows first, then by time
        key = df.with_columns(pl.col("time").is_not_null().alias("has_t"))
        assert key.equals(key.sort(["subject_id", "has_t", "time"], nulls_last=False, maintain_order=True))
    data = pl.read_parquet(files)
    assert data.filter(pl.col("time").is_null())["code"].str.starts_with("GENDER//").all()
    codes = pl.read_parquet(meds / "metadata" / "codes.parquet")
    assert set(data["code"].unique()) == set(codes["code"]) and codes["description"].null_count() == 0
    splits = pl.read_parquet(meds / "metadata" / "subject_splits.parquet")
    assert set(splits["subject_id"]) == set(data["subject_id"].unique())
    assert json.loads((meds / "metadata" / "dataset.json").read_text())["meds_version"] == "0.4"
    for row in splits.iter_rows(named=True):  # each subject lives in its split's folder
        in_split = pl.read_parquet(sorted((meds / "data" / row["split"]).glob("*.parquet")))
        assert row["subject_id"] in set(in_split["subject_id"])

    out = pl.read_parquet(cohort / "outcomes.parquet")
    joined = data.join(out.select("subject_id", "prediction_time", "time", "event", "arm").rename(
        {"time": "follow_up"}), on="subject_id")
    after = joined.filter(pl.col("time") > pl.col("prediction_time"))
    assert after.height > 0 and after["subject_id"].n_unique() > len(splits) // 2
    treat = joined.filter(pl.col("code").str.starts_with("TREATMENT//"))
    assert treat.height == len(splits) and (treat["time"] == treat["prediction_time"]).all()
    assert (treat["code"] == ("TREATMENT//" + treat["arm"].str.to_uppercase())).all()
    deaths = joined.filter(pl.col("code") == "MEDS_DEATH")
    assert deaths.height == joined.filter(pl.col("event")).select("subject_id").n_unique()
    lag = (deaths["time"] - deaths["prediction_time"]).dt.total_microseconds().to_numpy() / 86_400e6
    np.testing.assert_allclose(lag, deaths["follow_up"].to_numpy(), atol=1e-4)


def test_causal_lab_slope_is_recoverable_from_meds(cohort: Path, truth: dict) -> None:
    data = pl.read_parquet(sorted((cohort / "meds" / "data").glob("*/*.parquet")))
    out = pl.read_parquet(cohort / "outcomes.parquet").select("subject_id", "patient_id", "prediction_time")
    ldh = data.join(out, on="subject_id").filter(
        (pl.col("code") == "LAB//LDH") & (pl.col("time") <= pl.col("prediction_time"))
    )
    by_pid = {p["patient_id"]: p["latent"]["ldh_slope_per_year"] for p in truth["patients"]}
    est, true = [], []
    for (pid,), grp in ldh.group_by(["patient_id"], maintain_order=True):
        years = (grp["time"] - grp["prediction_time"]).dt.total_seconds().to_numpy() / (365.25 * 86400)
        est.append(np.polyfit(years, grp["numeric_value"].to_numpy().astype(float), 1)[0])
        true.append(by_pid[pid])
    assert np.corrcoef(est, true)[0, 1] > 0.7


def test_outcomes_and_clinical_tables(cohort: Path, truth: dict) -> None:
    out = pl.read_parquet(cohort / "outcomes.parquet")
    assert out.schema["subject_id"] == pl.Int64 and out.schema["event"] == pl.Boolean
    assert out.schema["time"] == pl.Float64 and out.schema["prediction_time"] == pl.Datetime("us")
    assert out["patient_id"].to_list() == [p["patient_id"] for p in truth["patients"]]
    assert (out["time"] > 0).all() and set(out["response"].unique()) <= {0, 1}
    counts = out["arm"].value_counts().sort("arm")
    assert counts["arm"].to_list() == ["standard", "targeted"] and counts["count"].to_list() == [15, 15]
    clin = pd.read_csv(cohort / "clinical.csv")
    assert list(clin.columns) == ["patient_id", "age", "sex", "stage", "grade"]
    assert set(clin.stage.dropna()) <= {"I", "II", "III", "IV"} and set(clin.sex) <= {"F", "M"}
    assert clin[["age", "stage", "grade"]].isna().to_numpy().any()


# ---- missingness ------------------------------------------------------------------------------------------------


def test_missing_fractions_are_honoured_in_the_files(cohort: Path, truth: dict) -> None:
    n = SMALL.patients
    missing = {m: {p["patient_id"] for p in truth["patients"] if m in p["missing_modalities"]}
               for m in ("pathology", "genomics", "ehr")}
    for m, frac in (("pathology", SMALL.missing_pathology), ("genomics", SMALL.missing_genomics),
                    ("ehr", SMALL.missing_ehr)):
        assert len(missing[m]) == round(frac * n)
    assert not (missing["pathology"] & missing["genomics"] & missing["ehr"])
    assert set(pd.read_csv(cohort / "slides.csv").patient_id) == {p["patient_id"] for p in truth["patients"]} - \
        missing["pathology"]
    assert not set(ad.read_h5ad(cohort / "omics" / "expression.h5ad").obs_names) & missing["genomics"]
    sids = set(pl.read_parquet(cohort / "meds" / "metadata" / "subject_splits.parquet")["subject_id"])
    assert not {p["subject_id"] for p in truth["patients"] if p["patient_id"] in missing["ehr"]} & sids


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.5), (0.9, 0.6, 0.5), (0.0, 1.0, 0.2)])
def test_draw_missing_exact_counts_and_never_all(fractions: tuple[float, float, float]) -> None:
    n = 101
    names = ("pathology", "genomics", "ehr")
    miss = draw_missing(np.random.default_rng(3), n, dict(zip(names, fractions, strict=True)))
    for m, f in zip(names, fractions, strict=True):
        assert miss[m].sum() == round(f * n)
    assert not np.stack([miss[m] for m in names], axis=1).all(axis=1).any()


def test_impossible_missing_fractions_are_rejected() -> None:
    with pytest.raises(ConfigError, match="at least one of pathology/genomics/ehr"):
        SyntheticConfig(patients=10, missing_pathology=1.0, missing_genomics=1.0, missing_ehr=0.5)


# ---- ground truth -----------------------------------------------------------------------------------------------


def test_ground_truth_oracle_and_equations(cohort: Path, truth: dict) -> None:
    out = pd.read_parquet(cohort / "outcomes.parquet")
    lp = np.array([p["linear_predictor"] for p in truth["patients"]])
    c = harrell_c(out.time.to_numpy(), out.event.to_numpy(), lp)
    assert c == pytest.approx(truth["oracle"]["c_index_harrell"], abs=1e-6)
    assert c > 0.65
    from sksurv.metrics import concordance_index_censored

    assert concordance_index_censored(out.event.to_numpy(), out.time.to_numpy(), lp)[0] == pytest.approx(c)
    # lp is the documented sum of parts, recomputable from the latent variables and the effect sizes
    eff = truth["model"]["effects"]
    causal = truth["causal"]
    for p in truth["patients"]:
        lat = p["latent"]
        genomic = sum(b * lat["pathway_activity"][name] for name, b in causal["pathway_effects"].items())
        genomic += eff["driver"] * (lat["driver_mutations"]["TP53"] - 0.45)
        stage = ["I", "II", "III", "IV"].index(lat["stage"])
        expect = {
            "pathology": eff["high_risk_phenotype"] * lat["z_high_risk"],
            "genomics": genomic,
            "ehr": eff["lab_slope"] * lat["z_ldh_slope"],
            "clinical": eff["age"] * (lat["age"] - 64) / 10 + eff["stage"] * (stage - 1.5),
        }
        if p["arm"] == "targeted":
            expect["treatment"] = eff["treatment"] + eff["treatment_modifier"] * \
                lat["pathway_activity"][causal["treatment"]["biomarker_pathways"]["targeted"]]
        else:
            expect["treatment"] = 0.0
        for k, v in expect.items():
            assert p["risk_parts"][k] == pytest.approx(v, abs=1e-5), (p["patient_id"], k)
        assert p["linear_predictor"] == pytest.approx(sum(expect.values()), abs=1e-5)
        s = survival_prob(np.array([365.0]), np.array([[p["linear_predictor"]]]), SMALL.effects)[0, 0]
        assert p["survival_at_horizons"]["365"] == pytest.approx(s, abs=1e-6)
    assert causal["genes"] == ["TP53"] and causal["ehr_codes"] == ["LAB//LDH"]
    assert causal["high_risk_phenotype"] == "necrosis" and len(causal["pathways"]) == 3


def test_planted_effects_hold_at_scale() -> None:
    """On a large latent-only draw: every modality carries signal and the biomarker modifies the arm effect."""
    from multimodal.cohorts.synthetic import _draw

    c = _draw(SyntheticConfig(patients=3000, seed=11))
    n = 3000
    lp = c.lp.by_arm[np.arange(n), c.lat.arm]
    oracle = harrell_c(c.out.time, c.out.event, lp)
    assert 0.75 <= oracle <= 0.82
    for part in c.lp.parts.values():
        assert harrell_c(c.out.time, c.out.event, part) > 0.55
    assert abs(1.0 - c.out.event.mean() - SyntheticConfig().censoring_rate) < 0.01
    rtk = c.lat.pathway_activity[:, c.pathways.index("SYN_RTK_SIGNALING")]
    benefit = c.out.response_prob[:, 1] - c.out.response_prob[:, 0]
    assert np.corrcoef(benefit, rtk)[0, 1] > 0.8
    assert np.corrcoef(c.lp.arm_effect[:, 1], rtk)[0, 1] < -0.99  # high biomarker -> lower hazard on targeted


def test_config_round_trips_through_ground_truth(truth: dict) -> None:
    assert from_dict(SyntheticConfig, truth["config"]) == SMALL


def test_additive_truth_records_variance_shares(cohort: Path, truth: dict) -> None:
    """The default signal is additive; its truth still says how the log-hazard variance splits over modalities."""
    assert SMALL.signal == "additive" and truth["signal"] == "additive"
    assert truth["interaction_variance_share"] == 0.0 and "interactions" not in truth["causal"]
    lp = np.array([p["linear_predictor"] for p in truth["patients"]])
    by_mod = truth["variance_share_by_modality"]
    assert set(by_mod) == {"pathology", "genomics", "ehr", "clinical", "treatment"}
    for m, share in by_mod.items():
        part = np.array([p["risk_parts"][m] for p in truth["patients"]])
        assert share == pytest.approx(np.var(part) / np.var(lp), abs=1e-3), m
    assert truth["variance_share_by_part"] == by_mod  # one part per modality
    out = pd.read_parquet(cohort / "outcomes.parquet")
    path = np.array([p["risk_parts"]["pathology"] for p in truth["patients"]])
    without = harrell_c(out.time.to_numpy(), out.event.to_numpy(), lp - path)
    assert truth["oracle_c_index_without_pathology"] == pytest.approx(without, abs=1e-4)


@pytest.mark.parametrize(
    ("change", "field"),
    [({"patients": 2}, "patients"), ({"slides_per_patient": (3, 1)}, "slides_per_patient"),
     ({"missing_ehr": 1.5}, "missing_ehr"), ({"n_pathways": 3}, "n_pathways"), ({"n_arms": 9}, "n_arms"),
     ({"patch_size_level0": 511}, "patch_size_level0"), ({"signal": "nonlinear"}, "signal")],
)
def test_bad_config_values_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(SMALL, **change)
    assert info.value.field == field


# ---- determinism ------------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(cohort: Path, tmp_path: Path) -> None:
    again = generate_synthetic_cohort(tmp_path / "again", SMALL).parent
    assert _digests(again) == _digests(cohort)
    other = generate_synthetic_cohort(tmp_path / "other", dataclasses.replace(SMALL, seed=8)).parent
    a, b = load_ground_truth(cohort), load_ground_truth(other)
    assert [p["linear_predictor"] for p in a["patients"]] != [p["linear_predictor"] for p in b["patients"]]
    with h5py.File(cohort / "slides" / "SYN-0001_slide1.h5") as fa, h5py.File(other / "slides" /
                                                                              "SYN-0001_slide1.h5") as fb:
        n = min(fa["features"].shape[0], fb["features"].shape[0])
        assert not np.allclose(fa["features"][:n], fb["features"][:n])


def test_output_is_atomic_and_refuses_non_empty_dir(tmp_path: Path) -> None:
    target = tmp_path / "c"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        generate_synthetic_cohort(target, dataclasses.replace(SMALL, patients=6, patches_per_slide=20))
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".c.")]  # temp folder cleaned up


# ---- CLI --------------------------------------------------------------------------------------------------------


def test_cli_writes_refuses_and_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    argv = ["synth", "--out", str(out), "--patients", "8", "--patches-per-slide", "40", "--seed", "3",
            "--missing-ehr", "0.25"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out / "manifest.yaml")
    gt = load_ground_truth(out)
    assert gt["config"]["patients"] == 8 and gt["config"]["missing_ehr"] == 0.25
    assert sum("ehr" in p["missing_modalities"] for p in gt["patients"]) == 2
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert main(["synth", "--out", str(tmp_path / "bad"), "--patients", "1"]) == 2


# ---- integration with the loader and the validator (skipped until they exist) ---------------------------------


def test_cohort_loads_from_manifest(cohort: Path, truth: dict) -> None:
    pytest.importorskip("multimodal.cohorts.loading")
    from multimodal.cohorts.cohort import Cohort

    c = Cohort.from_manifest(cohort / "manifest.yaml")
    assert len(c) == SMALL.patients and c.treatment_arms == ("standard", "targeted")
    cov = c.modality_coverage()
    assert cov["pathology"] == truth["counts"]["with_modality"]["pathology"]
    assert cov["genomics"] == truth["counts"]["with_modality"]["genomics"]
    assert cov["ehr"] == truth["counts"]["with_modality"]["ehr"]


def test_validate_accepts_the_cohort(cohort: Path) -> None:
    pytest.importorskip("multimodal.cli.validate")
    assert main(["validate", str(cohort / "manifest.yaml")]) == 0


@pytest.mark.slow
def test_default_cohort_timing(tmp_path: Path) -> None:
    """200 patients x ~2000 patches per slide (the documented default) in well under 60 s."""
    start = time.perf_counter()
    generate_synthetic_cohort(tmp_path / "full", SyntheticConfig())
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"{elapsed:.1f} s"
