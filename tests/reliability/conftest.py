"""Fixtures for the reliability tests: one small synthetic cohort, a tiny experiment config, a trained pipeline and
a finished cv run, each built once per session through the CLI (the way users build them)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

if str(Path(__file__).parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from reliability_helpers import TINY_EXPERIMENT, cli  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _one_thread_for_session_fixtures() -> None:
    """One intra-op thread: these models are tiny, and on a busy 2-core machine two threads make each op up to 100x
    slower (spinning OpenMP workers). Results do not depend on it (the determinism tests compare like with like)."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread(_torch_threads: None) -> None:  # runs after tests/conftest.py's _torch_threads (2 threads)
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fingerprint_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the input-fingerprint cache out of the user's home directory."""
    monkeypatch.setenv("MULTIMODAL_FINGERPRINT_CACHE", str(tmp_path_factory.getbasetemp() / "fingerprints.json"))


@pytest.fixture(scope="session")
def rel_cohort_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 patients, every modality, tiny per-patient sizes (written once; copy it before breaking it)."""
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    out = tmp_path_factory.mktemp("rel_cohort") / "syn"
    generate_synthetic_cohort(out, SyntheticConfig(patients=40, seed=3, patches_per_slide=40, embed_dim=8, n_genes=40,
                                                   n_pathways=4))
    return out


@pytest.fixture
def cohort_copy(tmp_path: Path, rel_cohort_template: Path) -> Path:
    """A private copy of the cohort folder (break it freely)."""
    dst = tmp_path / "cohort"
    shutil.copytree(rel_cohort_template, dst)
    return dst


@pytest.fixture(scope="session")
def rel_config(tmp_path_factory: pytest.TempPathFactory, rel_cohort_template: Path) -> Path:
    """The tiny experiment YAML, pointing at the template cohort."""
    data = yaml.safe_load(TINY_EXPERIMENT)
    data["data"]["manifest"] = str(rel_cohort_template / "manifest.yaml")
    path = tmp_path_factory.mktemp("rel_config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def rel_pipeline(tmp_path_factory: pytest.TempPathFactory, rel_config: Path) -> Path:
    out = tmp_path_factory.mktemp("rel_pipe") / "pipeline"
    rc, _, err = cli("train", rel_config, "--out", out)
    assert rc == 0, err
    return out


@pytest.fixture(scope="session")
def rel_run(tmp_path_factory: pytest.TempPathFactory, rel_config: Path) -> Path:
    out = tmp_path_factory.mktemp("rel_run") / "run"
    rc, _, err = cli("cv", rel_config, "--out", out)
    assert rc == 0, err
    return out
