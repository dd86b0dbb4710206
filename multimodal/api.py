"""The high-level Python API that the CLI commands call (each a few lines)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from multimodal.cohorts.cohort import Cohort
from multimodal.errors import InputError
from multimodal.io import atomic_path


def train_pipeline(
    config: str | Path, out: str | Path, *, overrides: Iterable[str] = (), overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Fit adapters + model on every training patient of the config's cohort (inner validation for early stopping)
    and save the pipeline to ``out``."""
    from multimodal.cohorts.splits import inner_split
    from multimodal.config import to_dict
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.pipeline import Pipeline

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError("output exists and is not empty", file=out, hint="choose a new --out or pass --overwrite")
    cfg = load_experiment(config, overrides)
    cohort = load_cohort(cfg.data)
    ids = cohort.patient_ids
    if cfg.task == "response":
        ids = [p for p in ids if not _isna(cohort.patients.loc[p, "response"])]
        strat = cohort.patients.loc[ids, "response"].astype(int).to_numpy()
    else:
        strat = cohort.patients.loc[ids, "event"].astype(int).to_numpy()
    tr, val = inner_split(ids, strat, cfg.training.val_fraction, cfg.seed)
    if progress:
        progress(f"training on {len(tr)} patients, early stopping on {len(val)}")
    pipe, fit = Pipeline.fit(cohort, tr, val_ids=val, adapters=make_adapters(cfg), model_config=cfg.model,
                             training=cfg.training, task=cfg.task, seed=cfg.seed, experiment=to_dict(cfg))
    from multimodal.provenance import run_record

    pipe.metadata["provenance"] = run_record(cfg, cohort)
    pipe.save_pretrained(out, overwrite=overwrite)
    return out


def _isna(v: object) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


def predict_to_parquet(pipeline: str | Path, manifest: str | Path, out: str | Path, *, batch_size: int = 8,
                       chunk: int = 512, overwrite: bool = False) -> int:
    """Stream predictions for every patient of ``manifest`` into ``out`` (parquet), chunk by chunk (flat memory)."""
    from multimodal.pipeline import Pipeline

    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError("output exists", file=out, hint="choose a new --out or pass --overwrite")
    pipe = Pipeline.from_pretrained(pipeline)
    cohort = Cohort.from_manifest(manifest)
    ids = cohort.patient_ids
    writer = None
    with atomic_path(out) as tmp:
        try:
            for s in range(0, len(ids), chunk):
                df = pipe.predict(cohort, ids[s : s + chunk], batch_size=batch_size)
                table = pa.Table.from_pandas(df, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp), table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return len(ids)


def attach_validation(pipeline_dir: str | Path, summary_json: str | Path, method: str = "multimodal") -> None:
    """Record a cv study's performance of ``method`` (means, CIs, folds) in a saved pipeline's metadata.

    Rewrites ``pipeline.json`` atomically (its own checksum list is unaffected) and the model card.
    """
    import json

    from multimodal.io import write_json_atomic
    from multimodal.model_card import write_model_card
    from multimodal.pipeline import Pipeline

    d = Path(pipeline_dir)
    summary = json.loads(Path(summary_json).read_text())
    m = summary["methods"].get(method)
    if m is None:
        raise InputError(f"method {method!r} not in the study summary", file=summary_json, field="methods")
    val = {"study": str(Path(summary_json).parent), "n_folds": summary.get("n_folds"), "protocol": summary.get("protocol")}
    for k, v in m["mean"].items():
        if v is not None:
            val[f"{k} (mean over folds)"] = round(float(v), 4)
    for k, v in m["ci95"].items():
        if v and v[0] is not None:
            val[f"{k} 95% CI"] = [round(float(v[0]), 4), round(float(v[1]), 4)]
    if summary.get("oracle"):
        val["oracle c_index"] = summary["oracle"].get("c_index")
    meta_path = d / "pipeline.json"
    meta = json.loads(meta_path.read_text())
    meta["metadata"]["validation"] = val
    write_json_atomic(meta_path, meta)
    pipe = Pipeline.from_pretrained(d)
    write_model_card(d, pipe)


def report_patient(pipeline_dir: str | Path, manifest: str | Path, patient_id: str, out_dir: str | Path, *,
                   overwrite: bool = False, pdf: bool = True, result_only: bool = False) -> dict[str, Path]:
    """Explain ``patient_id`` with a saved pipeline and write ``report.html`` / ``report.pdf`` / ``risk_result.json``.

    The output folder is named by the caller; patient ids never become file names.
    """
    from multimodal.explain.risk import explain_patient
    from multimodal.io import atomic_dir, write_text_atomic
    from multimodal.pipeline import Pipeline
    from multimodal.report.patient import write_patient_report

    pipe = Pipeline.from_pretrained(pipeline_dir)
    cohort = Cohort.from_manifest(manifest)
    result = explain_patient(pipe, cohort, str(patient_id))
    out = Path(out_dir)
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
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_cohort_report(Path(run_dir), tmp, pdf=pdf)
    return {"html": out / "cohort_report.html", **({"pdf": out / "cohort_report.pdf"} if pdf else {})}
