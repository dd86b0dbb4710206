"""Training on Accelerate: SIGKILL + resume gives the uninterrupted result; 2-process DDP covers every patient once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHILD = HERE / "train_child.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false"}


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHILD), *args], env=ENV, capture_output=True, text=True, timeout=600, **kw)


def test_sigkill_and_resume_matches_uninterrupted(small_cohort, demo_config, tmp_path):
    ref = tmp_path / "ref"
    r = _run([str(small_cohort), str(demo_config), str(ref)])
    assert r.returncode == 0, r.stderr[-3000:]
    want = json.loads((ref / "predictions.json").read_text())
    for kill_at in (3, 6):  # mid-epoch of epoch 0 and of epoch 1 (4 optimizer steps per epoch)
        run = tmp_path / f"killed{kill_at}"
        r = _run([str(small_cohort), str(demo_config), str(run), "--kill-at", str(kill_at)])
        assert r.returncode == -9, f"child was not killed: rc={r.returncode} {r.stderr[-2000:]}"
        assert not (run / "predictions.json").exists()
        assert (run / "checkpoint" / "progress.json").is_file()
        r = _run([str(small_cohort), str(demo_config), str(run)])
        assert r.returncode == 0, r.stderr[-3000:]
        got = json.loads((run / "predictions.json").read_text())
        assert got["resumed_from"] is not None
        assert got["patients"] == want["patients"]
        assert got["best_epoch"] == want["best_epoch"]
        assert got["averaged_epochs"] == want["averaged_epochs"]
        assert got["risk"] == pytest.approx(want["risk"], abs=1e-6), f"kill at {kill_at}: predictions differ"


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not available")
def test_two_process_ddp_gathers_every_patient_once(small_cohort, demo_config, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp"
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(CHILD), str(small_cohort),
                        str(demo_config), str(out), "--epochs", "1"],
                       env={**ENV, "ACCELERATE_USE_CPU": "true"}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    facts = json.loads((out / "predictions.json").read_text())
    assert facts["num_processes"] == 2
    assert facts["ddp"] is True
    assert len(facts["patients"]) == 40
    assert sorted(facts["patients"]) == sorted(set(facts["patients"]))
