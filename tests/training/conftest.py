"""A small synthetic cohort shared by the training / study / pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TRAIN_OVERRIDES = [
    "training.epochs=2", "training.batch_size=8", "training.progress=false", "training.patience=5",
    "model.d_model=32", "model.num_latents=4", "model.depth=1", "adapters.pathology.max_patches=64",
    "evaluation.bootstrap=10",
]


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    out = tmp_path_factory.mktemp("cohort") / "syn"
    return generate_synthetic_cohort(out, SyntheticConfig(patients=40, seed=3, patches_per_slide=120, embed_dim=16,
                                                          n_genes=120, n_pathways=8))


@pytest.fixture(scope="session")
def demo_config() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
