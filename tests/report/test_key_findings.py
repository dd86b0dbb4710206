"""Page 1 of the patient report: key findings in clinical units, honest validation status, no invented times."""

from __future__ import annotations

import json
import re

import pytest
from report_helpers import full_patient, patient_without

from multimodal.cli.main import main


def test_horizons_are_whole_years_within_follow_up():
    from multimodal.explain.key_findings import horizons_in_years, years_text

    assert horizons_in_years("days", 3650.0) == [(1.0, 365.25), (2.0, 730.5), (3.0, 1095.75), (5.0, 1826.25)]
    assert [y for y, _ in horizons_in_years("months", 40.0)] == [1.0, 2.0, 3.0]  # 5 years lie past follow-up
    assert horizons_in_years("days", 200.0) == []
    assert horizons_in_years("visits", 1e6) == []  # unknown unit: no conversion is guessed
    assert years_text(730.5, "days") == "2 years" and years_text(365.25, "days") == "1 year"


def test_survival_curve_ends_at_follow_up_without_invented_points():
    from multimodal.explain.risk import survival_knots

    assert survival_knots([100.0, 200.0], 450.0) == ([0.0, 100.0, 200.0, 450.0], 3)
    # follow-up not past the last edge (or unknown): the open bin has no end, the curve stops at the last edge
    assert survival_knots([100.0, 200.0], 150.0) == ([0.0, 100.0, 200.0], 2)
    assert survival_knots([100.0, 200.0], None) == ([0.0, 100.0, 200.0], 2)


@pytest.mark.parametrize(("ci", "chance"), [([0.45, 0.66], True), ([0.50, 0.70], True), ([0.53, 0.70], False)])
def test_validation_status_flags_chance_when_the_ci_reaches_one_half(ci, chance):
    from multimodal.explain.key_findings import validation_status

    st = validation_status({"c_index (mean over folds)": 0.6, "c_index 95% CI": ci, "n_folds": 5}, "survival")
    assert st["chance"] is chance and st["validated"] and f"{ci[0]:.2f}–{ci[1]:.2f}" in st["text"]
    assert not validation_status(None, "survival")["validated"]
    # an unbounded interval of an old summary is clipped to the metric's range
    old = validation_status({"c_index (mean over folds)": 0.56, "c_index 95% CI": [-1.36, 2.49]}, "survival")
    assert old["ci"] == [0.0, 1.0] and old["chance"]


def test_scrub_replaces_identifiers_everywhere_case_insensitively():
    from multimodal.explain.privacy import scrub

    d = {"a": ["TCGA-AB-1234-01A", {"TCGA-ab-1234_x": "slide tcga-ab-1234"}], "n": 3}
    out = scrub(d, ["TCGA-AB-1234"], "PT-X")
    assert "1234" not in json.dumps(out) and out["n"] == 3 and out["a"][0] == "PT-X-01A"


def _page1_text(pdf) -> str:
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) not installed")
    return subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout


def test_page_one_states_the_key_findings(report_cohort, pipeline_dir, tmp_path):
    pid = full_patient(report_cohort)
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pipeline_dir), "--manifest", str(report_cohort), "--patient", pid,
                 "--out", str(out)]) == 0
    res = json.loads((out / "risk_result.json").read_text())
    assert res["schema_version"] == 2 and res["report_date"] and res["endpoint"].startswith("Survival endpoint")
    assert [h["label"] for h in res["risks_at_horizons"]][:2] == ["1 year", "2 years"]
    meta = json.loads((pipeline_dir / "pipeline.json").read_text())["metadata"]
    assert res["survival"]["times"][-1] == res["survival"]["follow_up"] <= meta["max_train_time"]  # nothing invented
    assert all(h["cohort_survival"] is not None for h in res["risks_at_horizons"])
    assert {"age", "sex", "stage"} <= set(res["patient"])
    st = res["validation_status"]
    assert st["validated"] and 0.0 <= st["ci"][0] <= st["ci"][1] <= 1.0
    page1 = _page1_text(out / "report.pdf")
    for needle in ("key findings", res["patient"]["pseudonym"], "Report date", "event-free at 2 years",
                   "Cohort average", "Risk group", "Cross-validated c-index", "Endpoint", "Inputs missing",
                   "Strongest factors", "RESEARCH USE ONLY", "page 1 of"):
        assert needle in page1, needle
    if st["chance"]:
        assert "Not distinguishable from chance" in page1
    html = (out / "report.html").read_text()
    assert re.search(r'id="validation-status" class="status (chance|)"', html)
    assert "1.5" not in json.dumps(res["survival"]["note"])
    # every patient of the manifest trained the model: flagged from the pipeline's hashed record, beside the
    # training patients' own Kaplan-Meier average; the record names no patient
    assert res["model"]["training_patient"] == {"value": True,
                                                "basis": "the pipeline's record of its training patients"}
    assert "one of the model's training patients" in " ".join(page1.split())
    assert "training patients" in res["survival"]["cohort_average"]
    assert meta["training_patients"]["n"] == len(meta["training_patients"]["hashes"]) == 40
    assert pid not in json.dumps(meta["training_patients"])


def test_training_record_hashes_ids_and_reads_its_survival():
    from multimodal.training_record import patients_record, survival_at, was_training_patient

    rec = patients_record(["P1", "P2"], "cohort", 0)
    assert rec == patients_record(["P2", "P1"], "cohort", 0)  # same training, same record; no order kept
    assert "P1" not in json.dumps(rec) and len(rec["hashes"]) == 2
    assert was_training_patient(rec, "P1") is True and was_training_patient(rec, "P3") is False
    assert was_training_patient(None, "P1") is None and was_training_patient({}, "P1") is None
    km = {"times": [10.0, 20.0], "survival": [0.9, 0.5], "n_patients": 20, "n_events": 5, "max_time": 30.0}
    assert survival_at(km, [5.0, 10.0, 15.0, 25.0, 31.0]) == [1.0, 0.9, 0.9, 0.5, None]


def test_patient_without_slides_says_so_on_page_one(report_cohort, pipeline_dir, tmp_path):
    pid = patient_without(report_cohort, "pathology")
    if pid is None:
        pytest.skip("every patient of the test cohort has slides")
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pipeline_dir), "--manifest", str(report_cohort), "--patient", pid,
                 "--out", str(out)]) == 0
    res = json.loads((out / "risk_result.json").read_text())
    assert "pathology" in res["inputs_missing"] and "pathology" not in res["evidence"]
    page1 = _page1_text(out / "report.pdf")
    missing_line = next(line for line in page1.splitlines() if "Inputs missing" in line)
    assert "pathology" in missing_line
