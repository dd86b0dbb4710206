"""The examples of one document run in order in one folder (tests/docs/test_doc_examples.py): no block may write an
output folder that an earlier block of the same document already wrote (it would fail with "output exists")."""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@functools.cache
def _doc_harness():
    """tests/docs/test_doc_examples.py (its block and command parsers), loaded by path."""
    name = "_doc_examples_harness"
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "docs" / "test_doc_examples.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _outputs(text: str) -> list[tuple[int, str]]:
    """(line, folder) written by `multimodal synth --out` commands and generate_synthetic_cohort(...) calls."""
    harness = _doc_harness()
    out = []
    for b in harness.collect_blocks(text):
        if b.no_test:
            continue
        if b.lang in ("bash", "sh", "shell"):
            for cmd in harness.split_commands(b.code):
                m = re.search(r"\bmultimodal synth\b.*?--out\s+(\S+)", cmd)
                if m and "--overwrite" not in cmd:
                    out.append((b.line, m.group(1)))
        elif b.lang == "python":
            out += [(b.line, m.group(1)) for m in re.finditer(r"generate_synthetic_cohort\(\s*[\"']([^\"']+)[\"']",
                                                              b.code) if "overwrite=True" not in b.code]
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_no_block_rewrites_an_earlier_output(doc: Path) -> None:
    seen: dict[str, int] = {}
    for line, folder in _outputs(doc.read_text()):
        assert folder not in seen, f"{doc.name}:{line} writes {folder}, already written at line {seen[folder]}"
        seen[folder] = line


def test_synthetic_doc_python_example_has_its_own_folder() -> None:
    outputs = dict((folder, line) for line, folder in _outputs((REPO / "docs" / "synthetic.md").read_text()))
    assert {"data/synth", "data/synth_api"} <= set(outputs)
    assert not [k for k in _doc_harness().KNOWN_ISSUES if k[0] == "synthetic.md"]
