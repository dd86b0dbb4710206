"""Shared by test_scoring_without_outcomes.py and test_predict_tables.py: a tiny synthetic cohort and one pipeline
trained on it (once per session, whichever module asks first), and helpers to copy and edit the cohort."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "configs" / "demo.yaml"


def _training_overrides() -> list[str]:
    """TRAIN_OVERRIDES of tests/training/conftest.py (not importable by name from here)."""
    spec = importlib.util.spec_from_file_location("_training_conftest", REPO / "tests" / "training" / "conftest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.TRAIN_OVERRIDES)


#: the shared small-training overrides, one epoch, one ensemble member (the demo config trains three)
TRAIN_OVERRIDES = [*_training_overrides(), "training.epochs=1", "model.ensemble=1"]
_CACHE: dict[str, tuple[Path, Path]] = {}


def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(pipeline folder, cohort folder): 30 synthetic patients (two arms, survival + response) and a pipeline of the
    demo config trained on them, made once per test session."""
    if "pipeline" not in _CACHE:
        from multimodal.cli.main import main
        from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

        root = tmp_path_factory.mktemp("scoring")
        manifest = generate_synthetic_cohort(root / "cohort", SyntheticConfig(
            patients=30, seed=0, patches_per_slide=60, embed_dim=16, n_genes=120, n_pathways=8))
        cohort = Path(manifest).parent
        pipe = root / "pipeline"
        args = ["train", str(DEMO_CONFIG), "--out", str(pipe), "--set", f"data.manifest={cohort / 'manifest.yaml'}"]
        for o in TRAIN_OVERRIDES:
            args += ["--set", o]
        assert main(args) == 0
        _CACHE["pipeline"] = (pipe, cohort)
    return _CACHE["pipeline"]


def copy_cohort(src: Path, dst: Path, edit_patients: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Path:
    """A copy of the cohort folder ``src`` at ``dst`` (patient table edited by ``edit_patients``); its manifest."""
    shutil.copytree(src, dst)
    if edit_patients is not None:
        path = dst / "outcomes.parquet"
        edit_patients(pd.read_parquet(path)).to_parquet(path, index=False)
    return dst / "manifest.yaml"


def without_outcome_columns(df: pd.DataFrame) -> pd.DataFrame:
    """The patient table without time, event and response (the manifest still declares them)."""
    return df.drop(columns=["time", "event", "response"])


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``multimodal ARGS`` in this process: (exit code, stdout, stderr)."""
    from multimodal.cli.main import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err
