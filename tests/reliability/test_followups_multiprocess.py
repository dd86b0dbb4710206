"""Under ``torchrun`` / ``accelerate launch`` every process runs the command, but only the main process writes:
``train``, ``predict`` and ``cv`` in two real processes (gloo on CPU), with every file-system change recorded per
process by an audit hook (tests/reliability/followups_mp_child.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from reliability_helpers import TINY_EXPERIMENT

CHILD = Path(__file__).resolve().parent / "followups_mp_child.py"
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")


@pytest.mark.slow
@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not available")
def test_only_the_main_process_writes(tmp_path: Path, rel_cohort_template: Path) -> None:
    manifest = rel_cohort_template / "manifest.yaml"
    data = yaml.safe_load(TINY_EXPERIMENT)
    data["task"] = "survival"
    data["data"]["manifest"] = str(manifest)
    data["adapters"] = {"clinical": {}}  # the cheapest modality: this test is about who writes, not the model
    data["model"]["ensemble"] = 2  # members trained one after the other, each in both processes
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    root, logs = tmp_path / "out", tmp_path / "logs"
    root.mkdir()
    logs.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONHASHSEED": "0",
           "MULTIMODAL_FINGERPRINT_CACHE": str(tmp_path / "fingerprints.json")}
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", str(CHILD), str(config), str(manifest),
                        str(root), str(logs)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]

    main, other = (json.loads((logs / f"rank{k}.json").read_text()) for k in (0, 1))
    # cv folds checkpoint per epoch (resume within a fold): Accelerate's save_state runs in every process and each one
    # calls os.makedirs on the (already created) checkpoint.tmp folder; that is the only change allowed to a non-main
    # process — it never writes, renames or removes anything there
    mkdirs = [c for c in other["changes"] if c[0] == "os.mkdir" and Path(c[1]).name == "checkpoint.tmp"]
    assert all(Path(c[1]).is_relative_to(root / "run" / "folds") for c in mkdirs)
    rest = [c for c in other["changes"] if c not in mkdirs]
    assert rest == [], f"a non-main process wrote under the output folder: {rest[:5]}"
    renamed = {Path(c[2]).relative_to(root).as_posix() for c in main["changes"] if c[0] == "os.rename"}
    assert {"pipeline", "preds.parquet", "run/summary.json"} <= renamed  # the hook saw the main process's writes
    # both processes computed the whole command (collective training and prediction) and agree
    assert main["n_predicted"] == other["n_predicted"] == 40
    assert main["methods"] == other["methods"] == ["coxph_clinical", "multimodal"]

    from multimodal.api import check_run_dir, load_pipeline

    pipe = load_pipeline(root / "pipeline")
    assert pipe.adapters.keys() == {"clinical"} and pipe.model.num_members == 2
    preds = pd.read_parquet(root / "preds.parquet")
    assert preds["patient_id"].is_unique and len(preds) == 40
    assert check_run_dir(root / "run")["n_folds"] == 2
    assert not [p.name for p in root.rglob("*") if p.name.endswith((".tmp", ".old"))]
