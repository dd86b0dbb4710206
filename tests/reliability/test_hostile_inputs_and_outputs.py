"""Root fixes of issue 23: tiny inputs that exhaust resources, identifiers mangled by CSV defaults, output
permissions, litter of killed writers, late ``--out`` errors (the ``--out`` and non-finite-number cases are in the
catalogue of test_bad_inputs_cli.py).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from reliability_helpers import BILLION_LAUGHS, cli

from multimodal.cli.common import check_out
from multimodal.config import load_yaml, safe_yaml
from multimodal.errors import MAX_QUOTE, InputError, Problem, short
from multimodal.io import atomic_dir, atomic_path, remove_stale_temps, temp_prefix, write_text_atomic


def _laughs_config(tmp_path: Path) -> Path:
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS + "training:\n  lr: *i\n")
    return path


# ---- 1. resource exhaustion from tiny inputs ----------------------------------------------------------------------
def test_billion_laughs_config_is_refused_at_once(tmp_path: Path) -> None:
    cfg = _laughs_config(tmp_path)
    assert cfg.stat().st_size < 1000
    start = time.perf_counter()
    rc, _, err = cli("train", cfg, "--out", tmp_path / "out")
    assert time.perf_counter() - start < 10
    assert rc == 2, err
    assert str(cfg) in err and "anchors and aliases are not allowed" in err and len(err) < 500
    assert not (tmp_path / "out").exists()


def test_billion_laughs_manifest_is_refused_by_validate_and_loading(cohort_copy: Path) -> None:
    manifest = cohort_copy / "manifest.yaml"
    manifest.write_text(BILLION_LAUGHS + re.sub(r"^name: .*$", "name: *i", manifest.read_text(), flags=re.M))
    start = time.perf_counter()
    rc, out, err = cli("validate", manifest)
    assert time.perf_counter() - start < 10
    assert rc == 2, out + err
    assert "anchors and aliases are not allowed" in out and str(manifest) in out and len(out) < 2000


def test_anchors_deep_nesting_and_huge_integers_are_refused(tmp_path: Path) -> None:
    cases = {"anchor.yaml": "seed: &s 1\n", "deep.yaml": "seed: " + "[" * 500 + "]" * 500 + "\n",
             "bigint.yaml": "seed: " + "7" * 5000 + "\n"}
    expect = {"anchor.yaml": "anchors and aliases", "deep.yaml": "levels deep", "bigint.yaml": "4300 digits"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=expect[name]) as exc:
            load_yaml(tmp_path / name)
        assert exc.value.file == str(tmp_path / name)
    assert safe_yaml("a: [1, {b: 2}]\nc: 1e-3\n") == {"a": [1, {"b": 2}], "c": "1e-3"}  # ordinary YAML unchanged


def test_values_quoted_in_messages_are_shortened(rel_config: Path) -> None:
    nested: object = ["lol"] * 9
    for _ in range(8):
        nested = [nested] * 9
    start = time.perf_counter()
    text = short(nested)
    assert time.perf_counter() - start < 1 and len(text) < MAX_QUOTE + 40
    assert len(short("x" * 10**6)) <= MAX_QUOTE + 40
    assert len(str(Problem("m" * 10**6, patient="p" * 10**6, field="f" * 10**6))) < 2000
    rc, _, err = cli("train", rel_config, "--out", "unused", "--set", "training.lr=[" + "1," * 50_000 + "]")
    assert rc == 2 and "training.lr" in err and len(err) < 600, err


# ---- 2. identifiers that look like missing values ------------------------------------------------------------------
NAMES = {"SYN-0001": "NA", "SYN-0002": "null", "SYN-0003": "None"}


def _rename_patients(root: Path) -> Path:
    """Patients SYN-0001..3 renamed "NA", "null", "None" in a CSV patient table, the clinical and the slide table;
    genomics dropped (its files name the old ids). Returns the manifest."""
    outcomes = pd.read_parquet(root / "outcomes.parquet")
    outcomes["patient_id"] = outcomes["patient_id"].replace(NAMES)
    outcomes.to_csv(root / "outcomes.csv", index=False)
    for table in ("clinical.csv", "slides.csv"):
        df = pd.read_csv(root / table, dtype=str, keep_default_na=False)
        df["patient_id"] = df["patient_id"].replace(NAMES)
        df.to_csv(root / table, index=False)
    manifest = root / "manifest.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["patients"]["path"] = "outcomes.csv"
    data["modalities"].pop("genomics")
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return manifest


def test_patients_named_like_missing_values_keep_their_names(cohort_copy: Path) -> None:
    from multimodal.cohorts.loading import resolve_manifest

    manifest = _rename_patients(cohort_copy)
    clinical = pd.read_csv(cohort_copy / "clinical.csv", dtype=str, keep_default_na=False)
    clinical.loc[clinical["patient_id"] == "SYN-0004", "age"] = "NA"  # other columns: "NA" is still missing
    clinical.to_csv(cohort_copy / "clinical.csv", index=False)
    res = resolve_manifest(manifest)
    assert res.problems == [], res.problems
    ids = set(NAMES.values())
    assert ids <= set(res.patients.index)
    table = res.sources["clinical"].table
    assert ids <= set(table.index)
    assert pd.isna(table.loc["SYN-0004", "age"]) and pd.api.types.is_float_dtype(table["age"])
    with_slides = set(pd.read_csv(cohort_copy / "slides.csv", dtype=str, keep_default_na=False)["patient_id"])
    assert ids & with_slides and ids & with_slides <= res.sources["pathology"].patients()
    rc, out, err = cli("validate", manifest)
    assert rc == 0, out + err
    assert "empty patient id" not in out


def test_a_truly_empty_clinical_id_is_reported(cohort_copy: Path) -> None:
    from multimodal.cohorts.loading import resolve_manifest

    path = cohort_copy / "clinical.csv"
    path.write_text(path.read_text() + ",50,F,II,G1\n")
    res = resolve_manifest(cohort_copy / "manifest.yaml")
    assert any("empty patient id" in w.message and w.file == str(path) for w in res.warnings), res.warnings


def test_split_files_keep_ids_named_like_missing_values(tmp_path: Path) -> None:
    from multimodal.cohorts.splits import read_split_files

    pd.DataFrame({"train": ["NA", "A", "B"], "val": ["null", "None", None]}).to_csv(tmp_path / "splits_0.csv")
    (fold,) = read_split_files(tmp_path / "splits_{k}.csv", 1, known_ids=["NA", "A", "B", "null", "None"])
    assert fold.train == ("NA", "A", "B") and fold.val == ("null", "None")


# ---- 3. permissions ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_follow_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        f = write_text_atomic(tmp_path / "new" / "a.txt", "x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "inner.json").write_text("{}")
        rc, _, err = cli("synth", "--out", tmp_path / "syn", "--patients", "4", "--patches-per-slide", "4",
                         "--embed-dim", "4", "--n-genes", "8")
        assert rc == 0, err
    finally:
        os.umask(old)
    files, folders = 0o666 & ~umask, 0o777 & ~umask
    for path in (f, tmp_path / "b.bin", tmp_path / "d" / "inner.json", tmp_path / "syn" / "manifest.yaml"):
        assert stat.S_IMODE(path.stat().st_mode) == files, path
    for path in (f.parent, tmp_path / "d", tmp_path / "syn"):
        assert stat.S_IMODE(path.stat().st_mode) == folders, path


# ---- 4. litter of killed writers --------------------------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_writer_removes_what_dead_writers_left_and_never_a_live_ones(tmp_path: Path) -> None:
    target = tmp_path / "out"
    dead = tmp_path / f"{temp_prefix(target, _dead_pid())}abcdefgh.tmp"
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    live_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f"{temp_prefix(target, live_proc.pid)}ijklmnop.tmp"
        live.mkdir()
        dead_file = tmp_path / f"{temp_prefix(target, _dead_pid())}qrstuvwx.tmp"
        dead_file.write_bytes(b"half")
        other = tmp_path / ".out.abcdefgh.tmp"  # no pid: not ours to judge
        other.mkdir()
        rc, _, err = cli("synth", "--out", target, "--patients", "4", "--patches-per-slide", "4", "--embed-dim", "4",
                         "--n-genes", "8")
        assert rc == 0, err
        assert not dead.exists() and not dead_file.exists()
        assert live.is_dir() and other.is_dir()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "out"])
    finally:
        live_proc.kill()
        live_proc.wait()


KILLED_WRITER = """
import os, signal, sys
from multimodal.io import atomic_dir, atomic_path
target, kind = sys.argv[1], sys.argv[2]
cm = atomic_dir(target) if kind == "dir" else atomic_path(target)
tmp = cm.__enter__()
(tmp / "part").write_text("half") if kind == "dir" else tmp.write_text("half")
print(tmp, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_the_next_write_cleans_up_after_a_sigkill(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "out"
    child = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target), kind], capture_output=True, text=True,
                           check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    litter = Path(child.stdout.strip())
    assert litter.exists() and litter.parent == tmp_path
    if kind == "dir":
        with atomic_dir(target) as tmp:
            (tmp / "whole").write_text("ok")
    else:
        write_text_atomic(target, "ok")
    assert not litter.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_temporary_names_fit_a_target_name_of_255_bytes(tmp_path: Path) -> None:
    target = tmp_path / ("é" * 127 + "x")  # 255 bytes
    write_text_atomic(target, "ok")
    with atomic_dir(tmp_path / ("d" * 255)) as tmp:
        (tmp / "f").write_text("ok")
    assert target.read_text() == "ok" and (tmp_path / ("d" * 255) / "f").is_file()
    assert remove_stale_temps(target) == []


# ---- 5. --out checked before any work ---------------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only (chmod) folders")
def test_out_in_a_read_only_folder_is_refused_before_work(tmp_path: Path, rel_config: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = cli("train", rel_config, "--out", ro / "pipe")
    finally:
        ro.chmod(0o755)
    assert rc == 2 and "--out" in err and "not writable" in err, err
    assert list(ro.iterdir()) == []


def test_out_check_names_an_unwritable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The permission branch, also under root (for whom every chmod-read-only folder is writable)."""
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(InputError, match="not writable") as exc:
        check_out(tmp_path / "a" / "b", folder=True)
    assert exc.value.field == "--out"
    with pytest.raises(InputError, match="not writable"):
        check_out(tmp_path / "p.parquet", folder=False)


def test_cnv_and_tcga_tables_keep_ids_named_like_missing_values(tmp_path: Path) -> None:
    """Issue 23 class 8: the omics CNV reader and the TCGA readers read patient ids as text with no NA parsing."""
    from multimodal.cohorts.formats.omics import read_cnv
    from multimodal.cohorts.tcga import load_mmp_clinical

    cnv = tmp_path / "cnv.csv"
    pd.DataFrame({"patient_id": ["NA", "null", "None", "P4"], "TP53": [0.5, -1.0, "NA", 2.0]}).to_csv(cnv, index=False)
    table = read_cnv(cnv)
    assert list(table.index) == ["NA", "null", "None", "P4"] and pd.isna(table.loc["None", "TP53"])
    folder = tmp_path / "tcga_mmp" / "splits" / "survival" / "TCGA_XYZ_overall_survival_k=0"
    folder.mkdir(parents=True)
    for part, ids in (("train", ["NA", "TCGA-01"]), ("test", ["null"])):
        pd.DataFrame({"case_id": ids, "age": ["NA"] * len(ids)}).to_csv(folder / f"{part}.csv.gz", index=False)
    cdr = load_mmp_clinical(tmp_path, "xyz")
    assert sorted(cdr.index) == ["NA", "TCGA-01", "null"] and cdr["age"].isna().all()
