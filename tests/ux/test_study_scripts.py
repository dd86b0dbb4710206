"""The study scripts in cohorts/studies run end to end at tiny settings and use only the public API."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from multimodal.cohorts.studies import synthetic_demo, tcga_genomics_clinical

STUDIES = Path(synthetic_demo.__file__).resolve().parent
#: What a study script may import from the package: the public API.
PUBLIC = {"multimodal.cohorts", "multimodal.cohorts.synthetic", "multimodal.experiment", "multimodal.study",
          "multimodal.pipeline", "multimodal.config", "multimodal.metrics"}
@pytest.fixture(autouse=True)
def _one_torch_thread(_torch_threads):
    """One intra-op thread: on a busy shared machine OpenMP threads spin-wait for each other and a tiny model trains
    10-100x slower with 2 threads than with 1."""
    import torch

    torch.set_num_threads(1)
    yield


TINY = ["--set", "training.epochs=1", "--set", "model.d_model=16"]


@pytest.mark.parametrize("script", sorted(p.name for p in STUDIES.glob("*.py") if p.name != "__init__.py"))
def test_study_script_is_short_and_uses_public_api(script):
    src = (STUDIES / script).read_text()
    assert len(src.splitlines()) <= 65, f"{script} should stay a short script"
    mods = {n.module for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom) and n.module}
    mods |= {a.name for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in mods if m.startswith("multimodal")}
    assert ours <= PUBLIC, f"{script} imports non-public modules {sorted(ours - PUBLIC)}"
    assert "argparse" in mods


def test_synthetic_demo_quick(tmp_path, capsys):
    out = tmp_path / "syn"
    rc = synthetic_demo.main(["--out", str(out), "--quick", "--patients", "40", *TINY])
    assert rc == 0
    summary = json.loads((out / "study" / "summary.json").read_text())
    assert {"multimodal", "coxph_clinical"} <= set(summary["methods"])
    assert summary["n_folds"] == 2
    assert 0.5 < summary["oracle"]["c_index"] <= 1.0  # planted truth is recoverable: the oracle is informative
    preds = pd.read_parquet(out / "study" / "predictions.parquet")
    assert len(preds[preds["method"] == "multimodal"]) == 40  # every patient predicted once, out of fold
    text = capsys.readouterr().out
    assert "| multimodal |" in text and "vs oracle" in text
    assert (out / "cohort" / "manifest.yaml").is_file()


def test_tcga_study_quick(shared_data, tmp_path, capsys):
    out = tmp_path / "tcga"
    rc = tcga_genomics_clinical.main(["--data-root", str(shared_data), "--out", str(out), "--quick",
                                      "--cohorts", "blca", *TINY])
    assert rc == 0
    summary = json.loads((out / "blca" / "summary.json").read_text())
    assert summary["protocol"]["splits"] == "external split files"  # the published PORPOISE folds, not k-fold
    assert summary["protocol"]["time_unit"] == "months"
    assert [f["fold"] for f in summary["methods"]["multimodal"]["folds"]] == [0]
    # fold 0's reporting set is exactly the published val column of splits_0.csv
    published = pd.read_csv(shared_data / "tcga_porpoise/splits/5foldcv/tcga_blca/splits_0.csv")["val"].dropna()
    preds = pd.read_parquet(out / "blca" / "predictions.parquet")
    assert set(preds.loc[preds["method"] == "multimodal", "patient_id"]) == set(published.astype(str))
    assert "reported MCAT (WSI+genomics) on the same fold(s) [0]" in capsys.readouterr().out


def test_study_scripts_print_help(capsys):
    for mod in (synthetic_demo, tcga_genomics_clinical):
        with pytest.raises(SystemExit) as exc:
            mod.main(["--help"])
        assert exc.value.code == 0
        assert "python -m multimodal.cohorts.studies." in capsys.readouterr().out
