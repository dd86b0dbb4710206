"""End to end on a small synthetic cohort: cv study, train → save → load → predict, integrity checks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import TRAIN_OVERRIDES

from multimodal.cli.main import main


def _sets(extra: list[str] = ()) -> list[str]:
    out = []
    for o in [*TRAIN_OVERRIDES, *extra]:
        out += ["--set", o]
    return out


@pytest.fixture(scope="module")
def cv_run(small_cohort, demo_config, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cv") / "run"
    rc = main(["cv", str(demo_config), "--out", str(run), "--set", f"data.manifest={small_cohort}",
               *_sets(["evaluation.folds=2", "evaluation.baselines=[coxph_clinical, coxnet, rsf]"])])
    assert rc == 0
    return run


def test_cv_summary_shape(cv_run, small_cohort):
    s = json.loads((cv_run / "summary.json").read_text())
    methods = set(s["methods"])
    assert {"multimodal", "coxph_clinical", "coxnet", "rsf"} <= methods
    assert {"multimodal_pathology", "multimodal_genomics", "multimodal_ehr", "multimodal_clinical"} <= methods
    # a survival + response study also runs each survival baseline's response counterpart (response metrics only)
    response_only = {"logistic_clinical", "enet_logistic", "random_forest"}
    assert response_only <= methods
    for name, m in s["methods"].items():
        assert [f["fold"] for f in m["folds"]] == [0, 1]
        assert "ci95" in m
        if name in response_only:
            assert 0.0 <= m["mean"]["auroc"] <= 1.0 and m["mean"].get("c_index") is None
            continue
        assert set(m["mean"]) >= {"c_index", "c_index_uno", "ibs", "td_auc"}
        assert 0.0 <= m["mean"]["c_index"] <= 1.0
    assert 0.5 < s["oracle"]["c_index"] <= 1.0
    assert (cv_run / "summary.md").read_text().startswith("# ")
    # survival + response: our model also reports the response metrics; survival-only baselines do not
    assert s["task"] == "both"
    ours = s["methods"]["multimodal"]
    assert all(0.0 <= f["auroc"] <= 1.0 for f in ours["folds"]) and 0.0 <= ours["mean"]["auroc"] <= 1.0
    assert s["methods"]["coxnet"]["mean"]["auroc"] is None
    # the demo config's selection is declared: weight averaging and the 3-member ensemble, per fold
    assert "weights averaged over it and the next 4 epochs" in s["protocol"]["model_selection"]
    assert "a deep ensemble of 3 trainings" in s["protocol"]["model_selection"]
    assert all(len(f["member_best_epochs"]) == 3 for f in ours["folds"])
    header = next(line for line in (cv_run / "summary.md").read_text().splitlines() if line.startswith("| method"))
    assert "| auroc |" in header and "| c_index |" in header
    preds = pd.read_parquet(cv_run / "predictions.parquet")
    n = len(pd.read_parquet(Path(small_cohort).parent / "outcomes.parquet"))
    for _, g in preds.groupby("method"):
        assert len(g) == n and g["patient_id"].is_unique  # every patient predicted once, out of fold
    for k in (0, 1):  # folds are patient-level and identical across methods
        ids = {name: set(g["patient_id"]) for name, g in preds[preds["fold"] == k].groupby("method")}
        assert len({frozenset(v) for v in ids.values()}) == 1
    run = json.loads((cv_run / "run.json").read_text())
    assert run["versions"]["torch"] and run["inputs"] and all(len(f["sha256"]) == 64 for f in run["inputs"])


def test_cv_resumes_fold_by_fold(cv_run, small_cohort, demo_config, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in (cv_run / "folds").iterdir()}
    rc = main(["cv", str(demo_config), "--out", str(cv_run), "--set", f"data.manifest={small_cohort}",
               *_sets(["evaluation.folds=2", "evaluation.baselines=[coxph_clinical, coxnet, rsf]"])])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("already done, reusing") == 2 and "(2 already done)" in out
    after = {p.name: p.stat().st_mtime_ns for p in (cv_run / "folds").iterdir()}
    assert before == after


def test_cv_refuses_other_config_in_same_dir(cv_run, small_cohort, demo_config, capsys):
    rc = main(["cv", str(demo_config), "--out", str(cv_run), "--set", f"data.manifest={small_cohort}",
               *_sets(["evaluation.folds=3"])])
    assert rc == 2
    assert "different config" in capsys.readouterr().err


def test_cv_refuses_to_resume_folds_computed_by_other_code(cv_run, small_cohort, demo_config, capsys, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(cv_run, run)
    rec = json.loads((run / "run.json").read_text())
    rec["git_commit"] = "0" * 40  # the finished folds were computed by another commit
    (run / "run.json").write_text(json.dumps(rec))
    before = {p.name: p.read_bytes() for p in (run / "folds").iterdir()}
    rc = main(["cv", str(demo_config), "--out", str(run), "--set", f"data.manifest={small_cohort}",
               *_sets(["evaluation.folds=2", "evaluation.baselines=[coxph_clinical, coxnet, rsf]"])])
    err = capsys.readouterr().err
    if rec.get("versions") and json.loads((cv_run / "run.json").read_text()).get("git_commit") is None:
        pytest.skip("no git checkout: the commit is not recorded, nothing to compare")
    assert rc == 2 and "code changed" in err and "--overwrite" in err
    assert before == {p.name: p.read_bytes() for p in (run / "folds").iterdir()}  # nothing touched


@pytest.fixture(scope="module")
def pipeline_dir(small_cohort, demo_config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipe") / "pipeline"
    rc = main(["train", str(demo_config), "--out", str(out), "--set", f"data.manifest={small_cohort}", *_sets()])
    assert rc == 0
    return out


def test_pipeline_roundtrip_predicts_identically(pipeline_dir, small_cohort, tmp_path):
    from multimodal.cohorts.cohort import Cohort
    from multimodal.pipeline import Pipeline

    card = (pipeline_dir / "MODEL_CARD.md").read_text()
    assert card.count("Research use only") == 1
    assert "read against the mean attribution of" in card  # the pipeline stored its attribution reference
    c = Cohort.from_manifest(small_cohort)
    p1 = Pipeline.from_pretrained(pipeline_dir).predict(c)
    p2 = Pipeline.from_pretrained(pipeline_dir).predict(c)
    pd.testing.assert_frame_equal(p1, p2)
    out = tmp_path / "preds.parquet"
    assert main(["predict", "--pipeline", str(pipeline_dir), "--manifest", str(small_cohort), "--out", str(out)]) == 0
    p3 = pd.read_parquet(out)
    pd.testing.assert_frame_equal(p1.reset_index(drop=True), p3[list(p1.columns)].reset_index(drop=True),
                                  check_dtype=False)
    assert {"risk", "surv_0", "response_prob", "risk_arm_0", "risk_arm_1"} <= set(p3.columns)
    # never overwrite without --overwrite
    assert main(["predict", "--pipeline", str(pipeline_dir), "--manifest", str(small_cohort), "--out", str(out)]) == 2


def test_tampered_pipeline_is_detected(pipeline_dir, tmp_path, capsys):
    import shutil

    from multimodal.errors import IntegrityError
    from multimodal.pipeline import Pipeline

    bad = tmp_path / "bad"
    shutil.copytree(pipeline_dir, bad)
    w = bad / "model" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        Pipeline.from_pretrained(bad)
    trunc = tmp_path / "trunc"
    shutil.copytree(pipeline_dir, trunc)
    a = trunc / "adapters" / "genomics" / "adapter.safetensors"
    a.write_bytes(a.read_bytes()[: a.stat().st_size // 2])
    assert main(["predict", "--pipeline", str(trunc), "--manifest", "x.yaml", "--out", str(tmp_path / "o.parquet")]) == 2
    assert "checksum" in capsys.readouterr().err


def test_val_fraction_zero_trains_fixed_epochs_without_validation(small_cohort, demo_config, tmp_path):
    """`training.val_fraction: 0`: every patient trains, all epochs run, the last is kept; cv says so in its protocol."""
    pdir = tmp_path / "pipe"
    assert main(["train", str(demo_config), "--out", str(pdir), "--set", f"data.manifest={small_cohort}",
                 *_sets(["training.val_fraction=0", "training.epochs=3", "training.patience=1"])]) == 0
    meta = json.loads((pdir / "pipeline.json").read_text())["metadata"]
    assert meta["n_val"] == 0 and meta["n_train"] == 40
    assert "reference_risks" not in meta
    assert meta["best_epoch"] == 2  # the last of 3 epochs (patience 1 would matter only with a validation split)
    # a report still renders; with no reference cohort it shows no percentile rather than one against training data
    pid = pd.read_parquet(small_cohort.parent / "outcomes.parquet")["patient_id"].iloc[0]
    rep = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pdir), "--manifest", str(small_cohort), "--patient", str(pid),
                 "--out", str(rep), "--no-pdf"]) == 0
    assert "percentile of the validation cohort" not in (rep / "report.html").read_text()
    run = tmp_path / "run"
    assert main(["cv", str(demo_config), "--out", str(run), "--set", f"data.manifest={small_cohort}",
                 *_sets(["training.val_fraction=0", "evaluation.folds=2", "evaluation.baselines=[]",
                         "evaluation.ablations=false"])]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert "no inner validation" in summary["protocol"]["model_selection"]
    assert len(summary["methods"]["multimodal"]["folds"]) == 2
