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


@pytest.fixture(scope="session")
def start_cohort(tmp_path_factory: pytest.TempPathFactory):
    """(cohort, experiment config) of 160 synthetic patients: enough events for the fitted starts (wide path, stack)."""
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.experiment import load_cohort, load_experiment

    out = tmp_path_factory.mktemp("start") / "syn"
    manifest = generate_synthetic_cohort(out, SyntheticConfig(patients=160, seed=4, patches_per_slide=40, embed_dim=16,
                                                              n_genes=60, n_pathways=6))
    cfg = load_experiment(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml",
                          [f"data.manifest={manifest}", "adapters.pathology.max_patches=16"])
    return load_cohort(cfg.data), cfg
