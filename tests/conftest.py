"""Shared fixtures: the path to ../shared/data (skip when absent) and small synthetic cohorts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    env = os.environ.get("MULTIMODAL_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is absent (real TCGA/MEDS data are not shipped with the repo)")
    return d


@pytest.fixture(autouse=True)
def _torch_threads():
    # one thread: tests run many tiny models (and child processes); on 2 shared cores two threads mostly wait
    torch.set_num_threads(1)
    yield
