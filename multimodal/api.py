"""The high-level Python API that the CLI commands call (each a few lines)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from multimodal import run_folder
from multimodal.cohort_explain import explain_cohort as explain_cohort  # re-exported API
from multimodal.cohorts.cohort import Cohort
from multimodal.errors import ConfigError, InputError, MultimodalError, Problem
from multimodal.io import atomic_path
from multimodal.run_folder import check_run_dir, read_study_summary
from multimodal.study_frame import StudyResult as StudyResult  # re-exported API
from multimodal.study_frame import study_frame as study_frame  # re-exported API

if TYPE_CHECKING:
    from multimodal.experiment import ExperimentConfig
    from multimodal.pipeline import Pipeline


def train_pipeline(
    config: str | Path, out: str | Path, *, overrides: Iterable[str] = (), overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Fit adapters + model on every training patient of the config's cohort (inner validation for early stopping)
    and save the pipeline to ``out``."""
    from multimodal.cohorts.splits import validation_split
    from multimodal.config import to_dict
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.explain.reference import attribution_reference
    from multimodal.pipeline import Pipeline
    from multimodal.report.model_card import write_model_card

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError("output exists and is not empty", file=out, hint="choose a new --out or pass --overwrite")
    cfg = load_experiment(config, overrides)
    check_experiment(cfg, config)
    cohort = load_cohort(cfg.data)
    ids = cohort.patient_ids
    if cfg.task == "response":
        ids = [p for p in ids if not _isna(cohort.patients.loc[p, "response"])]
        strat = cohort.patients.loc[ids, "response"].astype(int).to_numpy()
    else:
        strat = cohort.patients.loc[ids, "event"].astype(int).to_numpy()
    tr, val = validation_split(ids, strat, cfg.training.val_fraction, cfg.seed)
    if progress:
        progress(f"training on {len(tr)} patients, early stopping on {len(val)}" if val else
                 f"training on {len(tr)} patients for {cfg.training.epochs} epochs (training.val_fraction 0: no early "
                 "stopping)")
    pipe, fit = Pipeline.fit(cohort, tr, val_ids=val, adapters=make_adapters(cfg), model_config=cfg.model,
                             training=cfg.training, task=cfg.task, seed=cfg.seed, experiment=to_dict(cfg),
                             attribution_reference=attribution_reference)
    from multimodal.provenance import run_record

    pipe.metadata["provenance"] = run_record(cfg, cohort)
    with _main_process_writes() as writes:
        if writes:
            pipe.save_pretrained(out, overwrite=overwrite, model_card=write_model_card)
    return out


@contextlib.contextmanager
def _main_process_writes() -> Iterator[bool]:
    """Whether this process writes the command's output: under ``accelerate launch`` / ``torchrun`` every process
    runs the same command (training and prediction are collective) but only the main process may write, or the
    processes race on the same files and folders.

    Every process waits for the others on entry (all have checked the output before it is written) and on exit (the
    output exists for every process on return). In a plain single process this yields True and never waits.
    """
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    yield state.is_main_process
    state.wait_for_everyone()


def _isna(v: object) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


#: ``--out`` suffix -> file format of the predictions.
PREDICTION_FORMATS = {".parquet": "parquet", ".csv": "csv"}
#: Key of the parquet key-value metadata (and the whole of the CSV's ``<name>.csv.json`` sidecar).
PREDICTIONS_METADATA_KEY = "multimodal"


def prediction_format(out: str | Path) -> str:
    """"parquet" or "csv" from the suffix of ``out``; InputError naming ``--out`` otherwise."""
    fmt = PREDICTION_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise InputError(f"unsupported suffix {Path(out).suffix or '(none)'!r}: the format follows the suffix",
                         file=out, field="--out", hint="name the file preds.parquet or preds.csv")
    return fmt


def sidecar_path(out: str | Path) -> Path:
    """Where the metadata of a CSV predictions file go: ``<name>.csv.json`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def predict_to_file(pipeline: str | Path, manifest: str | Path, out: str | Path, *, times: Iterable[float] = (),
                    batch_size: int = 8, chunk: int = 512, overwrite: bool = False) -> int:
    """Stream the prediction table for every patient of ``manifest`` into ``out``, chunk by chunk (flat memory).

    The patients need no outcome (the manifest is loaded for scoring). The format follows the suffix: ``.parquet``
    (the metadata in the file's key-value metadata under ``"multimodal"``) or ``.csv`` (the metadata in the sidecar
    ``<name>.csv.json``). Columns: :meth:`multimodal.pipeline.Pipeline.predict_table`; ``times`` (in the cohort's
    time unit) add ``survival_t<T>`` / ``cumhaz_t<T>``. Returns the number of patients.
    """
    from multimodal.io import write_json_atomic
    from multimodal.pipeline import check_times

    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError("output exists", file=out, hint="choose a new --out or pass --overwrite")
    if out.is_dir():
        raise InputError("output is a folder; predictions go to a parquet or CSV file", file=out,
                         hint="give a file name, e.g. --out preds.parquet")
    fmt = prediction_format(out)
    side = sidecar_path(out) if fmt == "csv" else None
    if side is not None and side.exists() and not overwrite:
        raise InputError("output exists (the metadata of a CSV predictions file)", file=side,
                         hint="choose a new --out or pass --overwrite")
    for name, v in (("--batch-size", batch_size), ("chunk", chunk)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"expected a positive integer, got {v!r}", field=name)
    pipe = load_pipeline(pipeline)
    grid = check_times(list(times), pipe)
    cohort = Cohort.from_manifest(manifest, outcomes="optional")
    check_compatible(pipe, cohort, manifest)
    info = predictions_metadata(pipe, pipeline, grid)
    ids = cohort.patient_ids
    writer = None
    columns: list[str] = []
    with _main_process_writes() as writes, (atomic_path(out) if writes else contextlib.nullcontext()) as tmp:
        try:
            for s in range(0, len(ids), chunk):
                # collective: every process
                df = pipe.predict_table(cohort, ids[s : s + chunk], times=grid, batch_size=batch_size)
                if tmp is None:
                    continue
                if not columns:
                    columns = list(df.columns)
                    info["columns"] = describe_prediction_columns(columns, info)
                if fmt == "csv":
                    df.to_csv(tmp, mode="a" if s else "w", header=not s, index=False)
                    continue
                table = pa.Table.from_pandas(df, preserve_index=False)
                meta = {**(table.schema.metadata or {}), PREDICTIONS_METADATA_KEY.encode(): json.dumps(info).encode()}
                table = table.replace_schema_metadata(meta)
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp), table.schema)
                writer.write_table(table)
            if tmp is not None and not ids:  # no patient: an empty file, still with its metadata
                info["columns"] = {}
                if fmt == "csv":
                    tmp.write_text("")
                else:
                    pq.write_table(pa.table({"patient_id": pa.array([], pa.string())}).replace_schema_metadata(
                        {PREDICTIONS_METADATA_KEY.encode(): json.dumps(info).encode()}), str(tmp))
        finally:
            if writer is not None:
                writer.close()
        if tmp is not None and side is not None:
            write_json_atomic(side, info)
    return len(ids)


def predict_to_parquet(pipeline: str | Path, manifest: str | Path, out: str | Path, *, batch_size: int = 8,
                       chunk: int = 512, overwrite: bool = False, times: Iterable[float] = ()) -> int:
    """:func:`predict_to_file` (kept for callers of the earlier name; the format follows the suffix of ``out``)."""
    return predict_to_file(pipeline, manifest, out, times=times, batch_size=batch_size, chunk=chunk,
                           overwrite=overwrite)


def pipeline_id(directory: str | Path) -> str:
    """A short id of a saved pipeline: sha256 over its checksum list (every weight and adapter file), 16 hex digits."""
    import hashlib

    from multimodal.pipeline import read_pipeline_json

    sums = read_pipeline_json(Path(directory)).get("sha256") or {}
    text = "\n".join(f"{k} {v}" for k, v in sorted(sums.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def predictions_metadata(pipe: Pipeline, directory: str | Path, times: Iterable[float] = ()) -> dict[str, Any]:
    """What a predictions file says about itself: the pipeline (folder and id), time unit, bin edges, where the last
    bin's survival is read, arm names, the requested times and what was recalibrated."""
    from multimodal import __version__
    from multimodal.calibration import recalibrated_parts
    from multimodal.pipeline import last_bin_time

    cfg = pipe.model.config
    meta = pipe.metadata
    return {
        "kind": "multimodal predictions",
        "package_version": __version__,
        "pipeline": str(Path(directory).resolve()),
        "pipeline_id": pipeline_id(directory),
        "cohort_trained_on": meta.get("cohort"),
        "task": meta.get("task"),
        "time_unit": meta.get("time_unit", cfg.time_unit),
        "survival": cfg.survival,
        "bin_edges": [float(e) for e in (cfg.bin_edges or [])],
        "last_bin_time": last_bin_time(meta),
        "treatment_arms": [str(a) for a in meta.get("treatment_arms") or []],
        "times": [float(t) for t in times],
        "recalibrated": recalibrated_parts(meta.get("recalibration")),
    }


def describe_prediction_columns(columns: Iterable[str], info: dict[str, Any]) -> dict[str, str]:
    """Column -> a one-line description (for the file's metadata), by the names of :func:`predict_to_file`."""
    from multimodal.pipeline import time_label

    unit = info.get("time_unit", "")
    arms = list(info.get("treatment_arms") or [])
    edges = list(info.get("bin_edges") or [])
    ends = [*edges, info.get("last_bin_time")]
    fixed = {"patient_id": "patient id as in the manifest's patient table",
             "risk": "risk score (higher = worse; a ranking, not a probability), under the patient's own arm",
             "response_prob": "probability of response (class 1), under the patient's own arm"}
    per_time = {f"t{time_label(t)}": f"{t:g} {unit}" for t in info.get("times") or []}
    out: dict[str, str] = {}
    for c in columns:
        text = fixed.get(c)
        if text is None and c.startswith("surv_") and c[5:].isdigit():
            k = int(c[5:])
            end = ends[k] if k < len(ends) else None
            if k < len(edges):
                text = f"S at the end of survival bin {k} (t = {end:.6g} {unit}), under the patient's own arm"
            else:
                at = f" (t = {end:.6g} {unit})" if end is not None else ""
                text = f"S of the last (open) survival bin, read at the largest training time{at}, under the " \
                       "patient's own arm"
        for stem, what in (("risk_arm_", "risk score"), ("response_prob_arm_", "probability of response")):
            if text is None and c.startswith(stem) and c[len(stem):].isdigit():
                a = int(c[len(stem):])
                text = f"{what} under arm {a} ({arms[a] if a < len(arms) else '?'})"
        if text is None and c.startswith("response_prob_") and c[14:].isdigit():
            text = f"probability of response class {c[14:]}"
        if text is None:
            text = _describe_named(c, arms, per_time)
        out[c] = text or ""
    return out


def _describe_named(c: str, arms: list[str], per_time: dict[str, str]) -> str | None:
    """Descriptions of the columns named by time and arm (survival_t<T>[_<arm>], risk_<arm>, ..._diff_...)."""
    if len(arms) == 2:
        diff = f"_diff_{arms[1]}_vs_{arms[0]}"
        if c.endswith(diff):
            base = _describe_named(c[: -len(diff)] + f"_{arms[1]}", arms, per_time)
            return None if base is None else f"{base.rsplit(' under arm', 1)[0]}: arm {arms[1]} minus arm {arms[0]}"
    for stem, what in (("survival_", "survival probability S(t) at t = "),
                       ("cumhaz_", "cumulative hazard -log S(t) at t = ")):
        for tl, tt in per_time.items():
            head = f"{stem}{tl}"
            if c == head:
                return f"{what}{tt}, under the patient's own arm"
            for arm in arms:
                if c == f"{head}_{arm}":
                    return f"{what}{tt} under arm {arm}"
    for stem, what in (("risk_", "risk score"), ("response_prob_", "probability of response")):
        for arm in arms:
            if c == f"{stem}{arm}":
                return f"{what} under arm {arm}"
    return None


def attach_validation(pipeline_dir: str | Path, summary_json: str | Path, method: str = "multimodal") -> None:
    """Record a cv study's performance of ``method`` (means, CIs, folds) in a saved pipeline's metadata.

    ``summary_json`` is a cv run folder or its ``summary.json``. Rewrites ``pipeline.json`` atomically (sealed again:
    the validation figures are covered by its own checksum) and the model card.
    """
    from multimodal.io import check_sealed_json
    from multimodal.pipeline import PIPELINE_JSON_SHA256, Pipeline, read_pipeline_json, write_pipeline_json
    from multimodal.report.model_card import write_model_card

    d = Path(pipeline_dir)
    summary_file, summary = read_study_summary(summary_json, method)
    m = summary["methods"][method]
    val = {"study": str(summary_file.parent), "n_folds": summary.get("n_folds"), "protocol": summary.get("protocol")}
    for k, v in m.get("mean", {}).items():
        if v is not None:
            val[f"{k} (mean over folds)"] = round(float(v), 4)
    for k, v in m.get("ci95", {}).items():
        if v and v[0] is not None:
            val[f"{k} 95% CI"] = [round(float(v[0]), 4), round(float(v[1]), 4)]
    if summary.get("oracle"):
        val["oracle c_index"] = summary["oracle"].get("c_index")
    meta = read_pipeline_json(d)
    check_sealed_json(meta, PIPELINE_JSON_SHA256, d / "pipeline.json")  # never re-seal an edited pipeline.json
    meta["metadata"]["validation"] = val
    with _main_process_writes() as writes:
        if writes:
            write_pipeline_json(d, meta)
            pipe = Pipeline.from_pretrained(d)
            write_model_card(d, pipe)


def report_patient(pipeline_dir: str | Path, manifest: str | Path, patient_id: str, out_dir: str | Path, *,
                   overwrite: bool = False, pdf: bool = True, result_only: bool = False) -> dict[str, Path]:
    """Explain ``patient_id`` with a saved pipeline and write ``report.html`` / ``report.pdf`` / ``risk_result.json``.

    The manifest is loaded for scoring: its patient table may lack outcome columns or leave them empty.

    The output folder is named by the caller; patient ids never become file names.
    """
    from multimodal.explain.risk import explain_patient
    from multimodal.io import atomic_dir, write_text_atomic
    from multimodal.report.patient import write_patient_report

    out = Path(out_dir)
    _refuse_existing_dir(out, overwrite)
    pipe = load_pipeline(pipeline_dir)
    cohort = Cohort.from_manifest(manifest, outcomes="optional")  # the patient needs no outcome
    check_compatible(pipe, cohort, manifest)
    result = explain_patient(pipe, cohort, str(patient_id))
    with _main_process_writes() as writes:
        if writes:
            with atomic_dir(out, overwrite=overwrite) as tmp:
                if result_only:
                    write_text_atomic(tmp / "risk_result.json", result.to_json())
                else:
                    write_patient_report(result, tmp, pdf=pdf)
    names = {"json": "risk_result.json"} if result_only else {"html": "report.html", "json": "risk_result.json",
                                                               **({"pdf": "report.pdf"} if pdf else {})}
    return {k: out / v for k, v in names.items()}


def cohort_report(run_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False, pdf: bool = True) -> dict[str, Path]:
    """Cohort report of a ``multimodal cv`` run: KM by predicted risk group, per-fold metrics vs baselines,
    calibration, td-AUC over time."""
    from multimodal.io import atomic_dir
    from multimodal.report.cohort import write_cohort_report

    out = Path(out_dir)
    _refuse_existing_dir(out, overwrite)
    check_run_dir(Path(run_dir))
    with _main_process_writes() as writes:
        if writes:
            with atomic_dir(out, overwrite=overwrite) as tmp:
                write_cohort_report(Path(run_dir), tmp, pdf=pdf)
    return {"html": out / "cohort_report.html", **({"pdf": out / "cohort_report.pdf"} if pdf else {})}


# ---- preflight checks: reject bad input before anything is computed or written --------------------------------------
def check_experiment(cfg: ExperimentConfig, file: str | Path | None = None) -> None:
    """Reject values that training, the model or the study would only reject late (after minutes of work), with a
    raw exception, or never (``training.epochs=-1`` trained nothing). Every problem is reported at once."""
    import difflib

    from multimodal.baselines import list_baselines
    from multimodal.registry import list_fusion
    from multimodal.stack import STACK_WEIGHTS, STACKS

    t, m, e = cfg.training, cfg.model, cfg.evaluation
    problems: list[Problem] = []

    def need(ok: bool, field: str, expected: str, actual: Any) -> None:
        if not ok:
            problems.append(Problem(f"expected {expected}, got {actual!r}", file=None if file is None else str(file),
                                    field=field))

    for name in ("epochs", "batch_size", "grad_accum", "patience", "eval_batch_size", "bucket_factor", "average_epochs"):
        need(getattr(t, name) >= 1, f"training.{name}", "an integer >= 1", getattr(t, name))
    for name in ("checkpoint_every", "num_workers"):
        need(getattr(t, name) >= 0, f"training.{name}", "an integer >= 0", getattr(t, name))
    need(t.lr > 0, "training.lr", "a number > 0", t.lr)
    need(t.weight_decay >= 0, "training.weight_decay", "a number >= 0", t.weight_decay)
    need(t.max_grad_norm >= 0, "training.max_grad_norm", "a number >= 0 (0 = no clipping)", t.max_grad_norm)
    need(0 <= t.warmup_frac <= 1, "training.warmup_frac", "a fraction in [0, 1]", t.warmup_frac)
    need(0 <= t.val_fraction < 1, "training.val_fraction", "a fraction in [0, 1) (0 = fixed epochs, no early stopping)",
         t.val_fraction)
    for name in ("d_model", "depth", "num_heads", "num_latents", "slot_hidden", "ffn_mult", "num_bins"):
        need(getattr(m, name) >= 1, f"model.{name}", "an integer >= 1", getattr(m, name))
    need(m.cross_layers >= 0, "model.cross_layers", "an integer >= 0", m.cross_layers)
    need(1 <= m.ensemble <= 64, "model.ensemble", "an integer from 1 to 64 (members of a deep ensemble)", m.ensemble)
    if m.num_heads >= 1 and m.d_model >= 1:
        need(m.d_model % m.num_heads == 0, "model.d_model", f"a multiple of model.num_heads={m.num_heads}", m.d_model)
    need(m.cross_queries in ("latents", "all"), "model.cross_queries", "'latents' or 'all'", m.cross_queries)
    need(m.survival in ("discrete", "cox"), "model.survival", "'discrete' or 'cox'", m.survival)
    need(0 <= m.dropout < 1, "model.dropout", "a fraction in [0, 1)", m.dropout)
    need(0 <= m.modality_dropout < 1, "model.modality_dropout", "a fraction in [0, 1)", m.modality_dropout)
    need(0 <= m.alpha <= 1, "model.alpha", "a fraction in [0, 1]", m.alpha)
    need(0 <= m.response_trunk_grad <= 1, "model.response_trunk_grad", "a share in [0, 1]", m.response_trunk_grad)
    need(m.wide_l2 >= 0, "model.wide_l2", "a number >= 0", m.wide_l2)
    need(m.wide_lr_mult > 0, "model.wide_lr_mult", "a number > 0", m.wide_lr_mult)
    need(m.wide_init in ("none", "cox"), "model.wide_init", "'none' or 'cox'", m.wide_init)
    need(m.wide_init == "none" or m.wide, "model.wide_init", "'none' unless model.wide is true", m.wide_init)
    need(m.stack in STACKS, "model.stack", "one of " + ", ".join(repr(v) for v in STACKS), m.stack)
    need(m.stack == "none" or m.wide_init == "none", "model.stack",
         "'none' when model.wide_init is 'cox' (one fitted linear start per model)", m.stack)
    need(m.stack_weights in STACK_WEIGHTS, "model.stack_weights", "one of " + ", ".join(map(repr, STACK_WEIGHTS)),
         m.stack_weights)
    need(m.survival_weight >= 0 and m.response_weight >= 0, "model.survival_weight",
         "non-negative loss weights", (m.survival_weight, m.response_weight))
    fusions = list_fusion()
    if m.fusion not in fusions:
        close = difflib.get_close_matches(m.fusion, fusions, n=1)
        problems.append(Problem(f"unknown fusion block {m.fusion!r}", file=None if file is None else str(file),
                                field="model.fusion", hint=(f"did you mean {close[0]!r}? " if close else "")
                                + f"available: {', '.join(fusions)}"))
    need(e.folds >= 2, "evaluation.folds", "an integer >= 2", e.folds)
    need(e.max_folds >= 0, "evaluation.max_folds", "an integer >= 0 (0 = all folds)", e.max_folds)
    need(e.bootstrap >= 0, "evaluation.bootstrap", "an integer >= 0", e.bootstrap)
    need(all(h > 0 for h in e.horizons), "evaluation.horizons", "positive times", list(e.horizons))
    need(e.calibration_horizon is None or e.calibration_horizon > 0, "evaluation.calibration_horizon",
         "a positive time", e.calibration_horizon)
    kind = "response" if cfg.task == "response" else "survival"
    valid = list_baselines(kind)
    for i, b in enumerate(e.baselines):
        if b not in valid:
            close = difflib.get_close_matches(b, valid, n=1)
            problems.append(Problem(f"unknown {kind} baseline {b!r}", file=None if file is None else str(file),
                                    field=f"evaluation.baselines[{i}]",
                                    hint=(f"did you mean {close[0]!r}? " if close else "") + f"available for task "
                                    f"{cfg.task!r}: {', '.join(valid)}"))
    if problems:
        raise ConfigError(problems=problems)


def _refuse_existing_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is a file; this command writes a folder", file=out,
                         hint="choose a new --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError("output exists and is not empty", file=out, hint="choose a new --out or pass --overwrite")


def run_cv(config: str | Path, out: str | Path, *, overrides: Iterable[str] = (), overwrite: bool = False,
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``multimodal cv``: load and check the experiment, its cohort and folds *before* the run folder is touched, then
    hold the folder's lock (:func:`multimodal.run_folder.run_lock`: a second run on it fails at once) and run the
    study (resuming finished folds when the folder holds an unfinished run of the same config and inputs).

    ``overwrite`` starts the run over: the previous run's files are removed first (a different config must never
    reuse the folds of another one).
    """
    import yaml

    from multimodal.config import to_dict
    from multimodal.experiment import load_experiment
    from multimodal.provenance import input_fingerprints
    from multimodal.study import Study

    out = Path(out)
    cfg = load_experiment(config, overrides)
    check_experiment(cfg, config)
    cfg_yaml = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    with run_folder.run_lock(out):  # a second run on this folder fails here, at once; nothing is left on failure
        resuming = run_folder.check_resumable(out, cfg_yaml, overwrite=overwrite)
        study = Study(cfg, config_file=config)
        study.check_inputs()  # cohort and folds: bad input fails before the previous run's files are removed
        if resuming:
            run_folder.check_inputs_unchanged(out, input_fingerprints(study.cohort, config=cfg))
            run_folder.check_code_unchanged(out)
        if overwrite and out.is_dir():
            with _main_process_writes() as writes:
                if writes:
                    run_folder.remove_run_artifacts(out)
        return study.run(out, overwrite=overwrite, progress=progress)


def load_pipeline(directory: str | Path) -> Pipeline:
    """:meth:`Pipeline.from_pretrained` with every check on (:func:`multimodal.pipeline.verify_pipeline_files`: the
    checksum list covers every file the loader reads, pipeline.json's own content is sealed, every file matches), and
    any other failure while loading a clear error naming the folder."""
    from multimodal import __version__
    from multimodal.explain.reference import check_reference
    from multimodal.pipeline import Pipeline, read_pipeline_json

    d = Path(directory)
    meta = read_pipeline_json(d)
    try:
        pipe = Pipeline.from_pretrained(d, verify=True)
    except MultimodalError:
        raise
    except Exception as exc:  # checksums matched, so the files are as written: a version or format problem
        raise InputError(f"cannot load the pipeline: {type(exc).__name__}: {exc}", file=d,
                         hint=f"it was written by precision-multimodal {meta.get('package_version')} / torch "
                         f"{meta.get('torch_version')}; re-train it with this version ({__version__})") from exc
    check_reference(pipe.metadata, where=str(d / "pipeline.json"))  # refuse a malformed reference now, not at report
    return pipe


def check_compatible(pipe: Pipeline, cohort: Cohort, manifest: str | Path) -> None:
    """The cohort must encode what the model conditions on the way the training cohort did."""
    want = [str(a) for a in pipe.metadata.get("treatment_arms") or []]
    have = [str(a) for a in cohort.treatment_arms]
    if want and have and (len(have) > len(want) or have != want[: len(have)]):
        raise InputError(f"treatment arms {have} do not match the pipeline's {want} (arm codes are positions in "
                         "this list, so a different order silently swaps arms)", file=manifest,
                         field="patients.treatment_arms",
                         hint=f"list the arms as the pipeline does: {want}")
    unit = pipe.metadata.get("time_unit")
    if unit and cohort.time_unit != unit:
        raise InputError(f"time unit {cohort.time_unit!r} differs from the pipeline's {unit!r}", file=manifest,
                         field="patients.time_unit", hint=f"give times in {unit} (survival bins are in {unit})")
