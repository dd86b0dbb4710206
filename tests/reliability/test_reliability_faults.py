"""Faults: damaged training checkpoints are detected by checksum; a ``cv`` run killed with SIGKILL after fold 0
resumes without redoing fold 0; a resumed run refuses changed inputs; ``--overwrite`` starts a run over.

(Killing *training* mid-epoch and resuming exactly is tested in tests/training/test_training_faults.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from reliability_helpers import cli, snapshot

from multimodal.errors import IntegrityError
from multimodal.io import verify_checksums, write_checksums

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"}


# ---- training checkpoints -------------------------------------------------------------------------------------------
def _fit(config: Path, out: Path, epochs: int) -> object:
    """Train the tiny model on a fixed split with checkpoints under ``out`` (resumes when one is there)."""
    from multimodal.data import PatientDataset
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.pipeline import build_model
    from multimodal.training import fit_model, make_accelerator

    cfg = load_experiment(config, [f"training.epochs={epochs}", "training.checkpoint_every=2"])
    cohort = load_cohort(cfg.data)
    ids = cohort.patient_ids
    train, val = ids[:30], ids[30:]
    adapters = {m: a.fit(cohort, train) for m, a in make_adapters(cfg).items()}
    torch.manual_seed(0)
    model = build_model(cfg.model, adapters, cohort, train, task=cfg.task)
    return fit_model(model, PatientDataset(cohort, adapters, train, train=True), PatientDataset(cohort, adapters, val),
                     cfg.training, seed=0, out_dir=out, accelerator=make_accelerator(cfg.training, out),
                     time_unit=cohort.time_unit, num_classes=max(cohort.response_classes, 2))


@pytest.fixture(scope="module")
def checkpoint_dir(rel_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "train"
    _fit(rel_config, out, epochs=1)
    ckpt = out / "checkpoint"
    assert (ckpt / "progress.json").is_file() and (ckpt / "optimizer.bin").is_file()
    return out


def _damaged_copy(src: Path, dst: Path, rel: str, how: str) -> Path:
    shutil.copytree(src, dst)
    f = dst / "checkpoint" / rel
    data = bytearray(f.read_bytes())
    if how == "truncate":
        f.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0x01  # one bit in the middle: the file still parses
        f.write_bytes(bytes(data))
    return dst / "checkpoint"


@pytest.mark.parametrize(("rel", "how", "message"), [
    ("optimizer.bin", "truncate", "truncated"),
    ("model.safetensors", "flip", "checksum mismatch"),
    ("random_states_0.pkl", "flip", "checksum mismatch"),
    ("progress.json", "truncate", "truncated"),
])
def test_damaged_checkpoint_is_detected_by_checksum(checkpoint_dir: Path, tmp_path: Path, rel: str, how: str,
                                                    message: str) -> None:
    """The checksum list (multimodal.io.write_checksums, recorded after the checkpoint is complete) names the damaged
    file; without it a flipped bit in the weights or RNG state resumes silently (see the xfail below)."""
    src = tmp_path / "src"
    shutil.copytree(checkpoint_dir, src)
    write_checksums(src / "checkpoint")
    verify_checksums(src / "checkpoint")  # intact: passes
    ckpt = _damaged_copy(src, tmp_path / "bad", rel, how)
    with pytest.raises(IntegrityError, match=message) as err:
        verify_checksums(ckpt)
    assert rel in str(err.value)
    (ckpt / rel).unlink()
    with pytest.raises(IntegrityError, match="missing"):
        verify_checksums(ckpt)


def test_fit_model_refuses_a_tampered_checkpoint(checkpoint_dir: Path, rel_config: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _damaged_copy(checkpoint_dir, run, "model.safetensors", "flip")
    with pytest.raises(IntegrityError):
        _fit(rel_config, run, epochs=2)


# ---- cv: killed after fold 0, resumed -------------------------------------------------------------------------------
def test_cv_killed_after_fold_0_resumes_fold_by_fold(rel_config: Path, rel_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "multimodal", "cv", str(rel_config), "--out", str(run)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fold0 = run / "folds" / "fold_0.json"
    deadline = time.monotonic() + 300
    try:
        while not fold0.is_file():
            assert proc.poll() is None, f"cv ended before fold 0 was written: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "fold 0 not written in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists() and not (run / "predictions.parquet").exists()
    assert not (run / "folds" / "fold_1.json").exists()
    fold0_files = [run / "folds" / n for n in ("fold_0.json", "fold_0.parquet")]
    assert all(p.is_file() for p in fold0_files)
    done = {p.name: (p.stat().st_mtime_ns, snapshot(p)) for p in fold0_files}

    rc, out, err = cli("cv", rel_config, "--out", run)
    assert rc == 0, err
    assert "fold 0: already done" in out and out.count("already done, reusing") == 1
    assert {p.name: (p.stat().st_mtime_ns, snapshot(p)) for p in fold0_files} == done
    assert not (run / ".multimodal-run.lock").exists()  # the killed run's lock did not block; released at the end
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_folds"] == 2
    for m in summary["methods"].values():
        assert [f["fold"] for f in m["folds"]] == [0, 1]
    preds = pd.read_parquet(run / "predictions.parquet")
    for _, g in preds.groupby("method"):
        assert len(g) == 40 and g["patient_id"].is_unique
    # the same results as the uninterrupted run (rel_run: same config, one process)
    ref = pd.read_parquet(rel_run / "predictions.parquet")
    key = ["method", "fold", "patient_id"]
    a, b = preds.sort_values(key).reset_index(drop=True), ref.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])
    np.testing.assert_allclose(a["risk"].to_numpy(float), b["risk"].to_numpy(float), rtol=1e-4, atol=1e-5)


def test_resume_refuses_changed_inputs(rel_config: Path, rel_run: Path, tmp_path: Path) -> None:
    """Finished folds were computed on the recorded inputs; resuming on other data would mix two datasets."""
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    (run / "summary.json").unlink()  # an unfinished run
    rec = json.loads((run / "run.json").read_text())
    for r in rec["inputs"]:
        if r["path"].endswith("clinical.csv"):
            r["sha256"] = "0" * 64  # as if clinical.csv had been edited since the run started
    (run / "run.json").write_text(json.dumps(rec))
    before = snapshot(run)
    rc, _, err = cli("cv", rel_config, "--out", run)
    assert rc == 2
    assert "clinical.csv" in err and "changed since this run started" in err and "--overwrite" in err
    assert snapshot(run) == before


def test_overwrite_starts_the_run_over(rel_config: Path, rel_run: Path, tmp_path: Path) -> None:
    """``--overwrite`` with another config must not reuse the other config's finished folds (it used to)."""
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    rc, out, err = cli("cv", rel_config, "--out", run, "--overwrite", "--set", "evaluation.max_folds=1",
                       "--set", "seed=5")
    assert rc == 0, err
    assert "already done" not in out
    assert sorted(p.name for p in (run / "folds").iterdir()) == ["fold_0.json", "fold_0.parquet"]
    assert json.loads((run / "summary.json").read_text())["n_folds"] == 1
    assert json.loads((run / "run.json").read_text())["seed"] == 5
