"""Packaging: one import root; adapters/ and cohorts/ install as multimodal.adapters / multimodal.cohorts."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_no_bare_adapters_or_cohorts_imports():
    offenders = []
    for path in REPO.rglob("*.py"):
        if ".venv" in path.parts or "build" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in ("adapters", "cohorts")]
    assert offenders == []


@pytest.mark.slow
def test_wheel_has_a_single_top_level_package(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("precision_multimodal-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top = z.read(next(n for n in names if n.endswith("top_level.txt"))).decode().split()
    assert top == ["multimodal"]
    roots = {n.split("/")[0] for n in names if not n.startswith("precision_multimodal-")}
    assert roots == {"multimodal"}
    for must in ("multimodal/adapters/pathology.py", "multimodal/cohorts/synthetic.py", "multimodal/model/modeling.py",
                 "multimodal/explain/risk.py", "multimodal/training.py", "multimodal/study.py",
                 "multimodal/report/templates/patient.html", "multimodal/cli/main.py"):
        assert must in names


def test_import_from_another_directory(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import multimodal.adapters, multimodal.cohorts; print('ok')"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    r = subprocess.run([sys.executable, "-c", "import adapters"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0  # the repo's folders are not importable as top-level packages
