"""A saved pipeline whose format version this package does not read: the error says which version was found, which
versions are supported and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multimodal import __version__
from multimodal.errors import InputError
from multimodal.model import MultimodalConfig, MultimodalModel
from multimodal.pipeline import PIPELINE_FORMAT, READABLE_FORMATS, Pipeline

NEWER = max(READABLE_FORMATS) + 1
READS = ", ".join(str(v) for v in READABLE_FORMATS)
STREAMS = [{"modality": "ehr", "kind": "events", "feature_dim": 0, "num_slots": 0, "vocab_size": 19, "max_tokens": 16,
            "slot_names": []}]


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model = MultimodalModel(MultimodalConfig(streams=STREAMS, d_model=16, depth=1, num_heads=2, num_latents=2))
    return Pipeline({}, model, {"cohort": "demo"}).save_pretrained(tmp_path / "pipe")


def _set_format(d: Path, value: object, *, drop: bool = False) -> None:
    p = d / "pipeline.json"
    meta = json.loads(p.read_text())
    if drop:
        meta.pop("format")
    else:
        meta["format"] = value
    meta["package_version"] = "9.0.0"
    p.write_text(json.dumps(meta))


def test_current_format_loads(saved: Path) -> None:
    assert json.loads((saved / "pipeline.json").read_text())["format"] == PIPELINE_FORMAT
    assert Pipeline.from_pretrained(saved).metadata["cohort"] == "demo"


def test_newer_format_names_found_supported_and_upgrade(saved: Path) -> None:
    _set_format(saved, NEWER)
    with pytest.raises(InputError) as err:
        Pipeline.from_pretrained(saved)
    problem = err.value.problems[0]
    assert (problem.field, problem.file) == ("format", str(saved / "pipeline.json"))
    assert f"pipeline format {NEWER} is newer" in problem.message
    assert f"precision-multimodal {__version__} reads format {READS}" in problem.message
    assert "written by precision-multimodal 9.0.0" in problem.hint
    assert "upgrade precision-multimodal" in problem.hint and "multimodal train" in problem.hint


@pytest.mark.parametrize(("value", "drop", "shown"), [(None, True, "None"), ("one", False, "'one'"),
                                                      (0, False, "0"), (True, False, "True")])
def test_unknown_format_says_what_to_do(saved: Path, value: object, drop: bool, shown: str) -> None:
    _set_format(saved, value, drop=drop)
    with pytest.raises(InputError, match=f"pipeline format {shown} is missing or not a known format") as err:
        Pipeline.from_pretrained(saved)
    problem = err.value.problems[0]
    assert problem.field == "format"
    assert f"reads format {READS}" in problem.message
    assert "re-train the pipeline with 'multimodal train'" in problem.hint
