"""Fixtures of the report tests: a small synthetic cohort, a cv run on it, and a pipeline trained on it with that
run's validation attached (what ``make demo`` does, at test size)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multimodal.cli.main import main

REPO = Path(__file__).resolve().parents[2]
FAST = ["training.epochs=2", "training.batch_size=8", "training.progress=false", "training.patience=5",
        "model.d_model=32", "model.num_latents=4", "model.depth=1", "adapters.pathology.max_patches=64",
        "evaluation.bootstrap=20"]


@pytest.fixture(scope="session")
def report_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    out = tmp_path_factory.mktemp("report_cohort") / "syn"
    return generate_synthetic_cohort(out, SyntheticConfig(patients=40, seed=3, patches_per_slide=120, embed_dim=16,
                                                          n_genes=120, n_pathways=8))


@pytest.fixture(scope="session")
def cv_run(report_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("report_cv") / "run"
    args = ["cv", str(REPO / "configs" / "demo.yaml"), "--out", str(run), "--set", f"data.manifest={report_cohort}"]
    for o in [*FAST, "evaluation.folds=2", "evaluation.ablations=false", "evaluation.baselines=[coxph_clinical]"]:
        args += ["--set", o]
    assert main(args) == 0
    return run


@pytest.fixture(scope="session")
def pipeline_dir(report_cohort: Path, cv_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from multimodal.api import attach_validation

    out = tmp_path_factory.mktemp("report_pipe") / "p"
    args = ["train", str(REPO / "configs" / "demo.yaml"), "--out", str(out), "--set", f"data.manifest={report_cohort}"]
    for o in [*FAST, "model.ensemble=1"]:
        args += ["--set", o]
    assert main(args) == 0
    attach_validation(out, cv_run / "summary.json")
    return out
