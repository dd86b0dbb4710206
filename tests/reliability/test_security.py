"""Security: no unsafe deserialization or dynamic code in the package, pipelines load without running their code,
data-derived strings are escaped in reports, patient ids never become paths, a patient report holds one patient."""

from __future__ import annotations

import ast
import json
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reliability_helpers import cli

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = ("multimodal", "adapters", "cohorts")


# ---- static scan ---------------------------------------------------------------------------------------------------
def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """Every unsafe construct in ``source``: ``file:line: what``."""
    found: list[str] = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "trust_remote_code" in node.value:
            found.append(f"{filename}:{node.lineno}: 'trust_remote_code' in a string")
        if isinstance(node, ast.Name) and node.id == "trust_remote_code":
            found.append(f"{filename}:{node.lineno}: name trust_remote_code")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        short = name.rsplit(".", 1)[-1]
        where = f"{filename}:{node.lineno}"
        if any(k.arg == "trust_remote_code" for k in node.keywords):
            found.append(f"{where}: trust_remote_code= passed to {name}")
        if name in ("eval", "exec", "builtins.eval", "builtins.exec", "compile"):
            found.append(f"{where}: {name}()")
        if name.startswith(("pickle.", "cPickle.", "_pickle.", "dill.", "cloudpickle.", "joblib.")) and short in (
                "load", "loads", "Unpickler"):
            found.append(f"{where}: {name}() unpickles")
        if short == "read_pickle" or name in ("marshal.load", "marshal.loads", "shelve.open"):
            found.append(f"{where}: {name}() unpickles")
        if name == "torch.load" or name.endswith(".torch.load"):
            wo = _kw(node, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                found.append(f"{where}: torch.load without weights_only=True")
        if name in ("yaml.load", "yaml.load_all"):
            loader = _kw(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if not (loader is not None and _dotted(loader).rsplit(".", 1)[-1] in ("SafeLoader", "CSafeLoader")):
                found.append(f"{where}: {name} without a safe loader")
        if name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all", "yaml.full_load_all"):
            found.append(f"{where}: {name}")
        if short == "load" and name.startswith(("np.", "numpy.")):
            ap = _kw(node, "allow_pickle")
            if isinstance(ap, ast.Constant) and ap.value is True:
                found.append(f"{where}: {name}(allow_pickle=True)")
        if name in ("os.system", "os.popen") or (name.startswith("subprocess.") and isinstance(
                _kw(node, "shell"), ast.Constant) and _kw(node, "shell").value is True):
            found.append(f"{where}: {name} through a shell")
    return found


def test_scanner_catches_every_pattern() -> None:
    bad = """
import pickle, torch, yaml, numpy as np, subprocess, os
pickle.load(f); pickle.loads(b); torch.load(p); torch.load(p, weights_only=False)
yaml.load(s); yaml.load(s, Loader=yaml.Loader); yaml.unsafe_load(s); eval("1"); exec("x=1")
AutoModel.from_pretrained(x, trust_remote_code=True); np.load(p, allow_pickle=True); pd.read_pickle(p)
subprocess.run("ls", shell=True); os.system("ls")
"""
    hits = unsafe_calls(bad)
    assert len(hits) == 14, hits
    good = """
import torch, yaml, numpy as np, subprocess
torch.load(p, weights_only=True); yaml.safe_load(s); yaml.load(s, Loader=yaml.SafeLoader); np.load(p)
subprocess.run(["git", "rev-parse", "HEAD"]); model.eval(); ast.literal_eval("1")
"""
    assert unsafe_calls(good) == []


def test_package_source_has_no_unsafe_deserialization_or_dynamic_code() -> None:
    files = [p for d in PACKAGE_DIRS for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 30
    hits = [h for p in files for h in unsafe_calls(p.read_text(), str(p.relative_to(REPO)))]
    assert hits == []


# ---- loading a pipeline runs no code from its folder ----------------------------------------------------------------
class _Boom:
    """Unpickling this writes a marker file (what a malicious pickle would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.marker, "pickle executed"))


def _plant(folder: Path, marker: Path) -> None:
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('code executed')\n"
    for name in ("__init__.py", "modeling.py", "modeling_precision_multimodal.py",
                 "configuration_precision_multimodal.py", "sitecustomize.py"):
        (folder / name).write_text(code)
    blob = pickle.dumps(_Boom(marker))
    for name in ("pipeline.pkl", "model.pkl", "random_states_0.pkl", "pytorch_model.bin", "custom_checkpoint_0.pkl"):
        (folder / name).write_bytes(blob)


def test_loading_a_pipeline_runs_no_code_from_its_folder(rel_pipeline: Path, rel_cohort_template: Path,
                                                          tmp_path: Path) -> None:
    from multimodal.api import load_pipeline
    from multimodal.io import sha256_file
    from multimodal.pipeline import write_pipeline_json

    marker = tmp_path / "PWNED"
    pipe_dir = tmp_path / "pipeline"
    shutil.copytree(rel_pipeline, pipe_dir)
    _plant(pipe_dir, marker)
    # a consistent attacker also edits the HF config to point at remote code and fixes up the checksum list
    cfg_path = pipe_dir / "model" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_precision_multimodal.MultimodalConfig",
                       "AutoModel": "modeling_precision_multimodal.MultimodalModel"}
    cfg_path.write_text(json.dumps(cfg))
    meta = json.loads((pipe_dir / "pipeline.json").read_text())
    meta["sha256"]["model/config.json"] = sha256_file(cfg_path)
    write_pipeline_json(pipe_dir, meta)  # and re-seals pipeline.json: checksums are not signatures

    modules_before = set(sys.modules)
    pipe = load_pipeline(pipe_dir)
    assert type(pipe.model).__module__.startswith("multimodal.")
    out = tmp_path / "preds.parquet"
    rc, _, err = cli("predict", "--pipeline", pipe_dir, "--manifest", rel_cohort_template / "manifest.yaml",
                     "--out", out)
    assert rc == 0, err
    assert not marker.exists(), marker.read_text()
    assert str(pipe_dir) not in sys.path
    new = set(sys.modules) - modules_before
    assert not [m for m in new if "modeling" in m or "configuration_precision" in m or m == "sitecustomize"]

    # code or pickles placed where the loader reads are refused before anything is read
    _plant(pipe_dir / "model", marker)
    rc, _, err = cli("predict", "--pipeline", pipe_dir, "--manifest", rel_cohort_template / "manifest.yaml",
                     "--out", tmp_path / "preds2.parquet")
    assert rc == 2 and "not covered by the checksum list" in err
    assert not marker.exists()
    # and the planted pickle really is hostile: the only loader we allow refuses it
    import torch

    with pytest.raises(pickle.UnpicklingError):
        torch.load(pipe_dir / "pipeline.pkl", weights_only=True)
    assert not marker.exists()


# ---- escaping in reports --------------------------------------------------------------------------------------------
def test_cohort_report_escapes_cohort_and_method_names(rel_run: Path, tmp_path: Path) -> None:
    from multimodal.io import write_checksums

    run = tmp_path / "run"
    shutil.copytree(rel_run, run)
    evil_cohort = "<script>alert('cohort')</script>"
    evil_method = '<img src=x onerror="alert(1)">'
    s = json.loads((run / "summary.json").read_text())
    s["cohort"] = evil_cohort
    s["methods"] = {(evil_method if k == "coxph_clinical" else k): v for k, v in s["methods"].items()}
    s["protocol"]["splits"] = "<b onmouseover=alert(2)>folds</b>"
    (run / "summary.json").write_text(json.dumps(s))
    preds = pd.read_parquet(run / "predictions.parquet")
    preds["method"] = preds["method"].replace({"coxph_clinical": evil_method})
    preds.to_parquet(run / "predictions.parquet", index=False)
    write_checksums(run)  # sealed again, as a run with such names would have been (an edited run is refused)

    rc, _, err = cli("cohort-report", run, "--out", tmp_path / "cr", "--no-pdf")
    assert rc == 0, err
    html = (tmp_path / "cr" / "cohort_report.html").read_text()
    for raw in (evil_cohort, evil_method, "<script>", "<img src=x", "<b onmouseover"):
        assert raw not in html
    assert "&lt;script&gt;alert(" in html
    assert "&lt;img src=x onerror=" in html
    assert "<script" not in html.lower()


# ---- patient ids never become paths ----------------------------------------------------------------------------------
EVIL_ID = "../../evil"


def _rename_patient(cohort: Path, old: str, new: str) -> None:
    """Rename a patient in every table of the cohort (outcomes, clinical, slides, expression, MAF)."""
    import anndata as ad

    h5ad = cohort / "omics" / "expression.h5ad"
    a = ad.read_h5ad(h5ad)
    a.obs_names = [new if n == old else n for n in a.obs_names]
    a.write_h5ad(h5ad)
    for name in ("mutations.maf", "sequenced_samples.txt"):
        f = cohort / "omics" / name
        f.write_text(f.read_text().replace(f"{old}-", f"{new}-"))
    p = cohort / "outcomes.parquet"
    df = pd.read_parquet(p)
    df["patient_id"] = df["patient_id"].replace({old: new})
    df.to_parquet(p, index=False)
    for name in ("clinical.csv", "slides.csv"):
        t = pd.read_csv(cohort / name, dtype=str)
        t["patient_id"] = t["patient_id"].replace({old: new})
        t.to_csv(cohort / name, index=False)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_hostile_patient_ids_stay_data(rel_pipeline: Path, cohort_copy: Path, tmp_path: Path) -> None:
    """A patient id like ``../../evil`` is predicted and reported on, and no file lands outside --out."""
    slides = pd.read_csv(cohort_copy / "slides.csv")
    victim = str(slides["patient_id"].iloc[0])
    _rename_patient(cohort_copy, victim, EVIL_ID)
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    watch = tmp_path.parent  # ../../evil from work/rep would land in tmp_path; from tmp_path in its parent
    before = _tree(watch)

    rc, _, err = cli("predict", "--pipeline", rel_pipeline, "--manifest", cohort_copy / "manifest.yaml",
                     "--out", work / "preds.parquet")
    assert rc == 0, err
    assert EVIL_ID in set(pd.read_parquet(work / "preds.parquet")["patient_id"])
    rc, _, err = cli("report", "--pipeline", rel_pipeline, "--manifest", cohort_copy / "manifest.yaml",
                     "--patient", EVIL_ID, "--out", work / "rep", "--no-pdf")
    assert rc == 0, err
    rc, _, err = cli("explain", "--pipeline", rel_pipeline, "--manifest", cohort_copy / "manifest.yaml",
                     "--patient", EVIL_ID, "--out", work / "exp")
    assert rc == 0, err
    created = _tree(watch) - before
    base = str(work.relative_to(watch))
    assert created and all(c.startswith(base) for c in created), sorted(created)
    assert sorted(p.name for p in (work / "rep").iterdir()) == ["report.html", "risk_result.json"]
    assert EVIL_ID not in (work / "rep" / "report.html").read_text()
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_synth_writes_only_inside_out(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "syn"
    rc, _, err = cli("synth", "--out", out, "--patients", "6", "--patches-per-slide", "8", "--embed-dim", "4",
                     "--n-genes", "24", "--n-pathways", "4")
    assert rc == 0, err
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents]
    assert outside == []
    assert (out / "manifest.yaml").is_file()


# ---- a patient's report holds that patient only ---------------------------------------------------------------------
def _report_result(pipe: Path, cohort: Path, pid: str, out: Path) -> tuple[str, dict]:
    rc, _, err = cli("report", "--pipeline", pipe, "--manifest", cohort / "manifest.yaml", "--patient", pid,
                     "--out", out, "--no-pdf")
    assert rc == 0, err
    return (out / "report.html").read_text(), json.loads((out / "risk_result.json").read_text())


def _strip_volatile(d: object) -> object:
    if isinstance(d, dict):
        return {k: _strip_volatile(v) for k, v in d.items() if k not in ("created", "generated", "timestamp")}
    if isinstance(d, list):
        return [_strip_volatile(v) for v in d]
    return d


def test_patient_report_carries_no_other_patients_data(rel_pipeline: Path, cohort_copy: Path,
                                                       tmp_path: Path) -> None:
    """Another patient's data (ids, slide names, features, clinical values) neither appear in nor change a report."""
    import h5py

    from multimodal.explain.risk import pseudonym

    slides = pd.read_csv(cohort_copy / "slides.csv")
    me = str(slides["patient_id"].iloc[0])
    html_a, res_a = _report_result(rel_pipeline, cohort_copy, me, tmp_path / "a")
    # change everything about another patient with slides: slide ids, features, clinical values
    other = next(str(p) for p in slides["patient_id"] if str(p) != me)
    slides.loc[slides["patient_id"] == other, "slide_id"] = "ZZLEAK-slide"
    slides.to_csv(cohort_copy / "slides.csv", index=False)
    for rel in slides.loc[slides["patient_id"] == other, "path"]:
        with h5py.File(cohort_copy / rel, "r+") as f:
            f["features"][...] = np.random.default_rng(1).normal(size=f["features"].shape) * 5
    clin = pd.read_csv(cohort_copy / "clinical.csv", dtype=str)
    clin.loc[clin["patient_id"] == other, "age"] = "99.9"
    clin.to_csv(cohort_copy / "clinical.csv", index=False)

    html_b, res_b = _report_result(rel_pipeline, cohort_copy, me, tmp_path / "b")
    assert _strip_volatile(res_a) == _strip_volatile(res_b)  # nothing of the other patient flows into mine
    text = html_b + json.dumps(res_b)
    patients = pd.read_parquet(cohort_copy / "outcomes.parquet")["patient_id"].astype(str)
    salt = str(json.loads((rel_pipeline / "pipeline.json").read_text())["metadata"]["cohort"])
    assert res_b["patient"]["pseudonym"] == pseudonym(me, salt)
    for pid in patients:
        if pid != me:
            assert pid not in text
            assert pseudonym(pid, salt) not in text
    assert "ZZLEAK" not in text and "99.9" not in text
