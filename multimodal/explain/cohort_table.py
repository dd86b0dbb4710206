"""Explanations for a whole cohort as tables: one row per patient, one column per feature (``multimodal explain
--cohort``), and a beeswarm-style summary plot, as SHAP users expect.

Each patient is attributed by Integrated Gradients through the model's own forward
(:func:`~multimodal.explain.attribution.integrated_gradients`, the same as a patient report) and the token
attributions are gathered into features that mean the same thing for every patient:

* slot tokens (pathways / genes): one feature per token name, e.g. ``genomics:HALLMARK_HYPOXIA``;
* coded tokens (EHR events, clinical variables): one feature per code or variable, the attributions of its tokens
  summed (every measurement of a lab, its trend token as ``CODE [trend]``), e.g. ``ehr:LAB//CEA``, ``clinical:age``;
* patch bags: one feature per modality, the sum over the patient's patches, e.g. ``pathology:patches``.

A patient without a modality (or a code) has no value (NaN) there. Attributions are on the scale of what the model
explains (``target``: the survival risk, or the response probability of a response-only model) relative to the
all-zero baseline (the training mean of standardized inputs), so a row sums to f(x) − f(baseline) up to the IG
error. ``values`` holds the feature's input value where it has one number (a lab's mean value, a pathway's mean
member value; NaN otherwise), which colours the plot.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from multimodal.cohorts.cohort import Cohort
    from multimodal.pipeline import Pipeline

ATTRIBUTIONS_FILE = "attributions.parquet"
VALUES_FILE = "feature_values.parquet"
PLOT_FILE = "attribution_beeswarm.png"
_VALUE_OR_TIME = re.compile(r"(?: = .*?)?(?: @ .*)?$")


@dataclass(frozen=True)
class CohortAttributions:
    """Patient × feature attributions of a cohort (rows: patients in the order asked; columns: ``modality:feature``
    sorted by mean |attribution|), the features' input values (same shape) and what was explained."""

    attributions: pd.DataFrame
    values: pd.DataFrame
    target: str  # "risk" or "response"
    n_steps: int

    def to_long(self) -> pd.DataFrame:
        """One row per patient × feature with a value: ``patient_id, modality, feature, attribution, value``."""
        a = self.attributions.stack().rename("attribution")
        v = self.values.stack().rename("value")
        out = pd.concat([a, v], axis=1).dropna(subset=["attribution"]).reset_index()
        out.columns = ["patient_id", "feature", "attribution", "value"]
        out.insert(1, "modality", out["feature"].str.split(":", n=1).str[0])
        return out

    def write(self, out_dir: str | Path, *, max_features: int = 20) -> dict[str, Path]:
        """``attributions.parquet``, ``feature_values.parquet`` (index ``patient_id``; the target in the file's
        metadata) and ``attribution_beeswarm.png`` into the existing folder ``out_dir``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from multimodal.io import atomic_path

        out = Path(out_dir)
        meta = {b"multimodal.target": self.target.encode(), b"multimodal.n_steps": str(self.n_steps).encode(),
                b"multimodal.baseline": b"all-zero inputs (training mean of standardized inputs)"}
        paths = {"attributions": out / ATTRIBUTIONS_FILE, "values": out / VALUES_FILE, "plot": out / PLOT_FILE}
        for key, frame in (("attributions", self.attributions), ("values", self.values)):
            table = pa.Table.from_pandas(frame.reset_index(), preserve_index=False)
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
            with atomic_path(paths[key]) as tmp:
                pq.write_table(table, tmp)
        with atomic_path(paths["plot"]) as tmp:
            beeswarm(self, tmp, max_features=max_features)
        return paths


def _feature(modality: str, token: str) -> str:
    return f"{modality}:{_VALUE_OR_TIME.sub('', token)}"


def cohort_attributions(pipe: Pipeline, cohort: Cohort, patient_ids: Sequence[str] | None = None, *,
                        n_steps: int = 16) -> CohortAttributions:
    """Attribute every patient of ``patient_ids`` (default: the cohort's) with ``pipe``'s model (module docstring)."""
    from multimodal.data import collate_patients
    from multimodal.errors import InputError
    from multimodal.explain.attribution import integrated_gradients
    from multimodal.explain.reference import explain_target

    ids = [str(p) for p in (cohort.patient_ids if patient_ids is None else patient_ids)]
    unknown = [p for p in ids if p not in cohort.patients.index]
    if unknown:
        raise InputError(f"{len(unknown)} patient id(s) not in the cohort, e.g. {unknown[:3]}", patient=unknown[0],
                         field="patient_id", hint="use ids from the manifest's patient table")
    if not ids:
        raise InputError("no patient to explain", field="patient_id")
    model = pipe.model.eval()
    pipe.bind(cohort)
    target = explain_target(model)
    ds = pipe.dataset(cohort, ids)
    rows: dict[str, dict[str, float]] = {}
    vals: dict[str, dict[str, float]] = {}
    for i, pid in enumerate(ids):
        batch = collate_patients([ds[i]], num_response_classes=max(int(pipe.metadata.get("response_classes", 2)), 2),
                                 time_unit=cohort.time_unit)
        ig = integrated_gradients(model, batch, target=target, n_steps=n_steps)
        attr: dict[str, float] = defaultdict(float)
        seen: dict[str, list[float]] = defaultdict(list)
        for m, ta in ig.tokens.items():
            stream = batch.streams[m]
            if stream.positions is not None:  # a patch bag: one feature, the sum over the patches
                attr[f"{m}:patches"] += float(np.sum(ta.scores))
                continue
            for name, score, value in zip(ta.names, ta.scores, _token_values(stream), strict=True):
                key = _feature(m, name)
                attr[key] += float(score)
                if np.isfinite(value):
                    seen[key].append(float(value))
        rows[pid] = dict(attr)
        vals[pid] = {k: float(np.mean(v)) for k, v in seen.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(ids)
    order = frame.abs().mean().sort_values(ascending=False, kind="stable").index
    frame = frame[order]
    values = pd.DataFrame.from_dict(vals, orient="index").reindex(index=ids, columns=order)
    frame.index.name = values.index.name = "patient_id"
    return CohortAttributions(frame.astype(float), values.astype(float), target, n_steps)


def _token_values(stream: Any) -> np.ndarray:
    """One number per real token of batch row 0: the measured value of a coded token (NaN without one), the mean
    member value of a slot token."""
    mask = stream.mask[0].cpu().numpy().astype(bool)
    n = int(mask.sum())
    if stream.features is not None and stream.codes is None:
        return stream.features[0].float().mean(dim=-1).cpu().numpy()[mask]
    if stream.values is not None:
        v = stream.values[0].float().cpu().numpy()[mask]
        has = stream.value_mask[0].cpu().numpy()[mask] if stream.value_mask is not None else np.ones(n, bool)
        return np.where(has, v, np.nan)
    return np.full(n, np.nan)


def beeswarm(result: CohortAttributions, path: str | Path, *, max_features: int = 20) -> None:
    """A beeswarm-style summary (as ``shap.plots.beeswarm``): one row per feature (the ``max_features`` with the
    largest mean |attribution|, top first), one dot per patient at its attribution, jittered vertically where dots
    crowd, coloured by the feature's value (low blue → high red, ranked within the feature; grey = no value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, v = result.attributions, result.values
    feats = list(a.columns[:max_features])
    fig, ax = plt.subplots(figsize=(8, 0.4 * max(len(feats), 3) + 1.5), dpi=120)
    rng = np.random.default_rng(0)
    cmap = plt.get_cmap("coolwarm")
    for row, f in enumerate(feats):
        y = len(feats) - 1 - row
        x = a[f].to_numpy(float)
        ok = np.isfinite(x)
        col = v[f].to_numpy(float)[ok]
        has = np.isfinite(col)
        colour = np.full((ok.sum(), 4), (0.35, 0.35, 0.35, 0.6))
        if has.sum() > 1:
            ranks = pd.Series(col[has]).rank().to_numpy()
            colour[has] = cmap((ranks - 1) / max(float(ranks.max()) - 1, 1.0))
        ax.scatter(x[ok], y + _jitter(x[ok], rng), s=12, c=colour, linewidths=0)
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_yticks(range(len(feats)), list(reversed(feats)), fontsize=8)
    what = "risk score" if result.target == "risk" else "response probability"
    ax.set_xlabel(f"attribution to the {what} (Integrated Gradients; > 0 raises it)")
    ax.set_title(f"{len(a)} patients, {len(feats)} of {a.shape[1]} features by mean |attribution|", fontsize=9)
    sm = plt.cm.ScalarMappable(cmap=cmap)
    bar = fig.colorbar(sm, ax=ax, pad=0.01, aspect=40)
    bar.set_ticks([0, 1], labels=["low", "high"])
    bar.set_label("feature value (grey: none)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _jitter(x: np.ndarray, rng: np.random.Generator, width: float = 0.35) -> np.ndarray:
    """Vertical offsets that grow with the local density of ``x`` (the beeswarm look)."""
    if len(x) < 2:
        return np.zeros(len(x))
    span = float(np.ptp(x)) or 1.0
    bins = np.clip(((x - x.min()) / span * 50).astype(int), 0, 50)
    counts = np.bincount(bins, minlength=51)[bins]
    return rng.uniform(-1, 1, len(x)) * width * counts / counts.max()
