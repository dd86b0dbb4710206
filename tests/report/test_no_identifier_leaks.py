"""No identifier that can embed the patient id reaches any file the report writes.

The synthetic cohort plants the raw patient id in every identifier a real cohort may carry: slide ids
(``<id>_slide1``), slide file names (``slides/<id>_slide1.h5``) and sequencing sample barcodes (``<id>-01A``).
"""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
from report_helpers import full_patient

from multimodal.cli.main import main


def _planted(manifest, pid: str) -> list[str]:
    root = manifest.parent
    slides = pd.read_csv(root / "slides.csv")
    mine = slides[slides["patient_id"] == pid]
    samples = [s for s in (root / "omics" / "sequenced_samples.txt").read_text().split() if s.startswith(pid)]
    ids = [*mine["slide_id"], *mine["path"], *samples]
    assert len(mine) and samples and all(pid in i for i in ids)  # the planting is real: the test can fail
    return ids


def _written_text(out) -> dict[str, str]:
    texts = {}
    for f in out.rglob("*"):
        if not f.is_file():
            continue
        texts[f.name] = f.read_bytes().decode("latin-1")
        if f.suffix == ".pdf" and shutil.which("pdftotext"):
            texts[f.name + " (text)"] = subprocess.run(["pdftotext", str(f), "-"], check=True, capture_output=True,
                                                       text=True).stdout
    return texts


def test_no_raw_identifier_in_any_written_file(report_cohort, pipeline_dir, tmp_path):
    pid = full_patient(report_cohort)
    planted = _planted(report_cohort, pid)
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pipeline_dir), "--manifest", str(report_cohort), "--patient", pid,
                 "--out", str(out)]) == 0
    texts = _written_text(out)
    assert {"report.html", "risk_result.json", "report.pdf"} <= set(texts)
    for name, text in texts.items():
        low = text.lower()
        for ident in [pid, *planted]:
            assert ident.lower() not in low, f"{ident!r} in {name}"
    assert "slide 1 of" in texts["report.html"]  # slides are named neutrally instead
