"""Bad input to every command except ``validate`` (covered in tests/cohorts/test_validate_bad_inputs.py).

Each case breaks one thing (a config value, a manifest, a slide / omics / MEDS file, a pipeline or run folder, a CLI
argument) and runs ``multimodal ...`` in-process. Every case must:

* exit with code 2 (bad input or usage), never 1 (an unexpected failure) and never 0;
* print a short message on stderr naming the file, patient and field at fault and what to do, and no traceback;
* leave the output exactly as it was: absent (with no folder created for it) or, when it existed, unchanged.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from reliability_helpers import BILLION_LAUGHS, cli, snapshot

from multimodal.cli.main import main
from multimodal.errors import InputError


class Ctx:
    """Paths a case needs; the pipeline / run fixtures are only built when a case asks for them."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp = tmp_path
        self.out = tmp_path / "new" / "out"  # the output of the failing command; its parent does not exist either

    @cached_property
    def cohort(self) -> Path:
        return self.request.getfixturevalue("cohort_copy")

    @property
    def manifest(self) -> Path:
        return self.cohort / "manifest.yaml"

    @property
    def config(self) -> Path:
        return self.request.getfixturevalue("rel_config")

    @property
    def use_cohort(self) -> list[str]:
        return ["--set", f"data.manifest={self.manifest}"]

    @cached_property
    def pipeline(self) -> Path:
        """A private copy of the trained pipeline."""
        dst = self.tmp / "pipeline"
        shutil.copytree(self.request.getfixturevalue("rel_pipeline"), dst)
        return dst

    @cached_property
    def run(self) -> Path:
        """A private copy of the finished cv run."""
        dst = self.tmp / "run"
        shutil.copytree(self.request.getfixturevalue("rel_run"), dst)
        return dst

    @property
    def preds(self) -> Path:
        return self.out.with_suffix(".parquet")

    # -- editing helpers
    def edit_config(self, fn: Callable[[dict], None]) -> Path:
        data = yaml.safe_load(self.config.read_text())
        fn(data)
        path = self.tmp / "experiment.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def edit_manifest(self, fn: Callable[[dict], None]) -> None:
        data = yaml.safe_load(self.manifest.read_text())
        fn(data)
        self.manifest.write_text(yaml.safe_dump(data, sort_keys=False))

    def slide(self, k: int = 0) -> tuple[str, Path]:
        """(patient id, path) of the k-th slide listed in slides.csv."""
        row = pd.read_csv(self.cohort / "slides.csv").iloc[k]
        return str(row["patient_id"]), self.cohort / str(row["path"])

    def meds_shard(self) -> Path:
        return sorted((self.cohort / "meds" / "data").rglob("*.parquet"))[0]

    def pipe_meta(self, fn: Callable[[dict], None]) -> None:
        p = self.pipeline / "pipeline.json"
        meta = json.loads(p.read_text())
        fn(meta)
        p.write_text(json.dumps(meta))


@dataclass(frozen=True)
class Case:
    """``argv(ctx)`` after ``prepare(ctx)``; ``expect`` are substrings of stderr (file, patient, field, advice);
    ``output(ctx)`` is the path that must stay as it was."""

    prepare: Callable[[Ctx], object] | None
    argv: Callable[[Ctx], list[object]]
    expect: Callable[[Ctx], list[str]] | tuple[str, ...]
    output: Callable[[Ctx], Path] = lambda c: c.out
    usage: bool = False  # an argparse usage error (its usage text is longer)


def _truncate(path: Path, keep: int = 300) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _rewrite_features(path: Path, features: np.ndarray) -> None:
    with h5py.File(path, "r+") as f:
        attrs = dict(f["features"].attrs)
        del f["features"]
        ds = f.create_dataset("features", data=features)
        ds.attrs.update(attrs)


def _nan_slide(c: Ctx) -> None:
    _, path = c.slide(2)
    with h5py.File(path, "r") as f:
        feats = f["features"][:]
    feats[1, 3] = np.nan
    _rewrite_features(path, feats)


def _dim16_slide(c: Ctx) -> None:
    _, path = c.slide(0)
    with h5py.File(path, "r") as f:
        n = f["features"].shape[0]
    _rewrite_features(path, np.random.default_rng(0).normal(size=(n, 16)).astype(np.float32))


def _meds_drop_code(c: Ctx) -> None:
    shard = c.meds_shard()
    pd.read_parquet(shard).drop(columns=["code"]).to_parquet(shard)


def _third_arm(c: Ctx) -> None:
    c.edit_manifest(lambda m: m["patients"].__setitem__("treatment_arms", ["standard", "targeted", "other"]))
    p = c.cohort / "outcomes.parquet"
    df = pd.read_parquet(p)
    df.loc[0, "arm"] = "other"
    df.to_parquet(p, index=False)


def _existing_dir(c: Ctx) -> None:
    c.out.mkdir(parents=True)
    (c.out / "keep.txt").write_text("mine")


def _existing_file(c: Ctx) -> None:
    c.preds.parent.mkdir(parents=True)
    c.preds.write_bytes(b"earlier predictions")


def _unfinished_run(c: Ctx) -> None:
    (c.run / "summary.json").unlink()
    (c.run / "predictions.parquet").unlink()


def _out_under_a_file(c: Ctx) -> None:
    (c.tmp / "afile").write_text("mine")
    c.out = c.tmp / "afile" / "out"


def UNDER_A_FILE(c: Ctx) -> list[str]:  # noqa: N802 - a constant of the catalogue, like PRED
    return ["--out", str(c.tmp / "afile"), "regular file"]


def _out_name_too_long(c: Ctx) -> None:
    c.out = c.tmp / "new" / "sub" / ("x" * 300)  # 300 bytes: more than a file name may have (255)


def _out_is_a_file(c: Ctx) -> None:
    c.out.parent.mkdir(parents=True)
    c.out.write_text("mine")


def _laughs(c: Ctx, name: str, tail: str) -> Path:
    path = c.tmp / name
    path.write_text(BILLION_LAUGHS + tail)
    return path


def _manifest_with_aliases(c: Ctx) -> None:
    c.manifest.write_text(BILLION_LAUGHS + c.manifest.read_text().replace("\nname: ", "\nname: *i\nx: ", 1))


def _pred(c: Ctx, *extra: object) -> list[object]:
    return ["predict", "--pipeline", c.pipeline, "--manifest", c.manifest, "--out", c.preds, *extra]


def _report(c: Ctx, patient: str = "SYN-0001", cmd: str = "report") -> list[object]:
    extra = ["--no-pdf"] if cmd == "report" else []
    return [cmd, "--pipeline", c.pipeline, "--manifest", c.manifest, "--patient", patient, "--out", c.out, *extra]


PRED = {"output": lambda c: c.preds}
OUT_PARENT = {"output": lambda c: c.out.parent}  # --out cases: the file or folder in the way stays as it was
TOO_LONG = ("--out", "300 bytes is too long")

CASES: dict[str, Case] = {
    # ---- experiment config: YAML and --set ---------------------------------------------------------------------------
    "set-typo-did-you-mean": Case(None, lambda c: ["train", c.config, "--out", c.out, "--set", "training.epoks=3"],
                                  ("training.epoks", "did you mean 'epochs'")),
    "set-wrong-type": Case(None, lambda c: ["train", c.config, "--out", c.out, "--set", "training.epochs=abc"],
                           ("training.epochs", "expected an integer", "'abc'")),
    "set-without-equals": Case(None, lambda c: ["cv", c.config, "--out", c.out, "--set", "training"],
                               ("--set", "key.path=value")),
    "set-below-leaf": Case(None, lambda c: ["cv", c.config, "--out", c.out, "--set", "training.epochs.x=1"],
                           ("training.epochs.x",)),
    "set-unknown-adapter-section": Case(
        None, lambda c: ["train", c.config, "--out", c.out, "--set", "adapters.patology.max_patches=3"],
        ("adapters.patology", "did you mean 'pathology'")),
    "yaml-unknown-adapter": Case(
        lambda c: setattr(c, "cfg", c.edit_config(lambda d: d["adapters"].__setitem__("pathalogy", {}))),
        lambda c: ["train", c.cfg, "--out", c.out], lambda c: [str(c.cfg), "adapters.pathalogy",
                                                               "did you mean 'pathology'"]),
    "yaml-unknown-adapter-key": Case(  # was "expected PathologyAdapterConfig | None, got dict" (did-you-mean lost)
        lambda c: setattr(c, "cfg", c.edit_config(lambda d: d["adapters"]["pathology"].__setitem__("max_patchs", 3))),
        lambda c: ["cv", c.cfg, "--out", c.out], lambda c: [str(c.cfg), "adapters.pathology.max_patchs",
                                                            "did you mean 'max_patches'"]),
    "yaml-wrong-type": Case(
        lambda c: setattr(c, "cfg", c.edit_config(lambda d: d["training"].__setitem__("lr", "fast"))),
        lambda c: ["cv", c.cfg, "--out", c.out], lambda c: [str(c.cfg), "training.lr", "expected a number"]),
    "yaml-syntax": Case(lambda c: (c.tmp / "bad.yaml").write_text("training: [1, 2\n"),
                        lambda c: ["train", c.tmp / "bad.yaml", "--out", c.out], ("bad.yaml", "not valid YAML")),
    "train-validation-not-a-run": Case(  # checked before training: no pipeline is written
        None, lambda c: ["train", c.config, "--out", c.out, "--validation", c.tmp / "no_run"],
        lambda c: [str(c.tmp / "no_run"), "validation", "finished `multimodal cv` run"]),
    "train-validation-without-our-model": Case(
        lambda c: (c.tmp / "s.json").write_text(json.dumps({"methods": {"coxnet": {}}})),
        lambda c: ["train", c.config, "--out", c.out, "--validation", c.tmp / "s.json"],
        lambda c: [str(c.tmp / "s.json"), "'multimodal' not in the study summary"]),
    "validate-table-layout-config": Case(  # an experiment config of a TCGA layout names no manifest to check
        lambda c: (c.tmp / "tcga.yaml").write_text("data: {layout: tcga, root: ., cohort: blca}\n"),
        lambda c: ["validate", c.tmp / "tcga.yaml"],
        lambda c: [str(c.tmp / "tcga.yaml"), "data.layout", "experiment config", "not a cohort manifest"]),
    "val-fraction-one": Case(  # 0 is allowed (fixed epochs); 1 would leave nothing to train on
        None, lambda c: ["train", c.config, "--out", c.out, "--set", "training.val_fraction=1"],
        ("training.val_fraction", "[0, 1)", "fixed epochs")),
    "section-check-names-its-field": Case(  # was "field 'adapters.genomics.tokens': field 'set_score': ..."
        None, lambda c: ["train", c.config, "--out", c.out, "--set", "adapters.genomics.set_score=true", "--set",
                         "adapters.genomics.tokens=genes"],
        ("field 'adapters.genomics.set_score'", "set tokens and rna")),
    "yaml-missing": Case(None, lambda c: ["cv", c.tmp / "nope.yaml", "--out", c.out], ("nope.yaml", "not found")),
    "heads-do-not-divide": Case(  # was exit 1 (StrictDataclassClassValidationError) after the adapters were fitted
        None, lambda c: ["cv", c.config, "--out", c.out, "--set", "model.num_heads=3"],
        ("model.d_model", "multiple of model.num_heads=3")),
    "negative-epochs": Case(None, lambda c: ["train", c.config, "--out", c.out, "--set", "training.epochs=-1"],
                            ("training.epochs", ">= 1")),  # was exit 0 with an untrained model
    "zero-batch-size": Case(None, lambda c: ["train", c.config, "--out", c.out, "--set", "training.batch_size=0"],
                            ("training.batch_size", ">= 1")),  # was exit 1 (range() arg 3 must not be zero)
    "unknown-baseline": Case(
        None, lambda c: ["cv", c.config, "--out", c.out, "--set", "evaluation.baselines=[coxph_clinicl]"],
        ("evaluation.baselines[0]", "did you mean 'coxph_clinical'")),
    "unknown-fusion": Case(None, lambda c: ["train", c.config, "--out", c.out, "--set", "model.fusion=bogus"],
                           ("model.fusion", "latent_cross_attention")),
    "ensemble-zero": Case(None, lambda c: ["train", c.config, "--out", c.out, "--set", "model.ensemble=0"],
                          ("model.ensemble", "an integer from 1 to 64", "got 0")),
    "task-typo": Case(None, lambda c: ["cv", c.config, "--out", c.out, "--set", "task=survivl"],
                      ("task", "did you mean 'survival'")),
    "too-many-folds": Case(None, lambda c: ["cv", c.config, "--out", c.out, "--set", "evaluation.folds=100"],
                           ("evaluation.folds", "40 patients")),
    # resource exhaustion from tiny inputs: ~400 bytes of nested YAML aliases ran `train` for minutes and filled memory
    "yaml-aliases-billion-laughs": Case(
        lambda c: setattr(c, "cfg", _laughs(c, "laughs.yaml", "training:\n  lr: *i\n")),
        lambda c: ["train", c.cfg, "--out", c.out], lambda c: [str(c.cfg), "anchors and aliases are not allowed"]),
    "yaml-nested-too-deep": Case(  # was exit 1 (RecursionError)
        lambda c: (c.tmp / "deep.yaml").write_text("seed: " + "[" * 500 + "]" * 500 + "\n"),
        lambda c: ["cv", c.tmp / "deep.yaml", "--out", c.out], ("deep.yaml", "levels deep")),
    "yaml-huge-integer": Case(  # was exit 1 (ValueError: Exceeds the limit (4300 digits))
        lambda c: (c.tmp / "big.yaml").write_text("seed: " + "7" * 5000 + "\n"),
        lambda c: ["train", c.tmp / "big.yaml", "--out", c.out], ("big.yaml", "4300 digits")),
    "set-huge-value-shortened": Case(
        None, lambda c: ["train", c.config, "--out", c.out, "--set", "training.lr=[" + "1," * 50_000 + "]"],
        ("training.lr", "expected a number", "1, 1, ...]")),
    "yaml-huge-key-shortened": Case(
        lambda c: setattr(c, "cfg", c.edit_config(lambda d: d["training"].__setitem__("k" * 100_000, 1))),
        lambda c: ["cv", c.cfg, "--out", c.out], lambda c: [str(c.cfg), "unknown key", "more characters"]),
    # non-finite numbers (.inf, .nan, 1e999) were accepted as settings
    "set-lr-inf": Case(None, lambda c: ["train", c.config, "--out", c.out, "--set", "training.lr=.inf"],
                       ("training.lr", "expected a finite number", "inf")),
    "set-dropout-nan": Case(None, lambda c: ["cv", c.config, "--out", c.out, "--set", "model.dropout=.nan"],
                            ("model.dropout", "expected a finite number", "nan")),
    "set-overflowing-number": Case(
        None, lambda c: ["train", c.config, "--out", c.out, "--set", "training.weight_decay=1e999"],
        ("training.weight_decay", "finite")),
    "yaml-inf": Case(lambda c: setattr(c, "cfg", c.edit_config(lambda d: d["training"].__setitem__("lr", float("inf")))),
                     lambda c: ["train", c.cfg, "--out", c.out], lambda c: [str(c.cfg), "training.lr", "finite"]),
    # ---- cohort data through cv / train / predict / report / explain -------------------------------------------------
    "cv-slide-missing": Case(lambda c: c.slide(0)[1].unlink(), lambda c: ["cv", c.config, "--out", c.out, *c.use_cohort],
                             lambda c: [c.slide(0)[0], c.slide(0)[1].name, "not found", "'path'"]),
    "train-slide-truncated": Case(lambda c: _truncate(c.slide(1)[1]),
                                  lambda c: ["train", c.config, "--out", c.out, *c.use_cohort],
                                  lambda c: [c.slide(1)[0], c.slide(1)[1].name, "truncated"]),
    "predict-slide-nan": Case(_nan_slide, _pred, lambda c: [c.slide(2)[0], c.slide(2)[1].name, "NaN",
                                                             "'features'", "re-extract"], **PRED),
    "predict-other-encoder-dim": Case(_dim16_slide, _pred,
                                      lambda c: [c.slide(0)[0], c.slide(0)[1].name, "dim 16", "dim 8"], **PRED),
    "report-slide-truncated": Case(lambda c: _truncate(c.slide(0)[1]), lambda c: _report(c, c.slide(0)[0]),
                                   lambda c: [c.slide(0)[0], c.slide(0)[1].name, "truncated"]),
    "predict-h5ad-truncated": Case(lambda c: _truncate(c.cohort / "omics" / "expression.h5ad", 1000), _pred,
                                   ("expression.h5ad", "AnnData"), **PRED),
    "train-maf-garbage": Case(lambda c: (c.cohort / "omics" / "mutations.maf").write_text("garbage\n1\n"),
                              lambda c: ["train", c.config, "--out", c.out, *c.use_cohort],
                              ("mutations.maf", "Hugo_Symbol")),
    "predict-meds-no-code": Case(_meds_drop_code, _pred, lambda c: [c.meds_shard().name, "'code'", "MEDS"], **PRED),
    "cv-meds-no-data-dir": Case(lambda c: shutil.rmtree(c.cohort / "meds" / "data"),
                                lambda c: ["cv", c.config, "--out", c.out, *c.use_cohort],
                                ("meds", "data/", "modalities.ehr.path")),
    "explain-meds-corrupt": Case(lambda c: c.meds_shard().write_bytes(b"PAR1garbagePAR1"),
                                 lambda c: _report(c, cmd="explain"), lambda c: [c.meds_shard().name, "parquet"]),
    "predict-manifest-bad-id-column": Case(
        lambda c: c.edit_manifest(lambda m: m["patients"].__setitem__("id", "pid")), _pred,
        ("outcomes.parquet", "'pid'", "available: patient_id"), **PRED),
    "report-manifest-key-typo": Case(
        lambda c: c.edit_manifest(lambda m: m["modalities"]["pathology"].__setitem__("formt", "trident")), _report,
        ("manifest.yaml", "modalities.pathology.formt", "did you mean 'format'")),
    "predict-manifest-lacks-modality": Case(lambda c: c.edit_manifest(lambda m: m["modalities"].pop("genomics")),
                                            _pred, ("modalities.genomics", "no modality 'genomics'"), **PRED),
    "predict-arms-reordered": Case(  # was exit 0: arm codes silently swapped
        lambda c: c.edit_manifest(lambda m: m["patients"].__setitem__("treatment_arms", ["targeted", "standard"])),
        _pred, ("manifest.yaml", "patients.treatment_arms", "['standard', 'targeted']"), **PRED),
    "predict-unknown-arm": Case(_third_arm, _pred, ("patients.treatment_arms", "other"), **PRED),  # was IndexError
    "predict-time-unit": Case(lambda c: c.edit_manifest(lambda m: m["patients"].__setitem__("time_unit", "months")),
                              _pred, ("patients.time_unit", "'months'", "'days'"), **PRED),
    "cv-manifest-yaml-aliases": Case(_manifest_with_aliases, lambda c: ["cv", c.config, "--out", c.out, *c.use_cohort],
                                     ("manifest.yaml", "anchors and aliases are not allowed")),
    "predict-manifest-missing": Case(None, lambda c: ["predict", "--pipeline", c.pipeline, "--manifest",
                                                      c.tmp / "none.yaml", "--out", c.preds],
                                     ("none.yaml", "not found"), **PRED),
    # ---- pipeline folders ----------------------------------------------------------------------------------------------
    "pipeline-json-missing": Case(lambda c: (c.pipeline / "pipeline.json").unlink(), _pred,
                                  ("pipeline.json missing", "multimodal train"), **PRED),
    "pipeline-is-a-run-dir": Case(None, lambda c: ["predict", "--pipeline", c.run, "--manifest", c.manifest, "--out",
                                                   c.preds], ("not a pipeline directory",), **PRED),
    "pipeline-json-truncated": Case(lambda c: _truncate(c.pipeline / "pipeline.json", 40), _report,
                                    ("pipeline.json", "unreadable", "trusted copy")),
    "pipeline-weights-truncated": Case(lambda c: _truncate(c.pipeline / "model" / "model.safetensors", 100),
                                       lambda c: _report(c, cmd="explain"), ("model.safetensors", "checksum mismatch")),
    "pipeline-weights-tampered": Case(lambda c: _flip_byte(c.pipeline / "model" / "model.safetensors"), _pred,
                                      ("model.safetensors", "checksum mismatch"), **PRED),
    "pipeline-checksum-entry-removed": Case(  # was exit 1: SafetensorError after verification was skipped
        lambda c: (c.pipe_meta(lambda m: m["sha256"].pop("model/model.safetensors")),
                   _truncate(c.pipeline / "model" / "model.safetensors", 100)),
        _pred, ("model.safetensors", "not covered by the checksum list"), **PRED),
    "pipeline-checksums-removed": Case(lambda c: c.pipe_meta(lambda m: m.pop("sha256")), _pred,
                                       ("pipeline.json", "no checksum list"), **PRED),  # was exit 0, unverified
    "pipeline-adapter-replaced": Case(lambda c: (c.pipeline / "adapters" / "ehr" / "adapter.json").write_text("{}"),
                                      _pred, ("adapters/ehr/adapter.json", "checksum mismatch"), **PRED),
    "pipeline-format-unknown": Case(lambda c: c.pipe_meta(lambda m: m.__setitem__("format", 99)), _pred,
                                    ("pipeline.json", "'format'", "99"), **PRED),
    "pipeline-weights-deleted": Case(lambda c: (c.pipeline / "model" / "model.safetensors").unlink(), _pred,
                                     ("model.safetensors", "missing"), **PRED),
    # ---- report / explain / cohort-report -----------------------------------------------------------------------------
    "report-unknown-patient": Case(None, lambda c: _report(c, "NOPE-1"), ("'NOPE-1'", "unknown patient", "patient_id")),
    "explain-unknown-patient": Case(None, lambda c: _report(c, "NOPE-2", "explain"), ("'NOPE-2'", "unknown patient")),
    "cohort-report-not-a-run": Case(lambda c: c.cohort, lambda c: ["cohort-report", c.cohort, "--out", c.out],
                                    ("summary.json missing", "multimodal cv")),
    "cohort-report-summary-corrupt": Case(lambda c: _truncate(c.run / "summary.json", 20),
                                          lambda c: ["cohort-report", c.run, "--out", c.out, "--no-pdf"],
                                          ("summary.json", "unreadable JSON")),  # was exit 1 (JSONDecodeError)
    "cohort-report-unfinished-run": Case(_unfinished_run, lambda c: ["cohort-report", c.run, "--out", c.out],
                                         ("summary.json missing",)),
    "cohort-report-predictions-missing": Case(lambda c: (c.run / "predictions.parquet").unlink(),
                                              lambda c: ["cohort-report", c.run, "--out", c.out, "--no-pdf"],
                                              ("predictions.parquet", "missing")),  # was exit 1 (FileNotFoundError)
    "cohort-report-summary-not-a-study": Case(lambda c: (c.run / "summary.json").write_text('{"task": "survival"}'),
                                              lambda c: ["cohort-report", c.run, "--out", c.out, "--no-pdf"],
                                              ("summary.json", "'methods'")),  # was exit 1 (KeyError)
    # ---- CLI arguments ---------------------------------------------------------------------------------------------
    "batch-size-zero": Case(None, lambda c: _pred(c, "--batch-size", "0"), ("--batch-size", ">= 1"), usage=True,
                            **PRED),  # was exit 1 (range() arg 3 must not be zero)
    "unknown-command": Case(None, lambda c: ["trian", "--out", c.out], ("invalid choice", "'trian'"), usage=True),
    "missing-required-argument": Case(None, lambda c: ["predict", "--pipeline", c.tmp, "--out", c.preds],
                                      ("--manifest",), usage=True, **PRED),
    "synth-no-patients": Case(None, lambda c: ["synth", "--out", c.out, "--patients", "0"], ("'patients'", "at least")),
    "synth-sigma-inf": Case(None, lambda c: ["synth", "--out", c.out, "--patches-per-slide-sigma", "inf"],
                            ("'patches_per_slide_sigma'", "finite")),
    "synth-sigma-nan": Case(None, lambda c: ["synth", "--out", c.out, "--patches-per-slide-sigma", "nan"],
                            ("'patches_per_slide_sigma'", "finite")),
    "synth-bad-fraction": Case(None, lambda c: ["synth", "--out", c.out, "--missing-ehr", "1.5"],
                               ("'missing_ehr'", "[0, 1]")),
    "predict-out-is-a-folder": Case(lambda c: c.out.mkdir(parents=True), lambda c: [
        "predict", "--pipeline", c.pipeline, "--manifest", c.manifest, "--out", c.out, "--overwrite"],
        ("is a folder", "preds.parquet")),
    # ---- --out that cannot be written: checked before any work (was exit 1, for train after the whole training) ----
    "train-out-under-a-file": Case(_out_under_a_file, lambda c: ["train", c.config, "--out", c.out], UNDER_A_FILE,
                                   **OUT_PARENT),
    "train-out-checked-first": Case(_out_under_a_file, lambda c: ["train", c.tmp / "none.yaml", "--out", c.out],
                                    UNDER_A_FILE, **OUT_PARENT),  # before the config is even read
    "train-out-is-a-file": Case(_out_is_a_file, lambda c: ["train", c.config, "--out", c.out],
                                ("--out", "exists and is a file")),
    "train-out-name-too-long": Case(_out_name_too_long, lambda c: ["train", c.config, "--out", c.out], TOO_LONG,
                                    **OUT_PARENT),
    "cv-out-under-a-file": Case(_out_under_a_file, lambda c: ["cv", c.config, "--out", c.out], UNDER_A_FILE,
                                **OUT_PARENT),
    "cv-out-is-a-file": Case(_out_is_a_file, lambda c: ["cv", c.config, "--out", c.out],
                             ("--out", "exists and is a file")),
    "predict-out-under-a-file": Case(_out_under_a_file, _pred, UNDER_A_FILE, output=lambda c: c.preds.parent),
    "predict-out-name-too-long": Case(_out_name_too_long, _pred, ("--out", "bytes is too long"),
                                      output=lambda c: c.preds.parent),
    "report-out-name-too-long": Case(_out_name_too_long, _report, TOO_LONG, **OUT_PARENT),
    "explain-out-under-a-file": Case(_out_under_a_file, lambda c: _report(c, cmd="explain"), UNDER_A_FILE,
                                     **OUT_PARENT),
    "cohort-report-out-is-a-file": Case(_out_is_a_file, lambda c: ["cohort-report", c.run, "--out", c.out],
                                        ("--out", "exists and is a file")),
    "synth-out-under-a-file": Case(_out_under_a_file, lambda c: ["synth", "--out", c.out, "--patients", "5"],
                                   UNDER_A_FILE, **OUT_PARENT),
    "synth-out-name-too-long": Case(_out_name_too_long, lambda c: ["synth", "--out", c.out], TOO_LONG, **OUT_PARENT),
    # ---- never overwrite without --overwrite ------------------------------------------------------------------------
    "predict-existing-file": Case(_existing_file, _pred, ("output exists", "--overwrite"), **PRED),
    "train-existing-dir": Case(_existing_dir, lambda c: ["train", c.config, "--out", c.out],
                               ("output exists", "--overwrite")),
    "report-existing-dir": Case(_existing_dir, _report, ("output exists", "--overwrite")),
    "explain-existing-dir": Case(_existing_dir, lambda c: _report(c, cmd="explain"), ("output exists", "--overwrite")),
    "cohort-report-existing-dir": Case(_existing_dir, lambda c: ["cohort-report", c.run, "--out", c.out],
                                       ("output exists", "--overwrite")),
    "synth-existing-dir": Case(_existing_dir, lambda c: ["synth", "--out", c.out, "--patients", "5"],
                               ("output exists", "--overwrite")),
    "cv-existing-non-run-dir": Case(_existing_dir, lambda c: ["cv", c.config, "--out", c.out],
                                    ("not a run directory", "--overwrite")),
    "cv-run-of-other-config": Case(None, lambda c: ["cv", c.config, "--out", c.run, "--set", "seed=7"],
                                   ("different config", "--overwrite"), output=lambda c: c.run),
}


def _expected(case: Case, c: Ctx) -> list[str]:
    return list(case.expect(c)) if callable(case.expect) else list(case.expect)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_with_a_clear_message_and_no_output(name: str, request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    case = CASES[name]
    c = Ctx(request, tmp_path)
    if case.prepare is not None:
        case.prepare(c)
    argv = case.argv(c)
    out = case.output(c)
    before = snapshot(out)
    parent_existed = out.parent.exists()
    rc, _, err = cli(*argv)
    assert rc == 2, f"{name}: exit {rc}, stderr:\n{err}"
    assert "Traceback" not in err
    for needle in _expected(case, c):
        assert needle in err, f"{name}: {needle!r} not in stderr:\n{err}"
    assert len(err.strip().splitlines()) <= (12 if case.usage else 6), f"{name}: message too long:\n{err}"
    assert len(err) <= 2500, f"{name}: message of {len(err)} characters"
    assert snapshot(out) == before, f"{name}: output {out} was changed"
    if not parent_existed:
        assert not out.parent.exists(), f"{name}: a folder was created for the output: {out.parent}"
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [], f"{name}: temporary files left behind: {leftovers}"


def test_catalogue_covers_every_command() -> None:
    assert len(CASES) >= 30
    for cmd in ("cv", "train", "predict", "report", "explain", "cohort-report", "synth"):
        assert sum(name.startswith(cmd) for name in CASES) >= 2, cmd


def test_debug_shows_the_traceback(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """``--debug`` re-raises the error (with its traceback) instead of the one-line message."""
    c = Ctx(request, tmp_path)
    with pytest.raises(InputError, match="did you mean 'epochs'"):
        main(["train", str(c.config), "--out", str(c.out), "--set", "training.epoks=3", "--debug"])
    assert not c.out.exists()


def test_overwrite_replaces_predictions(rel_pipeline: Path, rel_cohort_template: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.parquet"
    out.write_bytes(b"earlier predictions")
    rc, _, err = cli("predict", "--pipeline", rel_pipeline, "--manifest", rel_cohort_template / "manifest.yaml",
                     "--out", out, "--overwrite")
    assert rc == 0, err
    assert len(pd.read_parquet(out)) == 40
    assert [p.name for p in tmp_path.iterdir()] == ["preds.parquet"]  # no temporary file left


def test_genes_absent_from_a_new_cohort_are_reported(rel_pipeline: Path, cohort_copy: Path, tmp_path: Path) -> None:
    """Predicting on expression data that lacks most of the training genes works but says so (was silent)."""
    import anndata as ad

    path = cohort_copy / "omics" / "expression.h5ad"
    a = ad.read_h5ad(path)
    a[:, :10].copy().write_h5ad(path)
    out = tmp_path / "p.parquet"
    rc, _, err = cli("predict", "--pipeline", rel_pipeline, "--manifest", cohort_copy / "manifest.yaml", "--out", out)
    assert rc == 0, err
    assert "genomics:" in err and "absent" in err and "expression.h5ad" in err


def test_train_attaches_a_cv_runs_validation(rel_config: Path, rel_run: Path, tmp_path: Path) -> None:
    """`train --validation RUN` records that run's cross-validated figures in pipeline.json and the model card."""
    out = tmp_path / "pipe"
    rc, _, err = cli("train", rel_config, "--out", out, "--validation", rel_run)
    assert rc == 0, err
    val = json.loads((out / "pipeline.json").read_text())["metadata"]["validation"]
    summary = json.loads((rel_run / "summary.json").read_text())
    assert val["study"] == str(rel_run)
    assert val["c_index (mean over folds)"] == round(summary["methods"]["multimodal"]["mean"]["c_index"], 4)
    assert "c_index 95% CI" in val
    assert "c_index" in (out / "MODEL_CARD.md").read_text()


def test_validate_follows_an_experiment_configs_manifest(rel_config: Path) -> None:
    """`validate CONFIG` checks the cohort the config names (was: every experiment key reported as unknown)."""
    rc, out, err = cli("validate", rel_config)
    assert rc == 0, err
    assert "experiment config: validating its cohort manifest" in out and "VALID" in out
    assert "unknown key" not in out
