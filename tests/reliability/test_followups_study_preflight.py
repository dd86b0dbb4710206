"""``Study.run`` reads and checks everything that can reject the input (cohort, folds) before it creates or writes the
run folder: a bad config or manifest leaves no half-made run behind (called directly, without ``run_cv``'s checks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from reliability_helpers import TINY_EXPERIMENT

from multimodal.config import from_dict
from multimodal.errors import ConfigError, InputError
from multimodal.experiment import ExperimentConfig
from multimodal.study import Study


def _config(manifest: Path, **evaluation: object) -> ExperimentConfig:
    data = yaml.safe_load(TINY_EXPERIMENT)
    data["data"]["manifest"] = str(manifest)
    data["evaluation"].update(evaluation)
    return from_dict(ExperimentConfig, data)


def test_missing_manifest_leaves_no_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "study"
    missing = tmp_path / "nowhere" / "manifest.yaml"
    with pytest.raises(InputError, match="manifest.yaml"):
        Study(_config(missing)).run(out)
    assert not out.exists(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert not (tmp_path / "runs").exists()


def test_broken_manifest_leaves_no_run_folder(tmp_path: Path, cohort_copy: Path) -> None:
    manifest = cohort_copy / "manifest.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["modalities"]["pathology"]["formt"] = data["modalities"]["pathology"].pop("format", "trident")
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "study"
    with pytest.raises(InputError, match="formt"):
        Study(_config(manifest)).run(out)
    assert not out.exists()


def test_too_many_folds_leaves_no_run_folder(tmp_path: Path, rel_cohort_template: Path) -> None:
    out = tmp_path / "study"
    study = Study(_config(rel_cohort_template / "manifest.yaml", folds=100), config_file="tiny.yaml")
    with pytest.raises(ConfigError, match="cannot make 100 folds from 40 patients") as err:
        study.run(out)
    problem = err.value.problems[0]
    assert (problem.field, problem.file) == ("evaluation.folds", "tiny.yaml")
    assert "lower evaluation.folds" in str(err.value)
    assert not out.exists()


def test_check_inputs_writes_nothing_and_is_reused(tmp_path: Path, rel_cohort_template: Path) -> None:
    study = Study(_config(rel_cohort_template / "manifest.yaml", folds=3))
    folds = study.check_inputs()
    assert [f.index for f in folds] == [0, 1, 2]
    assert sorted(p for f in folds for p in f.val) == sorted(study.cohort.patient_ids)
    assert study.check_inputs() is folds  # run() uses the same folds, not a second split
    assert list(tmp_path.iterdir()) == []
