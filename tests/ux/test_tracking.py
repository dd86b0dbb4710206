"""``training.log_with``: per-epoch metrics of every training through Accelerate's trackers, runs named by fold,
model and ensemble member (TensorBoard when installed; MLflow when installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from multimodal.errors import ConfigError
from multimodal.tracking import check_tracker, tracking_run

REPO = Path(__file__).resolve().parents[2]


def _events(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard is not installed (pip install tensorboard)")
def test_study_logs_every_fold_model_and_member_to_tensorboard(tmp_path):
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.experiment import load_experiment
    from multimodal.study import Study

    manifest = generate_synthetic_cohort(tmp_path / "c", SyntheticConfig(
        patients=30, seed=1, patches_per_slide=10, embed_dim=8, n_genes=40, n_pathways=4, slides_per_patient=(1, 1)))
    cfg = load_experiment(REPO / "configs" / "demo.yaml", [
        f"data.manifest={manifest}", "task=survival", "training.epochs=2", "training.patience=5",
        "training.log_with=tensorboard", "model.d_model=16", "model.num_latents=2", "model.depth=1",
        "model.ensemble=2", "model.stack=none", "evaluation.folds=2", "evaluation.ablations=false",
        "evaluation.baselines=[]", "evaluation.bootstrap=0"])
    out = tmp_path / "run"
    summary = Study(cfg).run(out)
    for fold in (0, 1):
        for member in (0, 1):
            run_dir = out / "logs" / f"fold_{fold}" / "multimodal" / f"member_{member}"
            assert run_dir.is_dir(), sorted(p.relative_to(out) for p in (out / "logs").rglob("*"))
            scalars = _events(run_dir)
            assert [s for s, _ in scalars["train_loss"]] == [0, 1]  # one point per epoch
            assert "val_score" in scalars and "val_loss" in scalars  # demo.yaml selects on the loss
    rec = summary["methods"]["multimodal"]["folds"][0]
    assert rec["member_best_epochs"]  # the ensemble members the runs belong to


def test_tracking_run_names_nest(tmp_path):
    from multimodal import tracking

    with tracking_run("fold_0", tmp_path):
        with tracking_run("multimodal"):
            run = tracking._CURRENT.get()
            assert run is not None and run.name == "fold_0/multimodal" and run.log_dir == tmp_path
    assert tracking._CURRENT.get() is None


def test_missing_tracker_package_is_a_config_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match="mlflow is not installed") as err:
        check_tracker("mlflow")
    assert err.value.problems[0].field == "training.log_with"
    check_tracker("none")


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                    reason="mlflow is not installed: its pins (sqlalchemy, flask, ...) are not in constraints.txt")
def test_mlflow_run_per_training(tmp_path):
    import mlflow

    from multimodal.tracking import epoch_metrics, start_tracker

    with tracking_run("fold_0/multimodal", tmp_path / "logs"):
        tracker = start_tracker("mlflow", {"lr": 0.001})
        tracker.log(epoch_metrics({"epoch": 0, "train_loss": 1.5, "val_score": 0.6}), step=0)
        tracker.finish()
    mlflow.set_tracking_uri(str(tmp_path / "logs"))
    runs = mlflow.search_runs(experiment_names=["multimodal"])
    assert list(runs["tags.mlflow.runName"]) == ["fold_0/multimodal/member_0"]
    assert float(runs["metrics.train_loss"].iloc[0]) == 1.5
