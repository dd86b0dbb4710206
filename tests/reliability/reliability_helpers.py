"""Helpers for the reliability tests (not collected): run the CLI in-process, snapshot folders."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

from multimodal.cli.main import main

#: A tiny experiment (every modality; seconds to train on 40 patients).
TINY_EXPERIMENT = """
name: tiny
seed: 0
task: both
data:
  layout: manifest
  manifest: REPLACED
adapters:
  pathology:
    max_patches: 32
  genomics:
    tokens: pathways
    gene_sets: omics/pathways.gmt
  ehr:
    max_events: 16
  clinical: {}
model:
  d_model: 16
  depth: 1
  num_heads: 2
  num_latents: 2
  num_bins: 4
  modality_dropout: 0.2
training:
  epochs: 1
  batch_size: 8
  progress: false
  val_fraction: 0.25
evaluation:
  folds: 2
  baselines: [coxph_clinical]
  ablations: false
  bootstrap: 5
"""

#: ~400 bytes of YAML that expand into 9**9 (387 million) strings ("billion laughs"); ``*i`` names the whole of it.
BILLION_LAUGHS = "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 9 if p else ['lol'] * 9)}]\n"
    for p, k in zip(["", "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi", strict=True)
)


def cli(*argv: object) -> tuple[int, str, str]:
    """``multimodal ARGV`` in this process: (exit code, stdout, stderr). Exceptions propagate (a test failure)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (or of ``root`` itself); {} when it does not exist."""
    if not root.exists():
        return {}
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
