"""`validate_manifest` and `multimodal validate` on one broken input at a time, and on several at once.

Each case breaks the tiny valid cohort in one way, then checks that the report names the culprit (file name, patient
id and field), and that the CLI exits 2 and prints a line naming them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fixtures_cohort import DIM, TinyCohort, write_trident_h5

from multimodal.cli.main import main
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.validate import validate_manifest
from multimodal.errors import InputError, Problem


@dataclass(frozen=True)
class Case:
    break_it: Callable[[TinyCohort], None]
    file: str  # a substring of the file named by the problem
    patient: str | None
    field: str
    text: str = ""  # a substring the message or hint must contain


def _set_patient(col: str, pid: str, value: object) -> Callable[[TinyCohort], None]:
    def fn(tc: TinyCohort) -> None:
        def edit(df: pd.DataFrame) -> None:
            df.loc[df.patient_id == pid, col] = value
        tc.edit_patients(edit)
    return fn


def _duplicate_patient(tc: TinyCohort) -> None:
    tc.edit_patients(lambda df: pd.concat([df, df[df.patient_id == "P002"]], ignore_index=True))


def _event_not_binary(tc: TinyCohort) -> None:
    def edit(df: pd.DataFrame) -> None:
        df["event"] = df["event"].astype(int)
        df.loc[df.patient_id == "P006", "event"] = 2
    tc.edit_patients(edit)


def _censorship_without_polarity(tc: TinyCohort) -> None:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(censorship=(~df["event"]).astype(int)).drop(columns=["event"])
    tc.edit_patients(edit)

    def man(m: dict) -> None:
        del m["patients"]["event"]
        m["patients"]["censorship"] = "censorship"
    tc.edit_manifest(man)


def _prediction_time_text(tc: TinyCohort) -> None:
    def edit(df: pd.DataFrame) -> None:
        df["prediction_time"] = df["prediction_time"].astype(str)
        df.loc[df.patient_id == "P002", "prediction_time"] = "not-a-date"
    tc.edit_patients(edit)


def _slide(pid: str, **kw: object) -> Callable[[TinyCohort], None]:
    def fn(tc: TinyCohort) -> None:
        k = int(kw.pop("k", 1)) if "k" in kw else 1
        rows = int(kw.pop("rows", 6)) if "rows" in kw else 6
        dim = int(kw.pop("dim", DIM)) if "dim" in kw else DIM
        feats = np.random.default_rng(5).normal(size=(rows, dim)).astype(np.float32)
        write_trident_h5(tc.slide_path(pid, k), feats, **kw)  # type: ignore[arg-type]
    return fn


def _nan_features(tc: TinyCohort) -> None:
    feats = np.ones((10, DIM), np.float32)
    feats[3, 2] = np.nan
    write_trident_h5(tc.slide_path("P006"), feats)


def _features_not_2d(tc: TinyCohort) -> None:
    write_trident_h5(tc.slide_path("P004"), np.ones(DIM, np.float32), coords=np.zeros((DIM, 2), np.int64))


def _coords_mismatch(tc: TinyCohort) -> None:
    write_trident_h5(tc.slide_path("P003"), np.ones((6, DIM), np.float32), coords=np.zeros((6, 3), np.int64))


def _empty_bag(tc: TinyCohort) -> None:
    write_trident_h5(tc.slide_path("P004"), np.zeros((0, DIM), np.float32), coords=np.zeros((0, 2), np.int64))


def _truncated_h5(tc: TinyCohort) -> None:
    path = tc.slide_path("P005")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _h5_without_features(tc: TinyCohort) -> None:
    with h5py.File(tc.slide_path("P007"), "w") as f:
        f.create_dataset("coords", data=np.zeros((4, 2), np.int64))


def _slide_unknown_patient(tc: TinyCohort) -> None:
    write_trident_h5(tc.root / "features" / "P999_slide1.h5", np.ones((4, DIM), np.float32))
    tc.edit_csv(tc.slides_table_path, lambda df: pd.concat(
        [df, pd.DataFrame([{"patient_id": "P999", "slide_id": "P999_slide1", "path": "features/P999_slide1.h5"}])]))


def _clinical_unknown_patient(tc: TinyCohort) -> None:
    tc.edit_csv(tc.clinical_path, lambda df: pd.concat(
        [df, pd.DataFrame([{"patient_id": "P777", "age": "50", "sex": "F", "stage": "I", "note": "x"}])]))


def _expression_unknown_patient(tc: TinyCohort) -> None:
    import anndata as ad

    adata = ad.read_h5ad(tc.expression_path)
    extra = ad.AnnData(X=adata.X[:1].copy(), obs=pd.DataFrame(index=["P555"]), var=adata.var.copy())
    extra.layers["counts"] = adata.layers["counts"][:1].copy()
    ad.concat([adata, extra]).write_h5ad(tc.expression_path)


def _maf_missing_column(tc: TinyCohort) -> None:
    maf = pd.read_csv(tc.maf_path, sep="\t", comment="#")
    maf.drop(columns=["Variant_Classification"]).to_csv(tc.maf_path, sep="\t", index=False)


def _maf_unknown_patient(tc: TinyCohort) -> None:
    maf = pd.read_csv(tc.maf_path, sep="\t", comment="#")
    maf.loc[0, "Tumor_Sample_Barcode"] = "P909-01"
    maf.to_csv(tc.maf_path, sep="\t", index=False)


def _meds_unsorted(tc: TinyCohort) -> None:
    t = tc.meds()
    idx = np.arange(t.num_rows)
    rows = np.flatnonzero(t.column("subject_id").to_numpy() == 103)
    idx[rows] = rows[::-1]  # subject 103 (patient P003): its rows reversed
    tc.write_meds(t.take(pa.array(idx)))


def _meds_wrong_dtype(tc: TinyCohort) -> None:
    t = tc.meds()
    t = t.set_column(0, "subject_id", pc.cast(t.column("subject_id"), pa.string()))
    tc.write_meds(t)


def _meds_no_data_dir(tc: TinyCohort) -> None:
    (tc.root / "meds" / "data").rename(tc.root / "meds" / "data_old")


def _unknown_key(tc: TinyCohort) -> None:
    tc.edit_manifest(lambda m: m["patients"].update(evnt="event"))


def _missing_time_column(tc: TinyCohort) -> None:
    tc.edit_manifest(lambda m: m["patients"].update(time="os_days"))


def _bad_yaml(tc: TinyCohort) -> None:
    tc.manifest_path.write_text("patients: [unclosed\n  modalities: {")


def _h5_without_coords(tc: TinyCohort) -> None:
    with h5py.File(tc.slide_path("P003"), "w") as f:
        f.create_dataset("features", data=np.ones((5, DIM), np.float32)).attrs["encoder"] = "conch_v15"


def _edit_h5ad(fn: Callable[..., object]) -> Callable[[TinyCohort], None]:
    def edit(tc: TinyCohort) -> None:
        import anndata as ad

        adata = ad.read_h5ad(tc.expression_path)
        adata = fn(adata) or adata
        adata.write_h5ad(tc.expression_path)
    return edit


def _h5ad_patient_twice(adata: object) -> object:
    import anndata as ad

    twice = ad.concat([adata, adata[1:2].copy()])
    twice.obs_names = [*adata.obs_names, adata.obs_names[1]]
    return twice


def _h5ad_value(layer: str | None, value: float) -> Callable[[object], None]:
    def fn(adata: object) -> None:
        m = adata.layers[layer] if layer else adata.X  # type: ignore[attr-defined]
        m[2, 5] = value  # patient P003, gene G5
    return fn


def _x_only_with_inf(adata: object) -> None:
    del adata.layers["counts"]  # type: ignore[attr-defined]
    _h5ad_value(None, -np.inf)(adata)


def _meds_edit(fn: Callable[[pd.DataFrame], None]) -> Callable[[TinyCohort], None]:
    def edit(tc: TinyCohort) -> None:
        df = tc.meds().to_pandas()
        fn(df)
        tc.write_meds(pa.Table.from_pandas(df, schema=tc.meds().schema, preserve_index=False))
    return edit


def _meds_inf(df: pd.DataFrame) -> None:
    df.loc[(df.subject_id == 104) & (df.code == "LAB//HGB"), "numeric_value"] = np.inf


def _meds_null_code(df: pd.DataFrame) -> None:
    df.loc[(df.subject_id == 105) & (df.code == "MEDS_BIRTH"), "code"] = None


def _maf_sample_not_listed(tc: TinyCohort) -> None:
    maf = pd.read_csv(tc.maf_path, sep="\t", comment="#")
    maf.loc[0, "Tumor_Sample_Barcode"] = "P001-02"  # a known patient's sample, not in the sequenced list
    maf.to_csv(tc.maf_path, sep="\t", index=False)


def _split_unknown_id(tc: TinyCohort) -> None:
    path = tc.root / "splits" / "splits_0.csv"
    df = pd.read_csv(path, index_col=0)
    df.loc[0, "val"] = "P404"
    df.to_csv(path)


CASES: dict[str, Case] = {
    "missing_manifest": Case(lambda tc: tc.manifest_path.unlink(), "manifest.yaml", None, "manifest", "not found"),
    "bad_yaml": Case(_bad_yaml, "manifest.yaml", None, "manifest", "YAML"),
    "unknown_key_did_you_mean": Case(_unknown_key, "manifest.yaml", None, "patients.evnt", "did you mean 'event'"),
    "missing_time_column": Case(_missing_time_column, "outcomes.parquet", None, "os_days", "available"),
    "missing_slide_file": Case(lambda tc: tc.slide_path("P003").unlink(), "P003_slide1.h5", "P003", "path",
                               "not found"),
    "duplicate_patient_id": Case(_duplicate_patient, "outcomes.parquet", "P002", "patient_id", "duplicate"),
    "negative_time": Case(_set_patient("time", "P004", -5.0), "outcomes.parquet", "P004", "time", "negative"),
    "nan_time": Case(_set_patient("time", "P005", np.nan), "outcomes.parquet", "P005", "time", "NaN"),
    "event_not_binary": Case(_event_not_binary, "outcomes.parquet", "P006", "event", "0/1"),
    "censorship_without_polarity": Case(_censorship_without_polarity, "manifest.yaml", None,
                                        "censorship_polarity", "1_is_censored"),
    "response_not_a_class": Case(_set_patient("response", "P001", 3), "outcomes.parquet", "P001", "response",
                                 "not a valid class"),
    "unknown_treatment_arm": Case(_set_patient("arm", "P002", "C"), "outcomes.parquet", "P002", "arm",
                                  "unknown treatment arm"),
    "prediction_time_not_a_date": Case(_prediction_time_text, "outcomes.parquet", "P002", "prediction_time",
                                       "not-a-date"),
    "dim_differs_within_patient": Case(_slide("P001", k=2, dim=12), "P001_slide2.h5", "P001", "features",
                                       "dim 12"),
    "two_encoders_mixed": Case(_slide("P007", encoder="uni_v1"), "P007_slide1.h5", "P007", "encoder", "uni_v1"),
    "truncated_h5": Case(_truncated_h5, "P005_slide1.h5", "P005", "path", "readable"),
    # issue 23 class 1: validate reads with the commands' readers, so it refuses what they refuse
    "h5_without_coords": Case(_h5_without_coords, "P003_slide1.h5", "P003", "coords", "no 'coords'"),
    "h5ad_patient_twice": Case(_edit_h5ad(_h5ad_patient_twice), "expression.h5ad", "P002", "obs_names",
                               "more than one expression profile"),
    "clinical_value_inf": Case(lambda tc: tc.edit_csv(tc.clinical_path, lambda df: df.assign(
        age=df["age"].astype(float).where(df.patient_id != "P005", np.inf))), "clinical.csv", "P005", "age",
        "infinite"),
    "h5ad_counts_inf": Case(_edit_h5ad(_h5ad_value("counts", np.inf)), "expression.h5ad", "P003", "layers.counts",
                            "'G5'"),
    "h5ad_x_inf": Case(_edit_h5ad(_x_only_with_inf),
                       "expression.h5ad", "P003", "X['G5']", "infinite"),
    "meds_numeric_value_inf": Case(_meds_edit(_meds_inf), "0.parquet", "P004", "numeric_value", "infinite"),
    "meds_null_code": Case(_meds_edit(_meds_null_code), "0.parquet", "P005", "code", "null code"),
    "maf_sample_not_in_sequenced_list": Case(_maf_sample_not_listed, "mutations.maf", "P001-02",
                                             "mutation_samples", "sequenced-sample list"),
    "h5_without_features": Case(_h5_without_features, "P007_slide1.h5", "P007", "features", "coords"),
    "features_not_2d": Case(_features_not_2d, "P004_slide1.h5", "P004", "features", "2-D"),
    "coords_shape_mismatch": Case(_coords_mismatch, "P003_slide1.h5", "P003", "coords", "(6, 2)"),
    "nan_features": Case(_nan_features, "P006_slide1.h5", "P006", "features", "NaN"),
    "maf_missing_required_column": Case(_maf_missing_column, "mutations.maf", None, "Variant_Classification",
                                        "required column"),
    "slide_format_does_not_fit_suffix": Case(lambda tc: tc.edit_manifest(
        lambda m: m["modalities"]["pathology"].update(format="pt")), "P002_slide2.h5", "P002",
        "modalities.pathology.format", "does not fit"),
    "meds_wrong_dtype": Case(_meds_wrong_dtype, "0.parquet", None, "subject_id", "int64"),
    "meds_no_data_dir": Case(_meds_no_data_dir, "data", None, "modalities.ehr.path", "data/"),
    "split_file_unknown_id": Case(_split_unknown_id, "splits_0.csv", "P404", "val", "not in the cohort"),
}


#: Patients a modality has but the patient table lacks: one warning per modality (count and ids), not an error, so
#: a source holding more patients than the study (a shared h5ad, a site-wide MEDS) still loads.
EXTRA_PATIENTS = {
    "slides": (_slide_unknown_patient, "pathology", "P999"),
    "clinical": (_clinical_unknown_patient, "clinical", "P777"),
    "expression": (_expression_unknown_patient, "genomics", "P555"),
    "maf": (_maf_unknown_patient, "genomics", "P909"),
}


@pytest.mark.parametrize("name", list(EXTRA_PATIENTS))
def test_extra_patients_in_a_modality_are_one_warning(name: str, tiny_cohort: TinyCohort) -> None:
    break_it, modality, pid = EXTRA_PATIENTS[name]
    break_it(tiny_cohort)
    report = validate_manifest(tiny_cohort.manifest_path)
    assert report.ok, [str(p) for p in report.problems]
    hits = [w for w in report.warnings if w.field and modality in w.field and pid in str(w)]
    assert len(hits) == 1, [str(w) for w in report.warnings]


def _matches(p: Problem, case: Case) -> bool:
    return (p.file is not None and case.file in p.file and p.patient == case.patient
            and p.field is not None and case.field in p.field)


def _line_matches(line: str, case: Case) -> bool:
    needed = [case.file, case.field] + ([f"patient {case.patient}"] if case.patient else [])
    return line.startswith("problem:") and all(n in line for n in needed)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_reported(name: str, tiny_cohort: TinyCohort, capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    case.break_it(tiny_cohort)

    report = validate_manifest(tiny_cohort.manifest_path)
    assert not report.ok
    hits = [p for p in report.problems if _matches(p, case)]
    assert hits, f"no problem names {case}; got:\n" + "\n".join(map(str, report.problems))
    text = str(hits[0])
    assert case.file in text and case.field in text and (case.patient is None or case.patient in text)
    assert case.text in text, text
    with pytest.raises(InputError) as err:
        report.raise_if_invalid()
    assert len(err.value.problems) == len(report.problems)

    capsys.readouterr()
    rc = main(["validate", str(tiny_cohort.manifest_path)])
    out = capsys.readouterr().out
    assert rc == 2
    assert any(_line_matches(line, case) for line in out.splitlines()), out
    assert "INVALID" in out


def test_loading_raises_the_same_problem(tiny_cohort: TinyCohort) -> None:
    _duplicate_patient(tiny_cohort)
    _set_patient("time", "P004", -1.0)(tiny_cohort)
    with pytest.raises(InputError) as err:
        Cohort.from_manifest(tiny_cohort.manifest_path)
    fields = {(p.patient, p.field) for p in err.value.problems}
    assert ("P002", "patient_id") in fields and ("P004", "time") in fields


def test_valid_cohort_exits_0(tiny_cohort: TinyCohort, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "report.json"
    rc = main(["validate", str(tiny_cohort.manifest_path), "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "VALID: 0 problem(s)" in out
    data = json.loads(out_json.read_text())
    assert data["valid"] is True and data["problems"] == []
    s = data["summary"]
    assert s["n_patients"] == 8 and s["n_events"] == 4
    assert s["encoders"] == ["conch_v15"] and s["feature_dims"] == [DIM]
    assert s["modalities"]["pathology"]["slides"] == 9
    assert s["modalities"]["ehr"]["patients"] == 6 and s["modalities"]["genomics"]["patients"] == 7


def test_many_problems_reported_at_once(tiny_cohort: TinyCohort, capsys: pytest.CaptureFixture[str]) -> None:
    broken = ["unknown_key_did_you_mean", "negative_time", "nan_time", "missing_slide_file", "two_encoders_mixed",
              "nan_features", "maf_missing_required_column", "meds_null_code", "split_file_unknown_id"]
    for name in broken:
        CASES[name].break_it(tiny_cohort)
    report = validate_manifest(tiny_cohort.manifest_path)
    for name in broken:
        assert any(_matches(p, CASES[name]) for p in report.problems), (name, [str(p) for p in report.problems])
    rc = main(["validate", str(tiny_cohort.manifest_path)])
    out = capsys.readouterr().out
    assert rc == 2
    for name in broken:
        assert any(_line_matches(line, CASES[name]) for line in out.splitlines()), (name, out)


def test_many_bad_rows_are_summarised(tiny_cohort: TinyCohort) -> None:
    from multimodal.cohorts import loading

    def edit(df: pd.DataFrame) -> None:
        df["time"] = -1.0
    tiny_cohort.edit_patients(edit)
    old = loading.MAX_PER_GROUP
    report = validate_manifest(tiny_cohort.manifest_path)
    negative = [p for p in report.problems if p.field == "time"]
    assert len(negative) == 8 and old >= 8
    # with a small cap, the rest are summarised in one line naming the count
    log = loading.ProblemLog(max_per_group=3)
    for p in "ABCDE":
        log.error("negative time", file="t.csv", patient=p, field="time", group="negative time")
    log.finish()
    assert len(log.problems) == 4 and "2 more" in log.problems[-1].message and "D" in log.problems[-1].message


# ---- warnings: the cohort is still valid ------------------------------------------------------------------------
def test_events_after_prediction_time_are_a_counted_warning(tiny_cohort: TinyCohort) -> None:
    t = tiny_cohort.meds()
    late = pa.table({"subject_id": pa.array([102, 102, 102], pa.int64()),
                     "time": pa.array(pd.to_datetime(["2020-02-01", "2020-03-01", "2021-01-01"]).to_pydatetime(),
                                      pa.timestamp("us")),
                     "code": pa.array(["LAB//HGB"] * 3, pa.string()),
                     "numeric_value": pa.array([9.0, 8.0, 7.0], pa.float32())})
    merged = pa.concat_tables([t, late])
    times = merged.column("time").cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy()
    order = np.lexsort((times, merged.column("subject_id").to_numpy()))  # by subject, then time, nulls first
    tiny_cohort.write_meds(merged.take(pa.array(order)))
    report = validate_manifest(tiny_cohort.manifest_path)
    assert report.ok, report.problems
    assert report.summary["events_after_prediction_time"] == 3
    w = [x for x in report.warnings if x.patient == "P002" and x.field == "prediction_time"]
    assert w and "3 EHR event(s) after the prediction time for 1 patient(s)" in w[0].message


def test_counts_layer_missing_and_patient_without_data_warn(tiny_cohort: TinyCohort,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import anndata as ad

    adata = ad.read_h5ad(tiny_cohort.expression_path)
    del adata.layers["counts"]
    adata.write_h5ad(tiny_cohort.expression_path)
    tiny_cohort.edit_manifest(lambda m: m["modalities"].pop("clinical"))
    report = validate_manifest(tiny_cohort.manifest_path)
    assert report.ok, report.problems
    assert any(w.field == "layers.counts" and "expression.h5ad" in str(w.file) for w in report.warnings)
    assert any(w.patient == "P008" and "no data in any modality" in w.message for w in report.warnings)
    assert main(["validate", str(tiny_cohort.manifest_path)]) == 0
    assert "warning:" in capsys.readouterr().out


def test_unsorted_meds_rows_are_valid_for_validate_loading_and_the_adapter(tiny_cohort: TinyCohort) -> None:
    """docs/data-formats.md: MEDS row order does not matter (was an error of validate only, issue 23 class 1)."""
    from multimodal.adapters.ehr import EHRAdapter

    _meds_unsorted(tiny_cohort)
    report = validate_manifest(tiny_cohort.manifest_path)
    assert report.ok, [str(p) for p in report.problems]
    cohort = Cohort.from_manifest(tiny_cohort.manifest_path)
    ids = [p for p in cohort.patient_ids if p in cohort.modalities["ehr"].patients()]
    EHRAdapter().fit(cohort, ids).transform("P003")


def test_empty_patch_bag_is_a_warning_as_in_the_adapter(tiny_cohort: TinyCohort) -> None:
    """An empty bag yields no tokens in the pathology adapter, so validate warns instead of refusing (class 1)."""
    _empty_bag(tiny_cohort)
    report = validate_manifest(tiny_cohort.manifest_path)
    assert report.ok, [str(p) for p in report.problems]
    (w,) = [w for w in report.warnings if "empty patch bag" in w.message]
    assert w.patient == "P004" and w.field == "features" and "P004_slide1.h5" in str(w.file)
    Cohort.from_manifest(tiny_cohort.manifest_path)  # loading agrees


@pytest.mark.parametrize("name", ["h5ad_counts_inf", "h5ad_x_inf", "h5ad_patient_twice", "maf_sample_not_in_sequenced_list"])
def test_the_genomics_adapter_refuses_what_validate_refuses(name: str, tiny_cohort: TinyCohort) -> None:
    """One reader: the adapter's error names the same file, patient and field as validate's problem."""
    from multimodal.adapters.genomics import GenomicsAdapter

    case = CASES[name]
    case.break_it(tiny_cohort)
    try:
        cohort = Cohort.from_manifest(tiny_cohort.manifest_path)
        GenomicsAdapter().fit(cohort, list(cohort.patient_ids))
    except InputError as exc:
        assert any(_matches(p, case) for p in exc.problems), [str(p) for p in exc.problems]
    else:
        raise AssertionError(f"{name}: the genomics adapter accepted what validate refuses")


def test_real_clam_patch_coordinate_file_is_not_a_feature_file(shared_data, tiny_cohort: TinyCohort) -> None:
    """A CLAM ``patches/<slide>.h5`` (coords only, read in place from shared/data) given as a feature file."""
    real = sorted((shared_data / "clam_coords").glob("*.h5"))[0]
    tiny_cohort.edit_csv(tiny_cohort.slides_table_path, lambda df: pd.concat(
        [df, pd.DataFrame([{"patient_id": "P008", "slide_id": real.stem, "path": str(real)}])]))
    report = validate_manifest(tiny_cohort.manifest_path)
    (p,) = [p for p in report.problems if p.patient == "P008"]
    assert p.file == str(real) and p.field == "features" and "coords" in p.message
    assert "patch-coordinate" in (p.hint or "")
