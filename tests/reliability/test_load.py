"""Under load (issue 23): 8 concurrent ``multimodal predict`` processes on one pipeline, 3 concurrent ``cv`` runs on
distinct folders and 2 on the same folder, all at once on a tiny synthetic cohort (``multimodal synth``) — every
answer correct, none corrupting another.

* each prediction file equals the one written alone, and the pipeline folder is untouched;
* each cv run in its own folder is complete and sealed (``check_run_dir`` verifies every byte), and runs of the same
  config agree (two of the three share seed 0);
* of the two runs on one folder, the second fails at once with exit 2 naming the folder and the first's pid; the
  folder holds the first run only, equal to the seed-0 run elsewhere;
* nothing is left behind: no temporary files, no lock files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from reliability_helpers import TINY_EXPERIMENT, cli, snapshot

from multimodal.run_folder import LOCK_NAME, check_run_dir

N_PREDICT = 8
KEY = ["method", "fold", "patient_id"]


def _start(argv: list[object], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "w") as fh:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "multimodal", *map(str, argv)], env=env,
                                stdout=subprocess.DEVNULL, stderr=fh)


def _finish(proc: subprocess.Popen, log: Path, deadline: float) -> tuple[int, str]:
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode, log.read_text()


def _cv_preds(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "predictions.parquet").sort_values(KEY).reset_index(drop=True)


@pytest.mark.slow
def test_concurrent_predicts_and_cv_runs(tmp_path: Path) -> None:
    t_start = time.monotonic()
    cohort = tmp_path / "cohort"
    rc, _, err = cli("synth", "--out", cohort, "--patients", "30", "--seed", "5", "--patches-per-slide", "8",
                     "--embed-dim", "8", "--n-genes", "40", "--n-pathways", "4")
    assert rc == 0, err
    data = yaml.safe_load(TINY_EXPERIMENT)
    data["data"]["manifest"] = str(cohort / "manifest.yaml")
    data["evaluation"]["bootstrap"] = 0
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    manifest = cohort / "manifest.yaml"
    pipe = tmp_path / "pipeline"
    rc, _, err = cli("train", config, "--out", pipe)
    assert rc == 0, err
    ref = tmp_path / "ref.parquet"
    rc, _, err = cli("predict", "--pipeline", pipe, "--manifest", manifest, "--out", ref)
    assert rc == 0, err
    pipe_before = snapshot(pipe)
    t_setup = time.monotonic() - t_start

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "TOKENIZERS_PARALLELISM": "false",
           "MULTIMODAL_FINGERPRINT_CACHE": str(tmp_path / "fingerprints.json")}  # one cache, written by every cv
    logs = tmp_path / "logs"
    logs.mkdir()
    t0 = time.monotonic()
    procs: dict[str, subprocess.Popen] = {}
    for i in range(N_PREDICT):
        procs[f"predict{i}"] = _start(["predict", "--pipeline", pipe, "--manifest", manifest, "--out",
                                       tmp_path / f"p{i}.parquet"], logs / f"predict{i}.txt", env)
    seeds = {"cv_a": 0, "cv_b": 1, "cv_c": 0}
    for name, seed in seeds.items():
        procs[name] = _start(["cv", config, "--out", tmp_path / name, "--set", f"seed={seed}"], logs / f"{name}.txt",
                             env)
    shared = tmp_path / "cv_shared"
    procs["shared_first"] = _start(["cv", config, "--out", shared], logs / "shared_first.txt", env)
    deadline = time.monotonic() + 600
    while not (shared / LOCK_NAME).is_file():  # the second starts once the first holds the folder
        assert procs["shared_first"].poll() is None, (logs / "shared_first.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, "the first run never locked its folder"
        time.sleep(0.05)
    second = _start(["cv", config, "--out", shared, "--set", "seed=7"], logs / "shared_second.txt", env)
    rc2, err2 = _finish(second, logs / "shared_second.txt", deadline)
    first_running = procs["shared_first"].poll() is None
    results = {name: _finish(p, logs / f"{name}.txt", deadline) for name, p in procs.items()}
    t_load = time.monotonic() - t0

    for name, (rc, err) in results.items():
        assert rc == 0, f"{name}: exit {rc}\n{err[-3000:]}"
    # predictions: each equals the one written alone; the pipeline folder is untouched
    want = pd.read_parquet(ref)
    for i in range(N_PREDICT):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"p{i}.parquet"), want, check_exact=False,
                                      rtol=1e-6, atol=1e-7)
    assert snapshot(pipe) == pipe_before
    # cv runs on distinct folders: complete, sealed, and runs of one config agree
    for name, seed in seeds.items():
        summary = check_run_dir(tmp_path / name)  # structure + every byte against checksums.json
        assert summary["n_folds"] == 2
        assert yaml.safe_load((tmp_path / name / "config.yaml").read_text())["seed"] == seed
        preds = _cv_preds(tmp_path / name)
        for _, g in preds.groupby("method"):
            assert len(g) == 30 and g["patient_id"].is_unique
    a, c = _cv_preds(tmp_path / "cv_a"), _cv_preds(tmp_path / "cv_c")
    assert a[KEY].equals(c[KEY])
    np.testing.assert_allclose(a["risk"].to_numpy(float), c["risk"].to_numpy(float), rtol=1e-4, atol=1e-5)
    # two runs on one folder: the second refused at once, the folder holds the first only
    assert rc2 == 2, err2[-3000:]
    assert str(shared) in err2, err2[-3000:]
    if first_running:  # (always, unless the first finished before the second reached the lock)
        assert f"in use by another run (pid {procs['shared_first'].pid}" in err2, err2[-3000:]
    check_run_dir(shared)
    assert yaml.safe_load((shared / "config.yaml").read_text())["seed"] == 0
    s = _cv_preds(shared)
    assert s[KEY].equals(a[KEY])
    np.testing.assert_allclose(s["risk"].to_numpy(float), a["risk"].to_numpy(float), rtol=1e-4, atol=1e-5)
    # nothing left behind
    litter = [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".old")) or p.name == LOCK_NAME]
    assert not litter, litter
    print(f"setup {t_setup:.1f}s, {N_PREDICT} predict + 5 cv concurrently {t_load:.1f}s")
