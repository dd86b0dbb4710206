"""Run folders that cannot be mixed and outputs whose every byte is covered (issue 23, classes 3 and 4).

* a ``cv`` run holds an exclusive lock on its folder: a second run fails at once (exit 2, naming the folder and the
  holder's pid); a lock left by a killed run does not block;
* a finished fold is reused only by a run of the same config and inputs (its digest) with its predictions unchanged;
  a cohort regenerated at the same path with another size is refused, not resumed (issue 21, item 3);
* a finished run is sealed (``checksums.json``) and ``pipeline.json``'s own content is sealed
  (``pipeline_json_sha256``): editing either is refused with exit 2 naming the file.
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

import pandas as pd
import pytest
import yaml
from reliability_helpers import TINY_EXPERIMENT, cli, snapshot

from multimodal.errors import InputError, IntegrityError
from multimodal.run_folder import LOCK_NAME, lock_holder, run_lock

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
HOLD = "import sys, time\nfrom multimodal.run_folder import run_lock\nwith run_lock(sys.argv[1]):\n" \
       "    print('locked', flush=True)\n    time.sleep(600)\n"


def _holder(folder: Path) -> subprocess.Popen:
    """A process holding the lock of ``folder`` until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    assert line.strip() == "locked", proc.stderr.read() if proc.stderr else ""
    return proc


def _unfinished_copy(rel_run: Path, dst: Path) -> Path:
    shutil.copytree(rel_run, dst)
    (dst / "summary.json").unlink()
    return dst


# ---- the lock -------------------------------------------------------------------------------------------------------
def test_second_run_on_a_locked_folder_fails_at_once_naming_the_holder(rel_config: Path, rel_run: Path,
                                                                        tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    proc = _holder(run)
    try:
        before = snapshot(run)
        t0 = time.monotonic()
        rc, _, err = cli("cv", rel_config, "--out", run)
        took = time.monotonic() - t0
        assert rc == 2, err
        assert str(run) in err and f"pid {proc.pid}" in err and "in use by another run" in err, err
        assert took < 20, f"the second run took {took:.1f}s to give up"
        assert snapshot(run) == before  # nothing written, the holder's lock file untouched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the holder died without releasing: its lock file is still there, and does not block the next run
    assert (run / LOCK_NAME).is_file() and lock_holder(run)["pid"] == proc.pid
    rc, out, err = cli("cv", rel_config, "--out", run)
    assert rc == 0, err
    assert out.count("already done, reusing") == 2
    assert not (run / LOCK_NAME).exists()  # released (and removed) at the end


def test_lock_is_reentrant_in_a_process_and_leaves_nothing(tmp_path: Path) -> None:
    run = tmp_path / "new" / "run"
    with run_lock(run):
        assert (run / LOCK_NAME).is_file() and lock_holder(run)["pid"] == os.getpid()
        with run_lock(run):  # Study.run inside run_cv
            pass
        assert (run / LOCK_NAME).is_file()
        other = subprocess.run([sys.executable, "-c", HOLD, str(run)], env=ENV, capture_output=True, text=True,
                               timeout=120)
        assert other.returncode != 0 and f"in use by another run (pid {os.getpid()}" in other.stderr, other.stderr
    assert not (tmp_path / "new").exists()  # made for the lock, left empty: removed
    with pytest.raises(InputError, match="is a file"):
        (tmp_path / "file").write_text("x")
        with run_lock(tmp_path / "file"):
            pass


# ---- fold digests ---------------------------------------------------------------------------------------------------
def _edit_fold_digest(run: Path) -> None:
    p = run / "folds" / "fold_1.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "digest": "0" * 64}))


def _drop_fold_digest(run: Path) -> None:
    p = run / "folds" / "fold_1.json"
    rec = json.loads(p.read_text())
    rec.pop("digest")
    p.write_text(json.dumps(rec))


def _edit_fold_predictions(run: Path) -> None:
    p = run / "folds" / "fold_1.parquet"
    df = pd.read_parquet(p)
    df["risk"] = -df["risk"]
    df.to_parquet(p, index=False)


@pytest.mark.parametrize(("edit", "culprit", "needle"), [
    (_edit_fold_digest, "fold_1.json", "computed from another config or other input files"),
    (_drop_fold_digest, "fold_1.json", "records no digest"),
    (_edit_fold_predictions, "fold_1.parquet", "predictions differ"),
])
def test_a_fold_of_another_run_is_not_reused(rel_config: Path, rel_run: Path, tmp_path: Path, edit, culprit: str,
                                             needle: str) -> None:
    run = _unfinished_copy(rel_run, tmp_path / "run")
    edit(run)
    before = snapshot(run)
    rc, _, err = cli("cv", rel_config, "--out", run)
    assert rc == 2, err
    assert culprit in err and needle in err and "--overwrite" in err, err
    assert snapshot(run) == before


CHEAP = {"adapters": {"clinical": {}}, "evaluation": {"folds": 2, "baselines": [], "ablations": False, "bootstrap": 0},
         "model": {"ensemble": 1}}


def test_a_regenerated_cohort_of_another_size_is_refused_not_resumed(tmp_path: Path) -> None:
    """Issue 21 item 3: the same config (the manifest at the same path) over a cohort regenerated with another size
    must not resume the earlier run's folds; the fold digests refuse it even without run.json."""
    cohort = tmp_path / "cohort"
    synth = ["synth", "--patches-per-slide", "8", "--embed-dim", "8", "--n-genes", "40", "--n-pathways", "4"]
    assert cli(*synth, "--out", cohort, "--patients", "30", "--seed", "1")[0] == 0
    data = yaml.safe_load(TINY_EXPERIMENT)
    data["data"]["manifest"] = str(cohort / "manifest.yaml")
    for k, v in CHEAP.items():
        data[k] = {**data.get(k, {}), **v} if k != "adapters" else v
    config = tmp_path / "cheap.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    run = tmp_path / "run"
    rc, _, err = cli("cv", config, "--out", run)
    assert rc == 0, err
    (run / "summary.json").unlink()  # an unfinished run
    assert cli(*synth, "--out", cohort, "--patients", "24", "--seed", "1", "--overwrite")[0] == 0
    rc, _, err = cli("cv", config, "--out", run)
    assert rc == 2 and "input file changed since this run started" in err, err  # run.json names the change
    (run / "run.json").unlink()  # without it, each fold's digest still tells
    before = snapshot(run)
    rc, _, err = cli("cv", config, "--out", run)
    assert rc == 2, err
    assert "fold_0.json" in err and "fold 0 cannot be reused" in err, err
    assert snapshot(run) == before


# ---- sealed outputs -------------------------------------------------------------------------------------------------
def _edit_summary(run: Path) -> None:
    p = run / "summary.json"
    s = json.loads(p.read_text())
    s["methods"]["multimodal"]["mean"]["c_index"] = 0.99
    p.write_text(json.dumps(s, indent=2))


@pytest.mark.parametrize(("edit", "needle"), [
    (_edit_summary, "summary.json: checksum mismatch"),
    (lambda r: _edit_fold_predictions(r), "fold_1.parquet: checksum mismatch"),
    (lambda r: (r / "checksums.json").unlink(), "checksum list missing"),
])
def test_cohort_report_refuses_an_edited_run(rel_run: Path, tmp_path: Path, edit, needle: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    listed = json.loads((run / "checksums.json").read_text())["files"]
    assert {"summary.json", "predictions.parquet", "config.yaml", "run.json", "folds/fold_0.parquet"} <= set(listed)
    assert LOCK_NAME not in listed
    edit(run)
    rc, _, err = cli("cohort-report", run, "--out", tmp_path / "rep", "--no-pdf")
    assert rc == 2 and needle in err, err
    assert not (tmp_path / "rep").exists()


def _pipe_edits() -> dict[str, object]:
    def ref(m: dict) -> None:
        m["metadata"]["reference_risks"] = [r - 10 for r in m["metadata"]["reference_risks"]]

    def arms(m: dict) -> None:
        m["metadata"]["treatment_arms"] = m["metadata"]["treatment_arms"][::-1]

    def unit(m: dict) -> None:
        m["metadata"]["time_unit"] = "months"

    def validation(m: dict) -> None:
        m["metadata"]["validation"] = {"c_index (mean over folds)": 0.99}

    def seal(m: dict) -> None:
        m.pop("pipeline_json_sha256")

    return {"reference-risks": ref, "arm-order": arms, "time-unit": unit, "validation": validation,
            "seal-removed": seal}


@pytest.mark.parametrize("name", list(_pipe_edits()))
def test_an_edited_pipeline_json_is_refused(rel_pipeline: Path, rel_cohort_template: Path, tmp_path: Path,
                                            name: str) -> None:
    """Class 4: pipeline.json's own metadata (reference risks behind percentile and risk group, arm order, time unit,
    validation figures) is covered by its own checksum."""
    pipe = tmp_path / "pipeline"
    shutil.copytree(rel_pipeline, pipe)
    meta = json.loads((pipe / "pipeline.json").read_text())
    _pipe_edits()[name](meta)
    (pipe / "pipeline.json").write_text(json.dumps(meta, indent=2))
    out = tmp_path / "preds.parquet"
    rc, _, err = cli("predict", "--pipeline", pipe, "--manifest", rel_cohort_template / "manifest.yaml", "--out", out)
    assert rc == 2, err
    assert str(pipe / "pipeline.json") in err, err
    assert ("no checksum of its own content" if name == "seal-removed" else "checksum mismatch") in err, err
    assert not out.exists()


def test_pipeline_json_layout_does_not_matter_and_attach_validation_reseals(rel_pipeline: Path, rel_run: Path,
                                                                             tmp_path: Path) -> None:
    from multimodal.api import attach_validation, load_pipeline

    pipe = tmp_path / "pipeline"
    shutil.copytree(rel_pipeline, pipe)
    meta = json.loads((pipe / "pipeline.json").read_text())
    (pipe / "pipeline.json").write_text(json.dumps(meta, separators=(",", ":"), sort_keys=True))  # same content
    assert load_pipeline(pipe).metadata["reference_risks"] == meta["metadata"]["reference_risks"]
    attach_validation(pipe, rel_run)
    assert load_pipeline(pipe).metadata["validation"]["n_folds"] == 2
    meta = json.loads((pipe / "pipeline.json").read_text())
    meta["metadata"]["time_unit"] = "months"
    (pipe / "pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        attach_validation(pipe, rel_run)  # an edited pipeline.json is never sealed again


def test_validation_figures_come_only_from_an_intact_run(rel_pipeline: Path, rel_run: Path, tmp_path: Path) -> None:
    """``train --validation`` / attach_validation read the summary of a sealed run only as it was written."""
    from multimodal.api import attach_validation

    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    _edit_summary(run)
    pipe = tmp_path / "pipeline"
    shutil.copytree(rel_pipeline, pipe)
    before = snapshot(pipe)
    with pytest.raises(IntegrityError, match="summary.json: checksum mismatch"):
        attach_validation(pipe, run)
    assert snapshot(pipe) == before
