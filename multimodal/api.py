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
