"""Fixtures for the cohort tests: a tiny valid cohort in real formats (see fixtures_cohort.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from fixtures_cohort import TinyCohort, write_tiny_cohort  # noqa: E402


@pytest.fixture(scope="session")
def _tiny_cohort_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_cohort(tmp_path_factory.mktemp("template") / "cohort").root


@pytest.fixture
def tiny_cohort(tmp_path: Path, _tiny_cohort_template: Path) -> TinyCohort:
    """A fresh copy of the tiny valid cohort under ``tmp_path``; edit it with the TinyCohort helpers."""
    root = tmp_path / "cohort"
    shutil.copytree(_tiny_cohort_template, root)
    return TinyCohort(root)


@pytest.fixture
def tiny_cohort_path(tiny_cohort: TinyCohort) -> Path:
    """The manifest path of a fresh tiny valid cohort."""
    return tiny_cohort.manifest_path
