"""Traceability: every cv run and every pipeline records the resolved config, package versions, the git commit, the
seed and a fingerprint (size + sha256) of every input file; ``multimodal env`` prints the versions."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from reliability_helpers import cli

from multimodal.cohorts.cohort import Cohort
from multimodal.config import to_dict
from multimodal.experiment import load_experiment
from multimodal.io import sha256_file

INPUTS = ("manifest.yaml", "outcomes.parquet", "slides.csv", "clinical.csv", "omics/expression.h5ad",
          "omics/mutations.maf", "omics/sequenced_samples.txt", "omics/pathways.gmt", "meds/data/train/0.parquet",
          "meds/metadata/codes.parquet")


def _check_record(rec: dict, config: Path, cohort_dir: Path) -> None:
    cfg = load_experiment(config)
    assert rec["config"] == to_dict(cfg)
    assert rec["seed"] == cfg.seed
    assert rec["versions"]["torch"] == torch.__version__
    assert rec["versions"]["precision-multimodal"] and rec["versions"]["python"]
    assert {"transformers", "accelerate", "numpy", "pandas", "safetensors"} <= set(rec["versions"])
    assert rec["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", rec["git_commit"])
    assert rec["created"]
    inputs = {str(Path(r["path"]).resolve()): r for r in rec["inputs"]}
    root = cohort_dir.resolve()
    for name in INPUTS:  # the outcomes table and every modality's files, not only the slides
        assert str(root / name) in inputs, f"{name} not fingerprinted"
    slides = list((root / "slides").glob("*.h5"))
    assert slides and all(str(s) in inputs for s in slides)
    for path, r in inputs.items():
        assert r["size"] == os.path.getsize(path)
        assert r["sha256"] == sha256_file(path)


def test_pipeline_records_provenance(rel_pipeline: Path, rel_config: Path, rel_cohort_template: Path) -> None:
    meta = json.loads((rel_pipeline / "pipeline.json").read_text())
    _check_record(meta["metadata"]["provenance"], rel_config, rel_cohort_template)
    assert meta["metadata"]["seed"] == 0
    assert meta["package_version"] and meta["torch_version"] == torch.__version__
    # every file of the pipeline has a checksum
    files = {str(p.relative_to(rel_pipeline)) for p in rel_pipeline.rglob("*") if p.is_file()}
    assert files - set(meta["sha256"]) <= {"pipeline.json", "MODEL_CARD.md"}


def test_cv_run_records_provenance(rel_run: Path, rel_config: Path, rel_cohort_template: Path) -> None:
    _check_record(json.loads((rel_run / "run.json").read_text()), rel_config, rel_cohort_template)
    import yaml

    assert yaml.safe_load((rel_run / "config.yaml").read_text()) == to_dict(load_experiment(rel_config))


def test_fingerprints_are_cached_by_path_size_and_mtime(rel_cohort_template: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from multimodal.provenance import input_fingerprints

    cache_file = tmp_path / "cache.json"
    cohort = Cohort.from_manifest(rel_cohort_template / "manifest.yaml")
    first = input_fingerprints(cohort, cache_file)
    cache = json.loads(cache_file.read_text())
    assert len(cache) == len(first)
    # a cached entry is trusted while (path, size, mtime) are unchanged: poison one and it comes back
    key = next(k for k in cache if k.split(":")[0].endswith("clinical.csv"))
    cache[key] = {**cache[key], "sha256": "0" * 64}
    cache_file.write_text(json.dumps(cache))
    again = {Path(r["path"]).name: r["sha256"] for r in input_fingerprints(cohort, cache_file)}
    assert again["clinical.csv"] == "0" * 64


def test_changed_file_gets_a_new_fingerprint(cohort_copy: Path, tmp_path: Path) -> None:
    from multimodal.provenance import input_fingerprints

    cache_file = tmp_path / "cache.json"
    cohort = Cohort.from_manifest(cohort_copy / "manifest.yaml")
    before = {Path(r["path"]).name: r for r in input_fingerprints(cohort, cache_file)}
    clin = cohort_copy / "clinical.csv"
    clin.write_text(clin.read_text() + "\n")
    after = {Path(r["path"]).name: r for r in input_fingerprints(cohort, cache_file)}
    assert after["clinical.csv"]["sha256"] != before["clinical.csv"]["sha256"]
    assert after["clinical.csv"]["sha256"] == sha256_file(clin)
    assert after["outcomes.parquet"] == before["outcomes.parquet"]


def test_env_prints_versions() -> None:
    rc, out, _ = cli("env")
    assert rc == 0
    assert f"torch: {torch.__version__}" in out
    assert "precision-multimodal:" in out and "python:" in out and "git_commit:" in out
    rc, out, _ = cli("env", "--json")
    assert rc == 0
    info = json.loads(out)
    assert info["versions"]["torch"] == torch.__version__
    assert info["versions"]["transformers"] and info["cpu_count"] >= 1
