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


# ---- helpers of the issue-23 cases (one reader per format: the commands refuse what validate refuses) -------------------
def _slide_h5(c: Ctx, k: int, fn: Callable[[h5py.File], None]) -> None:
    with h5py.File(c.slide(k)[1], "r+") as f:
        fn(f)


def _drop_coords(f: h5py.File) -> None:
    del f["coords"]


def _only_coords(c: Ctx) -> None:
    path = c.slide(0)[1]
    with h5py.File(path, "r") as f:
        coords = f["coords"][:]
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=coords)


def _features_as(c: Ctx, k: int, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    _, path = c.slide(k)
    with h5py.File(path, "r") as f:
        feats = f["features"][:]
    _rewrite_features(path, fn(feats))


def _with_inf(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[-1, 0] = np.inf
    return x


def _bad_coords_shape(c: Ctx) -> None:
    def fn(f: h5py.File) -> None:
        n = f["features"].shape[0]
        attrs = dict(f["coords"].attrs)
        del f["coords"]
        f.create_dataset("coords", data=np.zeros((n, 3), np.int64)).attrs.update(attrs)
    _slide_h5(c, 0, fn)


def _h5ad(c: Ctx) -> Path:
    return c.cohort / "omics" / "expression.h5ad"


def _edit_h5ad(c: Ctx, fn: Callable[..., object]) -> None:
    import anndata as ad

    a = ad.read_h5ad(_h5ad(c))
    a = fn(a) or a
    a.write_h5ad(_h5ad(c))


def _counts_value(value: float) -> Callable[[Ctx], None]:
    def edit(a: object) -> None:
        counts = np.asarray(a.layers["counts"], dtype=np.float64)  # type: ignore[attr-defined]
        counts[2, 1] = value  # SYN-0003, KRAS
        a.layers["counts"] = counts  # type: ignore[attr-defined]
    return lambda c: _edit_h5ad(c, edit)


def _x_inf(a: object) -> None:
    del a.layers["counts"]  # type: ignore[attr-defined]
    x = np.asarray(a.X, dtype=np.float64)  # type: ignore[attr-defined]
    x[2, 1] = np.inf
    a.X = x  # type: ignore[attr-defined]


def _patient_twice(a: object) -> object:
    import anndata as ad

    b = ad.concat([a, a[2:3].copy()])
    b.obs_names = [*a.obs_names, a.obs_names[2]]  # type: ignore[attr-defined]
    return b


def _maf_sample_unlisted(c: Ctx) -> None:
    path = c.cohort / "omics" / "sequenced_samples.txt"
    path.write_text("".join(ln + "\n" for ln in path.read_text().split() if ln != "SYN-0002-01A"))


def _clinical(c: Ctx, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
    path = c.cohort / "clinical.csv"
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = fn(df) if fn(df) is not None else df
    df.to_csv(path, index=False)


def _set_clinical(pid: str, col: str, value: str) -> Callable[[Ctx], None]:
    def fn(df: pd.DataFrame) -> None:
        df.loc[df.patient_id == pid, col] = value
    return lambda c: _clinical(c, fn)


def _meds_rows(c: Ctx, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
    shard = c.meds_shard()
    df = pd.read_parquet(shard)
    df = fn(df) if fn(df) is not None else df
    df.to_parquet(shard, index=False)


def _meds_first_subject(c: Ctx) -> str:
    sid = int(pd.read_parquet(c.meds_shard())["subject_id"].iloc[0])
    out = pd.read_parquet(c.cohort / "outcomes.parquet")
    return str(out.loc[out.subject_id == sid, "patient_id"].iloc[0])


def _meds_inf(df: pd.DataFrame) -> None:
    df.loc[df.index[df.numeric_value.notna()][0], "numeric_value"] = np.inf


def _meds_null_code(df: pd.DataFrame) -> None:
    df.loc[df.index[0], "code"] = None


def _outcome(pid: str, col: str, value: object) -> Callable[[Ctx], None]:
    def fn(c: Ctx) -> None:
        path = c.cohort / "outcomes.parquet"
        df = pd.read_parquet(path)
        if isinstance(value, str) and not pd.api.types.is_object_dtype(df[col]):
            df[col] = df[col].astype(str)  # booleans as "True" / "False": still read as events
        df.loc[df.patient_id == pid, col] = value
        df.to_parquet(path, index=False)
    return fn


def _duplicate_patient(c: Ctx) -> None:
    path = c.cohort / "outcomes.parquet"
    df = pd.read_parquet(path)
    pd.concat([df, df[df.patient_id == "SYN-0004"]], ignore_index=True).to_parquet(path, index=False)


def _train(c: Ctx) -> list[object]:
    return ["train", c.config, "--out", c.out, *c.use_cohort]


def _cv(c: Ctx) -> list[object]:
    return ["cv", c.config, "--out", c.out, *c.use_cohort]


def _slide_named(k: int, *text: str) -> Callable[[Ctx], list[str]]:
    return lambda c: [c.slide(k)[0], c.slide(k)[1].name, *text]


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
    # a diverging training stops with a hint instead of saving NaN weights that predict NaN risks with exit 0
    "train-diverges": Case(None, lambda c: [*_train(c), "--set", "training.lr=1e12", "--set", "training.max_grad_norm=0",
                                            "--set", "training.val_fraction=0"],
                           ("training.lr", "diverged", "lower training.lr")),
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
    # ---- issue 23: one set of rules for validity (class 1) and finite input arrays (class 2) -------------------------
    "predict-slide-without-coords": Case(lambda c: _slide_h5(c, 2, _drop_coords), _pred,
                                         _slide_named(2, "no 'coords'", "'coords'"), **PRED),
    "train-slide-inf": Case(lambda c: _features_as(c, 1, _with_inf), _train, _slide_named(1, "NaN/inf", "'features'")),
    "train-slide-integer-features": Case(lambda c: _features_as(c, 0, lambda x: (x * 100).astype(np.int32)), _train,
                                         _slide_named(0, "float dtype", "'features'")),
    # cv checks every value with validate's rules before the run folder exists (was: exit 2 inside fold 0, leaving
    # folds/fold_0.partial behind)
    "cv-slide-inf": Case(lambda c: _features_as(c, 1, _with_inf), _cv, _slide_named(1, "NaN/inf", "'features'")),
    "cv-slide-integer-features": Case(lambda c: _features_as(c, 0, lambda x: (x * 100).astype(np.int32)), _cv,
                                      _slide_named(0, "float dtype", "'features'")),
    "cv-h5ad-x-inf": Case(lambda c: _edit_h5ad(c, _x_inf), _cv, ("expression.h5ad", "SYN-0003", "X['KRAS']", "infinite")),
    "predict-slide-1d-features": Case(lambda c: _features_as(c, 3, lambda x: x[:, 0]), _pred,
                                      _slide_named(3, "2-D"), **PRED),
    "report-slide-coords-shape": Case(_bad_coords_shape, lambda c: _report(c, c.slide(0)[0]),
                                      _slide_named(0, "coords", "expected (")),
    "explain-slide-only-coords": Case(_only_coords, lambda c: _report(c, c.slide(0)[0], "explain"),
                                      _slide_named(0, "patch-coordinate")),
    "predict-h5ad-counts-inf": Case(_counts_value(np.inf), _pred,
                                    ("expression.h5ad", "SYN-0003", "layers.counts", "'KRAS'", "finite"), **PRED),
    "train-h5ad-counts-negative": Case(_counts_value(-3.0), _train, ("expression.h5ad", "layers.counts", "negative")),
    "predict-h5ad-x-inf": Case(lambda c: _edit_h5ad(c, _x_inf), _pred, ("expression.h5ad", "SYN-0003", "X['KRAS']",
                                                                         "infinite"), **PRED),
    "predict-h5ad-patient-twice": Case(lambda c: _edit_h5ad(c, _patient_twice), _pred,
                                       ("expression.h5ad", "SYN-0003", "obs_names", "one expression profile"), **PRED),
    "report-h5ad-not-anndata": Case(lambda c: h5py.File(_h5ad(c), "w").close(), _report, ("expression.h5ad", "AnnData")),
    "train-maf-sample-not-listed": Case(_maf_sample_unlisted, _train,
                                        ("mutations.maf", "SYN-0002-01A", "mutation_samples", "sequenced-sample list")),
    "predict-clinical-inf": Case(_set_clinical("SYN-0005", "age", "inf"), _pred,
                                 ("clinical.csv", "SYN-0005", "age", "infinite"), **PRED),
    "train-clinical-non-numeric": Case(_set_clinical("SYN-0006", "age", "old"), _train,
                                       ("clinical.csv", "SYN-0006", "age", "non-numeric", "'old'")),
    "cv-clinical-duplicate-patient": Case(lambda c: _clinical(c, lambda df: pd.concat([df, df.iloc[[6]]])), _cv,
                                          ("clinical.csv", "SYN-0007", "patient_id", "duplicate patient id")),
    "predict-clinical-no-id-column": Case(
        lambda c: c.edit_manifest(lambda m: m["modalities"]["clinical"].__setitem__("id", "pid")), _pred,
        ("clinical.csv", "'pid'", "available: patient_id"), **PRED),
    "predict-meds-inf-value": Case(lambda c: (setattr(c, "who", _meds_first_subject(c)), _meds_rows(c, _meds_inf)),
                                   _pred, lambda c: [c.meds_shard().name, c.who, "numeric_value", "infinite"], **PRED),
    "train-meds-null-code": Case(lambda c: (setattr(c, "who", _meds_first_subject(c)), _meds_rows(c, _meds_null_code)),
                                 _train, lambda c: [c.meds_shard().name, c.who, "'code'", "null code"]),
    "cv-meds-subject-id-text": Case(lambda c: _meds_rows(c, lambda df: df.assign(subject_id=df.subject_id.astype(str))),
                                    _cv, lambda c: [c.meds_shard().name, "subject_id", "int64"]),
    "report-meds-time-zone": Case(lambda c: _meds_rows(c, lambda df: df.assign(time=df.time.dt.tz_localize("UTC"))),
                                  _report, lambda c: [c.meds_shard().name, "'time'", "timestamp"]),
    "train-time-inf": Case(_outcome("SYN-0008", "time", np.inf), _train,
                           ("outcomes.parquet", "SYN-0008", "time", "infinite")),
    "cv-time-negative": Case(_outcome("SYN-0009", "time", -4.0), _cv,
                             ("outcomes.parquet", "SYN-0009", "time", "negative time")),
    "train-event-not-binary": Case(_outcome("SYN-0010", "event", "maybe"), _train,
                                   ("outcomes.parquet", "SYN-0010", "event", "0/1", "'maybe'")),
    "predict-duplicate-patient": Case(_duplicate_patient, _pred,
                                      ("outcomes.parquet", "SYN-0004", "patient_id", "duplicate patient id"), **PRED),
    "cv-unknown-arm-value": Case(_outcome("SYN-0011", "arm", "placebo"), _cv,
                                 ("outcomes.parquet", "SYN-0011", "arm", "unknown treatment arm 'placebo'")),
    "train-response-not-a-class": Case(_outcome("SYN-0012", "response", 5), _train,
                                       ("outcomes.parquet", "SYN-0012", "response", "not a valid class")),
    "predict-slide-table-no-path-column": Case(
        lambda c: c.edit_manifest(lambda m: m["modalities"]["pathology"].__setitem__("path_column", "file")), _pred,
        ("slides.csv", "'file'", "available: patient_id, slide_id, path"), **PRED),
    "explain-manifest-unknown-modality-type": Case(
        lambda c: c.edit_manifest(lambda m: m["modalities"]["ehr"].__setitem__("type", "med")),
        lambda c: _report(c, cmd="explain"), ("manifest.yaml", "modalities.ehr.type", "did you mean 'meds'")),
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
    assert len(CASES) >= 120  # issue 23
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
