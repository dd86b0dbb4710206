"""Loading a cohort manifest into a Cohort: columns, dtypes, sources, variants of the manifest, one error for all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_cohort import DIM, PATIENTS, SUBJECT, TinyCohort, write_trident_h5

from multimodal.cohorts import ClinicalSource, Cohort, MedsSource, OmicsSource, SlideSource
from multimodal.cohorts.loading import resolve_manifest
from multimodal.cohorts.validate import validate_manifest
from multimodal.errors import InputError


def test_loads_tiny_cohort(tiny_cohort: TinyCohort) -> None:
    c = Cohort.from_manifest(tiny_cohort.manifest_path)
    p = c.patients
    assert list(p.index) == PATIENTS and c.name == "tiny" and c.time_unit == "days"
    assert p["time"].dtype == np.float64 and p["event"].dtype == bool
    assert p["prediction_time"].dtype == "datetime64[us]"
    assert p["treatment"].dtype == np.int64 and c.treatment_arms == ("A", "B")
    assert p["treatment"].tolist() == [0, 1] * 4
    assert str(p["response"].dtype) == "Int64" and p["response"].isna().sum() == 1
    assert p["event"].tolist() == [True, False, True, True, False, True, False, False]
    assert "site" in p.columns and "arm" not in p.columns  # extra columns kept, mapped ones not duplicated
    assert c.root == tiny_cohort.root.resolve() and c.splits is not None and len(c.splits) == 2

    slides = c.modalities["pathology"]
    assert isinstance(slides, SlideSource)
    assert [r.path.name for r in slides.slides["P001"]] == ["P001_slide1.h5", "P001_slide2.h5"]
    assert all(r.path.is_absolute() and r.format == "trident" for refs in slides.slides.values() for r in refs)
    assert "P008" not in slides.patients()

    omics = c.modalities["genomics"]
    assert isinstance(omics, OmicsSource)
    assert omics.patients() == set(PATIENTS[:7]) and omics.expression is not None and omics.expression.is_file()
    meds = c.modalities["ehr"]
    assert isinstance(meds, MedsSource)
    assert meds.subject_ids == {p: SUBJECT[p] for p in PATIENTS[:6]}  # only patients with MEDS rows
    clin = c.modalities["clinical"]
    assert isinstance(clin, ClinicalSource)
    assert "note" not in clin.table.columns and clin.categorical == ("sex", "stage") and clin.numeric == ("age",)
    assert c.modality_coverage() == {"pathology": 7, "genomics": 7, "ehr": 6, "clinical": 8}


@pytest.mark.parametrize("polarity", ["1_is_censored", "1_is_event"])
def test_censorship_with_polarity(tiny_cohort: TinyCohort, polarity: str) -> None:
    flags = [0, 1, 0, 0, 1, 0, 1, 1]
    tiny_cohort.edit_patients(lambda df: df.assign(censorship=flags).drop(columns=["event"]))

    def man(m: dict) -> None:
        del m["patients"]["event"]
        m["patients"].update(censorship="censorship", censorship_polarity=polarity)
    tiny_cohort.edit_manifest(man)
    c = Cohort.from_manifest(tiny_cohort.manifest_path)
    want = [not v for v in flags] if polarity == "1_is_censored" else [bool(v) for v in flags]
    assert c.patients["event"].tolist() == want and "censorship" not in c.patients.columns


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_text_patient_tables_keep_ids_as_text(tiny_cohort: TinyCohort, suffix: str) -> None:
    df = tiny_cohort.patients()
    df["patient_id"] = [f"00{i}" for i in range(8)]  # leading zeros must survive
    df["event"] = df["event"].astype(int)
    df = df.drop(columns=["subject_id"])
    path = tiny_cohort.root / f"outcomes{suffix}"
    df.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)

    def man(m: dict) -> None:
        m["patients"].update(path=path.name)
        del m["patients"]["meds_subject_id"]
        m["modalities"] = {}
        m.pop("splits")
    tiny_cohort.edit_manifest(man)
    c = Cohort.from_manifest(tiny_cohort.manifest_path)
    assert list(c.patients.index) == [f"00{i}" for i in range(8)]
    assert c.patients["prediction_time"].dtype == "datetime64[us]" and c.patients["event"].sum() == 4


def test_slides_by_glob_and_pattern(tiny_cohort: TinyCohort) -> None:
    (tiny_cohort.root / "features" / "README.h5").write_bytes(b"")  # matches the glob, its stem names no patient

    def man(m: dict) -> None:
        m["modalities"]["pathology"] = {"type": "slides", "glob": "features/*.h5",
                                        "patient_pattern": r"^(?P<patient>P\d{3})_slide\d+$"}
    tiny_cohort.edit_manifest(man)
    res = resolve_manifest(tiny_cohort.manifest_path)
    assert not res.problems, res.problems
    src = res.sources["pathology"]
    assert isinstance(src, SlideSource)
    assert len(src.slides["P002"]) == 2 and set(src.slides) == set(PATIENTS[:7])
    assert any("patient_pattern" in (w.field or "") for w in res.warnings)


def test_meds_ids_from_numeric_patient_ids(tiny_cohort: TinyCohort) -> None:
    tiny_cohort.edit_patients(lambda df: df.assign(patient_id=df["subject_id"].astype(str)).drop(
        columns=["subject_id"]))

    def man(m: dict) -> None:
        del m["patients"]["meds_subject_id"]
        m["modalities"] = {"ehr": {"type": "meds", "path": "meds"}}
        m.pop("splits")
    tiny_cohort.edit_manifest(man)
    c = Cohort.from_manifest(tiny_cohort.manifest_path)
    src = c.modalities["ehr"]
    assert isinstance(src, MedsSource)
    assert src.subject_ids == {str(s): s for s in range(101, 107)}


def test_non_numeric_ids_without_subject_column_is_an_error(tiny_cohort: TinyCohort) -> None:
    tiny_cohort.edit_manifest(lambda m: m["patients"].pop("meds_subject_id"))
    with pytest.raises(InputError) as err:
        Cohort.from_manifest(tiny_cohort.manifest_path)
    assert err.value.problems[0].field == "patients.meds_subject_id"


def test_loading_does_not_open_slide_files(tiny_cohort: TinyCohort) -> None:
    path = tiny_cohort.slide_path("P003")
    path.write_bytes(b"not an hdf5 file")
    c = Cohort.from_manifest(tiny_cohort.manifest_path)  # cheap: existence only
    assert "P003" in c.modalities["pathology"].patients()
    report = validate_manifest(tiny_cohort.manifest_path)  # the deep check finds it
    assert any(p.patient == "P003" and "readable" in p.message for p in report.problems)


def test_one_error_lists_every_problem(tiny_cohort: TinyCohort) -> None:
    def edit(df: pd.DataFrame) -> None:
        df.loc[df.patient_id == "P001", "time"] = -3.0
        df.loc[df.patient_id == "P002", "arm"] = "Z"
    tiny_cohort.edit_patients(edit)
    tiny_cohort.slide_path("P004").unlink()
    tiny_cohort.edit_manifest(lambda m: m["modalities"]["clinical"].update(exclued=["note"]))
    with pytest.raises(InputError) as err:
        Cohort.from_manifest(tiny_cohort.manifest_path)
    got = {(p.patient, p.field) for p in err.value.problems}
    assert {("P001", "time"), ("P002", "arm"), ("P004", "path"), (None, "modalities.clinical.exclued")} <= got
    assert "did you mean 'exclude'" in str(err.value)
    assert err.value.exit_code == 2 and str(err.value).startswith(f"{len(err.value.problems)} problems found")


def test_wide_table_and_cnv_omics(tiny_cohort: TinyCohort) -> None:
    rows = [{"case_id": p, "slide_id": f"{p}-DX{j}", "TP53_mut": i % 2, "EGFR_rnaseq": 0.1 * i, "MYC_cnv": 1}
            for i, p in enumerate(PATIENTS[:5]) for j in (1, 2)]  # one row per slide, as in the TCGA tables
    pd.DataFrame(rows).to_csv(tiny_cohort.root / "wide.csv", index=False)
    pd.DataFrame({"patient": PATIENTS[5:7], "TP53": [0, -1]}).to_csv(tiny_cohort.root / "cnv.tsv", sep="\t",
                                                                     index=False)
    tiny_cohort.edit_manifest(lambda m: m["modalities"].update(
        genomics={"type": "omics", "wide_table": "wide.csv", "cnv": "cnv.tsv"}))
    res = resolve_manifest(tiny_cohort.manifest_path)
    assert not res.problems, res.problems
    src = res.sources["genomics"]
    assert isinstance(src, OmicsSource) and src.wide is not None
    assert list(src.wide.columns) == ["TP53_mut", "EGFR_rnaseq", "MYC_cnv"] and src.wide.index.is_unique
    assert src.patients() == set(PATIENTS[:7])
    assert any("duplicate rows" in w.message for w in res.warnings)


def test_other_slide_formats_validate(tiny_cohort: TinyCohort) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    feats = {p: rng.normal(size=(7, DIM)).astype(np.float32) for p in ("P003", "P004", "P005", "P006")}
    root = tiny_cohort.root / "features"
    write_trident_h5(root / "P003_stamp.h5", feats["P003"], key="feats", encoder=None)
    torch.save(torch.from_numpy(feats["P004"]), root / "P004.pt")
    np.save(root / "P005.npy", feats["P005"])
    save_file({"features": feats["P006"], "coords": np.zeros((7, 2), np.int64)}, str(root / "P006.safetensors"),
              metadata={"encoder": "conch_v15"})
    table = pd.DataFrame({"patient_id": ["P001", "P003", "P004", "P005", "P006"],
                          "path": ["features/P001_slide1.h5", "features/P003_stamp.h5", "features/P004.pt",
                                   "features/P005.npy", "features/P006.safetensors"]})
    table.to_csv(tiny_cohort.slides_table_path, index=False)
    tiny_cohort.edit_manifest(lambda m: m["modalities"]["pathology"].update(format="auto"))
    report = validate_manifest(tiny_cohort.manifest_path)
    assert report.ok, report.problems
    m = report.summary["modalities"]["pathology"]
    assert m["layouts"] == ["npy", "pt", "safetensors", "stamp", "trident"] and m["feature_dims"] == [DIM]
    c = Cohort.from_manifest(tiny_cohort.manifest_path)
    fmts = {r.patient_id: r.format for refs in c.modalities["pathology"].slides.values() for r in refs}
    assert fmts == {"P001": "auto", "P003": "auto", "P004": "pt", "P005": "npy", "P006": "safetensors"}


def test_synthetic_cohort_manifest_loads_and_validates(tmp_path) -> None:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    manifest = generate_synthetic_cohort(tmp_path / "syn", SyntheticConfig(patients=12, patches_per_slide=20,
                                                                           n_genes=40, n_pathways=20))
    report = validate_manifest(manifest)
    assert report.ok, report.problems
    c = Cohort.from_manifest(manifest)
    assert len(c) == 12 and set(c.modalities) >= {"pathology", "genomics", "ehr", "clinical"}
    assert report.summary["n_patients"] == 12 and report.summary["feature_dims"]


def _materialize_meds_example(spec_yaml: Path, root: Path) -> pd.DataFrame:
    """Write the MEDS project's example dataset (CSV blocks in a YAML file) as MEDS 0.4 parquet with pyarrow."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    blocks = yaml.safe_load(spec_yaml.read_text())
    frames = []
    for rel, text in blocks.items():
        df = pd.read_csv(io.StringIO(text))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("data/"):
            times = pd.to_datetime(df["time"], format="%m/%d/%Y, %H:%M:%S")
            table = pa.table({
                "subject_id": pa.array(df["subject_id"], pa.int64()),
                "time": pa.Array.from_pandas(times.astype("datetime64[us]")),
                "code": pa.array(df["code"], pa.string()),
                "numeric_value": pa.array(df["numeric_value"], pa.float32()),
            })
            frames.append(df.assign(time=times))
        elif rel.endswith("codes.parquet"):
            table = pa.table({"code": pa.array(df["code"], pa.string()),
                              "description": pa.array(df["description"], pa.string())})
        else:
            table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, root / rel)
    return pd.concat(frames, ignore_index=True)


def test_meds_example_dataset_validates(shared_data: Path, tmp_path: Path) -> None:
    events = _materialize_meds_example(
        shared_data / "ehr" / "meds_sample" / "simple_static_sharded_by_split.yaml", tmp_path / "meds")
    subjects = sorted(events["subject_id"].unique())
    cutoff = pd.Timestamp("2010-06-01")
    pd.DataFrame({"patient_id": [str(s) for s in subjects], "time": 100.0, "event": False,
                  "prediction_time": cutoff}).to_csv(tmp_path / "patients.csv", index=False)
    (tmp_path / "manifest.yaml").write_text(
        "patients: {path: patients.csv, prediction_time: prediction_time}\n"
        "modalities: {ehr: {type: meds, path: meds}}\n")
    report = validate_manifest(tmp_path / "manifest.yaml")
    assert report.ok, report.problems
    expected_late = int((events["time"] > cutoff).sum())
    assert expected_late > 0 and report.summary["events_after_prediction_time"] == expected_late
    assert report.summary["modalities"]["ehr"]["patients"] == len(subjects)
    assert report.summary["modalities"]["ehr"]["rows"] == len(events)
    c = Cohort.from_manifest(tmp_path / "manifest.yaml")
    assert c.modalities["ehr"].subject_ids == {str(s): int(s) for s in subjects}


def test_cbioportal_status_codes_are_event_codes(tiny_cohort: TinyCohort) -> None:
    codes = ["1:DECEASED", "0:LIVING", "1:Recurred/Progressed", "0:DiseaseFree", "1:PROGRESSION", "0:CENSORED",
             " 1:DECEASED ", "0:LIVING"]
    tiny_cohort.edit_patients(lambda df: df.assign(event=codes))
    c = Cohort.from_manifest(tiny_cohort.manifest_path)
    assert c.patients["event"].tolist() == [True, False] * 4


def test_a_repeated_event_error_is_reported_once_with_a_count(tiny_cohort: TinyCohort) -> None:
    tiny_cohort.edit_patients(lambda df: df.assign(event=["DECEASED", "LIVING"] * 4))
    res = resolve_manifest(tiny_cohort.manifest_path)
    bad = [p for p in res.problems if p.field == "event"]
    assert len(bad) == 1, bad
    msg = bad[0].message
    assert msg.startswith("8 patients have event values that are not boolean or 0/1") and "1:DECEASED" in msg
    assert "'DECEASED', 'LIVING'" in msg and "P001, P002, P003 ..." in msg and bad[0].file.endswith("outcomes.parquet")


# ---- scoring: outcomes optional ---------------------------------------------------------------------------------
def test_scoring_loads_a_patient_table_without_outcome_columns(tiny_cohort: TinyCohort) -> None:
    tiny_cohort.edit_patients(lambda df: df.drop(columns=["time", "event", "response"]))
    with pytest.raises(InputError) as err:
        Cohort.from_manifest(tiny_cohort.manifest_path)
    assert {"time", "event", "response"} <= {p.field for p in err.value.problems}
    c = Cohort.from_manifest(tiny_cohort.manifest_path, outcomes="optional")
    p = c.patients
    assert list(p.index) == PATIENTS and p["time"].isna().all() and p["event"].isna().all()
    assert str(p["event"].dtype) == "boolean" and p["response"].isna().all() and not c.has_response()
    assert not c.outcome_known().any()
    assert p["treatment"].tolist() == [0, 1] * 4  # everything else as with outcomes
    assert c.modality_coverage() == {"pathology": 7, "genomics": 7, "ehr": 6, "clinical": 8}


def test_scoring_allows_empty_outcomes_but_keeps_every_other_check(tiny_cohort: TinyCohort) -> None:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df["time"] = df["time"].astype(object)
        df["event"] = df["event"].astype(object)
        df.loc[df.patient_id == "P003", ["time", "event"]] = None
        df.loc[df.patient_id == "P005", "time"] = -4.0  # still a problem when scoring
        return df
    tiny_cohort.edit_patients(edit)
    required = resolve_manifest(tiny_cohort.manifest_path)
    assert {("P003", "time"), ("P003", "event"), ("P005", "time")} <= {(p.patient, p.field) for p in required.problems}
    res = resolve_manifest(tiny_cohort.manifest_path, outcomes="optional")
    assert [(p.patient, p.field) for p in res.problems] == [("P005", "time")]
    tiny_cohort.edit_patients(lambda df: df.assign(time=df["time"].where(df.patient_id != "P005", 4.0)))
    c = Cohort.from_manifest(tiny_cohort.manifest_path, outcomes="optional")
    assert np.isnan(c.patients.loc["P003", "time"]) and pd.isna(c.patients.loc["P003", "event"])
    assert c.patients["event"].drop("P003").tolist() == [True, False, True, False, True, False, False]
    assert c.outcome_known().tolist() == [True, True, False, True, True, True, True, True]


def test_validate_for_scoring(tiny_cohort: TinyCohort, capsys: pytest.CaptureFixture[str]) -> None:
    from multimodal.cli.main import main

    tiny_cohort.edit_patients(lambda df: df.drop(columns=["time", "event"]))
    assert main(["validate", str(tiny_cohort.manifest_path)]) == 2
    assert "'time'" in capsys.readouterr().out
    assert main(["validate", str(tiny_cohort.manifest_path), "--for-scoring"]) == 0
    out = capsys.readouterr().out
    assert "VALID: 0 problem(s)" in out and "median time: -" in out


def test_extra_patients_in_each_modality_are_one_warning_each(tiny_cohort: TinyCohort) -> None:
    """Patients a source names but the patient table lacks are ignored with one warning per modality, whatever the
    source (slide table, AnnData obs, MAF, MEDS, clinical table)."""
    import anndata as ad

    for pid in ("P901", "P902"):
        write_trident_h5(tiny_cohort.root / "features" / f"{pid}_slide1.h5", np.ones((4, DIM), np.float32))
    tiny_cohort.edit_csv(tiny_cohort.slides_table_path, lambda df: pd.concat([df, pd.DataFrame(
        [{"patient_id": p, "slide_id": f"{p}_slide1", "path": f"features/{p}_slide1.h5"} for p in ("P901", "P902")])]))
    adata = ad.read_h5ad(tiny_cohort.expression_path)
    extra = ad.AnnData(X=adata.X[:3].copy(), obs=pd.DataFrame(index=["P551", "P552", "P553"]), var=adata.var.copy())
    extra.layers["counts"] = adata.layers["counts"][:3].copy()
    ad.concat([adata, extra]).write_h5ad(tiny_cohort.expression_path)
    maf = pd.read_csv(tiny_cohort.maf_path, sep="\t", comment="#")
    maf.loc[0, "Tumor_Sample_Barcode"] = "P909-01"
    maf.to_csv(tiny_cohort.maf_path, sep="\t", index=False)
    tiny_cohort.edit_csv(tiny_cohort.clinical_path, lambda df: pd.concat(
        [df, pd.DataFrame([{"patient_id": "P777", "age": "50", "sex": "F", "stage": "I", "note": "x"}])]))

    res = resolve_manifest(tiny_cohort.manifest_path)
    assert res.problems == []
    by_modality = {w.field: w for w in res.warnings if "not in the patient table" in w.message}
    assert set(by_modality) == {f"modalities.{m}" for m in ("pathology", "genomics", "ehr", "clinical")}
    assert by_modality["modalities.pathology"].message.startswith("2 patient(s)")
    assert "'P901', 'P902'" in by_modality["modalities.pathology"].message
    assert "slides.csv" in str(by_modality["modalities.pathology"].file)
    genomics = by_modality["modalities.genomics"]
    assert genomics.message.startswith("4 patient(s)") and "'P909'" in genomics.message  # 3 in obs + 1 in the MAF
    assert "expression.h5ad" in str(genomics.file) and "mutations.maf" in str(genomics.file)
    assert by_modality["modalities.ehr"].message.startswith("1 MEDS subject_id(s)")  # subject 999 of the fixture
    assert by_modality["modalities.clinical"].patient == "P777"
    c = Cohort.from_manifest(tiny_cohort.manifest_path)  # loads; the extra patients are not part of it
    assert "P901" not in c.modalities["pathology"].patients() and "P551" not in c.modalities["genomics"].patients()
    assert "P777" not in c.modalities["clinical"].patients()
