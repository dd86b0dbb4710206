"""``explain_cohort``: a saved pipeline's attributions for every patient of a manifest, written as tables and a plot
(the API behind ``multimodal explain --cohort``; :mod:`multimodal.explain.cohort_table` computes them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from multimodal.errors import InputError
from multimodal.explain.cohort_table import ATTRIBUTIONS_FILE, PLOT_FILE, VALUES_FILE, cohort_attributions


def explain_cohort(pipeline_dir: str | Path, manifest: str | Path, out_dir: str | Path, *,
                   patient_ids: Sequence[str] | None = None, n_steps: int = 16, overwrite: bool = False,
                   max_features: int = 20) -> dict[str, Path]:
    """Explain every patient of ``manifest`` (or ``patient_ids``) with the pipeline saved in ``pipeline_dir`` and
    write ``attributions.parquet`` (patient x feature), ``feature_values.parquet`` and ``attribution_beeswarm.png``
    into the new folder ``out_dir``; returns their paths. The manifest is loaded for scoring: its patient table may
    lack outcome columns. Under ``accelerate launch`` only the main process writes.

    Example::

        paths = explain_cohort("runs/pipeline", "new_patients/manifest.yaml", "runs/explained")
        table = pd.read_parquet(paths["attributions"]).set_index("patient_id")
    """
    from accelerate import PartialState

    from multimodal.api import check_compatible, load_pipeline
    from multimodal.cohorts.cohort import Cohort
    from multimodal.io import atomic_dir

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("output exists and is a file; this command writes a folder", file=out,
                         hint="choose a new --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError("output exists and is not empty", file=out, hint="choose a new --out or pass --overwrite")
    pipe = load_pipeline(pipeline_dir)
    cohort = Cohort.from_manifest(manifest, outcomes="optional")
    check_compatible(pipe, cohort, manifest)
    result = cohort_attributions(pipe, cohort, patient_ids, n_steps=n_steps)
    state = PartialState()
    state.wait_for_everyone()
    if state.is_main_process:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            result.write(tmp, max_features=max_features)
    state.wait_for_everyone()
    names = {"attributions": ATTRIBUTIONS_FILE, "values": VALUES_FILE, "plot": PLOT_FILE}
    return {k: out / v for k, v in names.items()}
