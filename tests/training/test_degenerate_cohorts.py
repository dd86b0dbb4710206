"""A survival study whose training folds have (almost) no events stops before any training, naming fold and count."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from multimodal.errors import InputError
from multimodal.experiment import load_cohort, load_experiment
from multimodal.study import Study


def _study(demo_config: Path, manifest: Path, n_events: int, tmp_path: Path) -> tuple[Study, Path]:
    cfg = load_experiment(demo_config, [f"data.manifest={manifest}", "task=survival", "evaluation.folds=2"])
    c = load_cohort(cfg.data)
    event = c.patients["event"].copy()
    event[:] = False
    event.iloc[:n_events] = True
    c2 = dataclasses.replace(c, patients=c.patients.assign(event=event))
    return Study(cfg, cohort=c2, config_file="demo.yaml"), tmp_path / "run"


@pytest.mark.parametrize("n_events", [0, 1])
def test_too_few_events_stop_before_training_naming_the_fold(n_events, small_cohort, demo_config, tmp_path) -> None:
    study, out = _study(demo_config, small_cohort, n_events, tmp_path)
    with pytest.raises(InputError, match=r"fold \d: its \d+ training patients have [01] event") as err:
        study.run(out)
    assert "at least 2" in str(err.value) and f"the cohort has {n_events}" in str(err.value)
    assert not out.exists()  # nothing written


def test_enough_events_pass_the_check(small_cohort, demo_config, tmp_path) -> None:
    study, _ = _study(demo_config, small_cohort, 12, tmp_path)
    assert len(study.check_inputs()) == 2


def test_an_unknown_modality_to_hide_is_refused_before_training(small_cohort, demo_config, tmp_path) -> None:
    from multimodal.errors import ConfigError

    cfg = load_experiment(demo_config, [f"data.manifest={small_cohort}", "task=survival", "evaluation.folds=2",
                                        "evaluation.drop_test_modality=slides"])
    with pytest.raises(ConfigError, match="no modality 'slides'"):
        Study(cfg).run(tmp_path / "run")
    assert not (tmp_path / "run").exists()
