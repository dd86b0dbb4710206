"""Long work gives feedback and resumes within a fold: the opening line, per-fold estimates, a study interrupted
inside a fold resumes its finished ensemble members and epochs from the fold's work folder, and the results come
back as DataFrames."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multimodal.errors import InputError
from multimodal.study_frame import StudyResult, study_frame

REPO = Path(__file__).resolve().parents[2]
SETS = ["training.epochs=2", "training.batch_size=8", "training.patience=5", "model.d_model=16",
        "model.num_latents=2", "model.depth=1", "model.ensemble=2", "model.stack=none", "evaluation.folds=2",
        "evaluation.ablations=false", "evaluation.baselines=[coxph_clinical]", "evaluation.bootstrap=10",
        "task=survival"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    return Path(generate_synthetic_cohort(tmp_path_factory.mktemp("fb") / "c", SyntheticConfig(
        patients=40, seed=2, patches_per_slide=20, embed_dim=8, n_genes=40, n_pathways=4, slides_per_patient=(1, 1))))


def _study(manifest: Path):
    from multimodal.experiment import load_experiment
    from multimodal.study import Study

    cfg = load_experiment(REPO / "configs" / "demo.yaml", [*SETS, f"data.manifest={manifest}"])
    return Study(cfg)


@pytest.fixture(scope="module")
def uninterrupted(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    lines: list[str] = []
    summary = _study(manifest).run(out, progress=lines.append)
    return out, summary, lines


def test_opening_line_names_cohort_patients_folds_models_and_time(uninterrupted):
    _, _, lines = uninterrupted
    first = lines[0]
    for part in ("40 patients", "2 folds", "1 model(s) of ours x 2 ensemble member(s)", "1 baseline(s)",
                 "4 trainings to go", "roughly"):
        assert part in first, first
    assert any(ln.startswith("fold 0 done; about") and "left for 1 fold(s)" in ln for ln in lines), lines


def test_rough_estimate_of_the_demo():
    from multimodal.study import _duration, _rough_seconds

    demo = _rough_seconds(75, 160, 40, 4)  # make demo: 5 folds x 5 models x 3 members
    assert 5 * 60 < demo < 30 * 60 and _duration(demo).endswith("min")
    assert _rough_seconds(0, 160, 40, 4) == 0 and _duration(30) == "30 s" and _duration(3 * 3600) == "3.0 h"


def test_interrupted_fold_resumes_per_member(manifest, uninterrupted, tmp_path, monkeypatch, caplog):
    import multimodal.pipeline as pipeline_mod

    out = tmp_path / "run"
    real = pipeline_mod.fit_model
    calls: list[Path | None] = []

    def crash_on_second_member(*args, **kwargs):
        calls.append(kwargs.get("out_dir"))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed while training member 1 of fold 0")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_mod, "fit_model", crash_on_second_member)
    with pytest.raises(KeyboardInterrupt):
        _study(manifest).run(out)
    member0 = calls[0]
    assert member0 is not None and "fold_0.partial" in str(member0)
    assert (member0 / "checkpoint" / "progress.json").is_file()  # member 0's epochs were saved
    monkeypatch.setattr(pipeline_mod, "fit_model", real)
    with caplog.at_level(logging.INFO, logger="multimodal.training"):
        resumed = _study(manifest).run(out)
    assert any("resuming from" in r.getMessage() and "fold_0.partial" in r.getMessage() for r in caplog.records)
    assert not list((out / "folds").glob("*.partial"))  # finished folds leave no checkpoints behind
    whole_out, whole, _ = uninterrupted
    a = pd.read_parquet(out / "predictions.parquet")
    b = pd.read_parquet(whole_out / "predictions.parquet")
    np.testing.assert_allclose(a["risk"].to_numpy(float), b["risk"].to_numpy(float), rtol=1e-5, atol=1e-6)
    assert resumed["methods"]["multimodal"]["mean"]["c_index"] == pytest.approx(
        whole["methods"]["multimodal"]["mean"]["c_index"])


def test_study_results_as_dataframes(uninterrupted):
    out, summary, _ = uninterrupted
    assert isinstance(summary, StudyResult)
    folds = summary.to_frame()
    assert list(folds.columns) == ["method", "fold", "metric", "value"]
    assert set(folds["method"]) == {"multimodal", "coxph_clinical"} and set(folds["fold"]) == {0, 1}
    rec = json.loads((out / "folds" / "fold_1.json").read_text())
    row = folds[(folds.method == "coxph_clinical") & (folds.fold == 1) & (folds.metric == "c_index")]
    assert row["value"].item() == pytest.approx(rec["methods"]["coxph_clinical"]["c_index"])
    assert not folds.duplicated(["method", "fold", "metric"]).any()
    table = summary.summary_frame()
    assert list(table.columns) == ["method", "metric", "mean", "std", "ci_low", "ci_high", "n_folds"]
    ours = table[(table.method == "multimodal") & (table.metric == "c_index")].iloc[0]
    assert ours["mean"] == pytest.approx(summary["methods"]["multimodal"]["mean"]["c_index"])
    assert ours["ci_low"] <= ours["mean"] <= ours["ci_high"] and ours["n_folds"] == 2
    f2, t2 = study_frame(out)  # the same from the run folder
    pd.testing.assert_frame_equal(f2, folds)
    pd.testing.assert_frame_equal(t2, table)


def test_study_frame_of_a_folder_without_a_run(tmp_path):
    with pytest.raises(InputError, match="summary.json"):
        study_frame(tmp_path)
