"""YAML numbers as users write them: PyYAML (YAML 1.1) reads ``1e-3`` as a string; float fields still take it."""

from __future__ import annotations

from pathlib import Path

import pytest

from multimodal.config import apply_overrides, from_dict, load_yaml
from multimodal.errors import ConfigError
from multimodal.training import TrainingConfig


def test_exponent_floats_in_yaml_are_numbers(tmp_path: Path) -> None:
    f = tmp_path / "training.yaml"
    f.write_text("lr: 3e-4\nweight_decay: 1E-2\n")
    data = load_yaml(f)
    assert data["lr"] == "3e-4"  # what PyYAML hands over: the case this guards
    cfg = from_dict(TrainingConfig, data, _file=str(f))
    assert cfg.lr == pytest.approx(3e-4)
    assert cfg.weight_decay == pytest.approx(1e-2)


def test_exponent_floats_in_overrides_are_numbers() -> None:
    cfg = apply_overrides(TrainingConfig(), ["lr=1e-2", "weight_decay=.5"])
    assert (cfg.lr, cfg.weight_decay) == (pytest.approx(1e-2), pytest.approx(0.5))


@pytest.mark.parametrize("bad", ["1e", "fast", "nan", "1e-3x"])
def test_non_numbers_still_refused_naming_the_field(tmp_path: Path, bad: str) -> None:
    f = tmp_path / "training.yaml"
    f.write_text(f"lr: '{bad}'\n")
    with pytest.raises(ConfigError, match="lr"):
        from_dict(TrainingConfig, load_yaml(f), _file=str(f))
