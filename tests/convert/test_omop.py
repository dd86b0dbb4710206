"""``multimodal convert omop``: the OHDSI Synthea27Nj OMOP CDM 5.4 sample (../shared/data/ehr) as MEDS 0.4, checked
against the source tables read independently (pandas), and small hand-made OMOP folders for the edge cases."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from multimodal.cli.main import main
from multimodal.cohorts.omop import convert_omop

SAMPLE = Path("ehr") / "omop_synthea27nj" / "Synthea27Nj_5.4.zip"


@pytest.fixture(scope="module")
def sample(shared_data: Path) -> Path:
    path = shared_data / SAMPLE
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def source(sample: Path) -> dict[str, pd.DataFrame]:
    with zipfile.ZipFile(sample) as zf:
        return {n[:-4].lower(): pd.read_csv(zf.open(n), dtype=str, keep_default_na=False)
                for n in zf.namelist() if n.endswith(".csv") and not Path(n).name.startswith("._")}


@pytest.fixture(scope="module")
def converted(sample: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("omop") / "meds"
    assert main(["convert", "omop", str(sample), "--out", str(out)]) == 0
    return out


def _data(root: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((root / "data").glob("*.parquet"))], ignore_index=True)


def test_meds_04_layout_and_schema(converted: Path):
    from multimodal.cohorts.formats.meds import content_problems, scan_meds, shard_problems

    shards = sorted((converted / "data").glob("*.parquet"))
    assert shards
    for shard in shards:
        info, problems = shard_problems(shard)
        assert not problems, problems
        schema = pq.read_schema(shard)
        assert str(schema.field("subject_id").type) == "int64" and str(schema.field("time").type) == "timestamp[us]"
        assert str(schema.field("numeric_value").type) == "float" and str(schema.field("code").type) == "string"
        assert str(schema.field("text_value").type) == "large_string"
    assert scan_meds(converted).collect().height == len(_data(converted))
    assert not content_problems(shards)
    meta = json.loads((converted / "metadata" / "dataset.json").read_text())
    assert meta["meds_version"] == "0.4" and meta["dataset_name"] == "NJ"
    codes = pd.read_parquet(converted / "metadata" / "codes.parquet")
    assert set(_data(converted)["code"]) <= set(codes["code"])  # MEDS 0.4: codes.parquet lists every code


def test_every_person_birth_gender_and_the_deaths(converted: Path, source):
    d = _data(converted)
    person = source["person"]
    assert sorted(d["subject_id"].unique()) == sorted(person["person_id"].astype(int))
    birth = d[d["code"] == "MEDS_BIRTH"].set_index("subject_id")["time"]
    want = pd.to_datetime(person.set_index(person["person_id"].astype(int))["birth_datetime"])
    pd.testing.assert_series_equal(birth.sort_index(), want.sort_index(), check_names=False, check_dtype=False)
    gender = d[d["code"].str.startswith("Gender/")].set_index("subject_id")["code"].sort_index()
    src = person.set_index(person["person_id"].astype(int))["gender_source_value"].sort_index()
    assert (gender.str.removeprefix("Gender/") == src).all()  # 8507 = M, 8532 = F
    death = d[d["code"] == "MEDS_DEATH"]
    assert len(death) == 3 == len(source["death"])
    want_death = dict(zip(source["death"]["person_id"].astype(int), pd.to_datetime(source["death"]["death_datetime"]),
                          strict=True))
    assert dict(zip(death["subject_id"], death["time"], strict=True)) == want_death


def test_measurements_keep_code_value_time_and_unit(converted: Path, source):
    d = _data(converted)
    m = d[d["table"] == "measurement"]
    src = source["measurement"]
    assert len(m) == len(src)  # every measurement concept is in the sample's CONCEPT table
    concept = source["concept"].set_index("concept_id")
    row = src.iloc[0]  # person 1, body weight 48.1 kg
    cid = row["measurement_source_concept_id"] if row["measurement_source_concept_id"] not in ("", "0") \
        else row["measurement_concept_id"]
    code = f"{concept.loc[cid, 'vocabulary_id']}/{concept.loc[cid, 'concept_code']}"
    hit = m[(m["subject_id"] == int(row["person_id"])) & (m["code"] == code)
            & (m["time"] == pd.Timestamp(row["measurement_datetime"]))]
    assert len(hit) == 1
    assert hit["numeric_value"].item() == pytest.approx(float(row["value_as_number"]))
    assert hit["unit"].item() == row["unit_source_value"] and hit["visit_id"].item() == int(row["visit_occurrence_id"])
    codes = pd.read_parquet(converted / "metadata" / "codes.parquet").set_index("code")
    assert codes.loc[code, "description"] == concept.loc[cid, "concept_name"]
    n_numeric = (pd.to_numeric(src["value_as_number"], errors="coerce").notna()).sum()
    assert m["numeric_value"].notna().sum() == n_numeric


def test_each_subject_in_one_shard_sorted_by_time(sample: Path, tmp_path: Path):
    report = convert_omop(sample, tmp_path / "m", shard_size=5)
    shards = sorted((tmp_path / "m" / "data").glob("*.parquet"))
    assert report.shards == len(shards) == 6  # 28 persons, 5 per shard
    seen: set[int] = set()
    for shard in shards:
        df = pd.read_parquet(shard)
        ids = set(df["subject_id"])
        assert not ids & seen
        seen |= ids
        for _, g in df.groupby("subject_id", sort=False):
            t = g["time"].to_numpy()
            assert (np.diff(t[~pd.isna(t)].astype("int64")) >= 0).all()
    assert len(seen) == 28 == report.subjects
    assert sum(report.events.values()) == sum(len(pd.read_parquet(s)) for s in shards)


def _tiny_omop(root: Path, *, concept: bool = True) -> Path:
    root.mkdir(parents=True)
    pd.DataFrame({"person_id": [1, 2], "gender_concept_id": [8532, 8507], "year_of_birth": [1950, 1960],
                  "month_of_birth": [3, None], "day_of_birth": [None, None], "race_concept_id": [0, 0]}
                 ).to_csv(root / "person.csv", index=False)
    pd.DataFrame({"condition_occurrence_id": [1, 2, 3], "person_id": [1, 1, 2],
                  "condition_concept_id": [201826, 0, 4], "condition_start_date": ["2020-01-05", "2020-02-01",
                                                                                   "2021-03-04"],
                  "condition_start_datetime": ["", "", "2021-03-04 10:30:00"],
                  "condition_source_concept_id": [0, 0, 0]}).to_csv(root / "condition_occurrence.csv", index=False)
    if concept:
        pd.DataFrame({"concept_id": [201826], "concept_name": ["Type 2 diabetes mellitus"], "vocabulary_id": ["SNOMED"],
                      "concept_code": ["44054006"]}).to_csv(root / "CONCEPT.csv", index=False)
    return root


def test_date_only_events_move_to_the_end_of_the_day(tmp_path: Path):
    report = convert_omop(_tiny_omop(tmp_path / "src"), tmp_path / "meds")
    d = _data(tmp_path / "meds")
    cond = d[d["table"] == "condition_occurrence"].set_index("subject_id")
    assert cond.loc[1, "code"] == "SNOMED/44054006"
    assert cond.loc[1, "time"] == pd.Timestamp("2020-01-05 23:59:59")  # a date: known by the end of that day
    assert cond.loc[2, "time"] == pd.Timestamp("2021-03-04 10:30:00")  # a datetime keeps its time
    assert cond.loc[2, "code"] == "OMOP_CONCEPT_ID/4"  # not in CONCEPT: kept, counted
    assert report.unmapped_concepts == 1
    assert report.dropped_no_concept == {"condition_occurrence": 1, "person": 2}  # concept id 0: no code
    birth = d[d["code"] == "MEDS_BIRTH"].set_index("subject_id")["time"]
    assert birth[1] == pd.Timestamp("1950-03-01") and birth[2] == pd.Timestamp("1960-01-01")
    assert set(d[d["table"] == "person"]["code"]) == {"MEDS_BIRTH", "Gender/F", "Gender/M"}


def test_bad_sources_exit_2_and_write_nothing(tmp_path: Path, capsys):
    src = _tiny_omop(tmp_path / "src", concept=False)
    out = tmp_path / "meds"
    assert main(["convert", "omop", str(src), "--out", str(out)]) == 2
    assert "CONCEPT" in capsys.readouterr().err and not out.exists()
    assert main(["convert", "omop", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err and not out.exists()
    (tmp_path / "empty").mkdir()
    assert main(["convert", "omop", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "PERSON" in capsys.readouterr().err


def test_the_converted_directory_is_a_cohort_ehr_modality(converted: Path, tmp_path: Path):
    """A manifest naming the converted directory validates, and the EHR adapter reads each patient's events before
    the prediction time."""
    import yaml

    from multimodal.cohorts.cohort import Cohort
    from multimodal.experiment import EHRAdapterConfig
    from multimodal.registry import ADAPTERS, _load_builtin

    d = _data(converted)
    pt = pd.Timestamp("2010-01-01")
    death = d[d["code"] == "MEDS_DEATH"].set_index("subject_id")["time"]
    last = d.groupby("subject_id")["time"].max()
    rows = []
    for sid in sorted(d["subject_id"].unique()):
        if sid in death.index and death[sid] <= pt:
            continue  # died before the prediction time: not a patient of this study
        end = death.get(sid, last[sid])
        rows.append({"patient_id": f"P{sid}", "subject_id": int(sid), "prediction_time": pt,
                     "time": max((end - pt).days, 1), "event": bool(sid in death.index)})
    pd.DataFrame(rows).to_parquet(tmp_path / "patients.parquet", index=False)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({
        "version": 1, "name": "omop-sample",
        "patients": {"path": "patients.parquet", "id": "patient_id", "time": "time", "event": "event",
                     "time_unit": "days", "prediction_time": "prediction_time", "meds_subject_id": "subject_id"},
        "modalities": {"ehr": {"type": "meds", "path": str(converted)}}}))
    assert main(["validate", str(manifest)]) == 0
    cohort = Cohort.from_manifest(manifest)
    _load_builtin()
    adapter = ADAPTERS.get("ehr")(EHRAdapterConfig(min_count=1))
    adapter.fit(cohort, cohort.patient_ids)
    pid = "P1"
    stream = adapter.transform(pid)
    n = int(stream.mask.sum())
    before = d[(d["subject_id"] == 1) & (d["time"] <= pt)]
    assert n > 0 and (stream.times[stream.mask] <= 0).all()  # nothing after the prediction time
    import re

    codes = {re.sub(r"( \[(trend|UNK)\])?( = .*?)?( @ .*)?$", "", name) for name in stream.names[0] if name}
    assert codes and codes <= set(before["code"]), codes - set(before["code"])  # the patient's own earlier events
    assert any(c.startswith(("LOINC/", "SNOMED/")) for c in codes)
