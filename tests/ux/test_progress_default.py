"""Progress bars are on by default on a terminal and silent otherwise; the demo config no longer turns them off."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import yaml

from multimodal.training import TrainingConfig

REPO = Path(__file__).resolve().parents[2]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.experiment import load_cohort, load_experiment, make_adapters

    manifest = generate_synthetic_cohort(tmp_path_factory.mktemp("p") / "c", SyntheticConfig(
        patients=30, seed=1, patches_per_slide=10, embed_dim=8, n_genes=40, n_pathways=4))
    cfg = load_experiment(REPO / "configs" / "demo.yaml", [f"data.manifest={manifest}"])
    return load_cohort(cfg.data), lambda: make_adapters(cfg, ["clinical"])


def _train(tiny, **training) -> None:
    from multimodal.pipeline import ModelConfig, Pipeline

    cohort, adapters = tiny
    ids = cohort.patient_ids
    Pipeline.fit(cohort, ids[:20], val_ids=ids[20:], adapters=adapters(),
                 model_config=ModelConfig(d_model=16, num_latents=2, depth=1, num_heads=2),
                 training=TrainingConfig(epochs=1, batch_size=8, recalibrate=False, **training), task="survival",
                 attribution_reference=False)


@pytest.mark.parametrize(("terminal", "progress", "shown"), [(True, True, True), (False, True, False),
                                                              (True, False, False)])
def test_bars_on_a_terminal_only(tiny, monkeypatch, terminal, progress, shown):
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    _train(tiny, progress=progress)
    assert ("epoch 0" in stream.getvalue()) is shown, stream.getvalue()[-300:]


def test_progress_defaults():
    assert TrainingConfig().progress is True
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    assert "progress" not in demo["training"]
