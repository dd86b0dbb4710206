"""Tiny cohorts for the pooled-feature, baseline-contract and attention-MIL tests (helpers, not tests).

* :func:`small_synthetic` — the embedded synthetic generator (every modality in its real format), small sizes.
* :func:`phenotype_cohort` — ``.npy`` patch bags whose patches come from known cluster centres in chosen mixes.
* :func:`meds_cohort` — a MEDS 0.4 directory written with pyarrow in the exact MEDS dtypes, with prediction times.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from multimodal.cohorts import Cohort, MedsSource
from multimodal.cohorts.sources import ClinicalSource, SlideRef, SlideSource

PT = datetime(2020, 1, 1, 12, 0, 0)
MEDS_SCHEMA = pa.schema(
    [("subject_id", pa.int64()), ("time", pa.timestamp("us")), ("code", pa.string()), ("numeric_value", pa.float32())]
)
Row = tuple[int, datetime | None, str, float | None]


def small_synthetic(out: Path, *, patients: int = 60, seed: int = 0, patches: int = 60) -> Cohort:
    """A small synthetic cohort (16-dim patches, 80 genes, 8 pathways) loaded from its manifest."""
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

    cfg = SyntheticConfig(patients=patients, seed=seed, patches_per_slide=patches, embed_dim=16, n_genes=80,
                          n_pathways=8)
    return Cohort.from_manifest(generate_synthetic_cohort(out, cfg))


def centres(k: int = 3, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((k, dim)) * 4.0


def write_bag(path: Path, mix: list[float], n: int, *, seed: int, dim: int = 8) -> Path:
    """An (n, dim) float32 ``.npy`` bag: patch i comes from centre ``c`` with probability ``mix[c]``, plus noise."""
    rng = np.random.default_rng(seed)
    c = centres(len(mix), dim)
    labels = rng.choice(len(mix), size=n, p=np.asarray(mix) / np.sum(mix))
    np.save(path, (c[labels] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32))
    return path


def phenotype_cohort(root: Path, mixes: dict[str, list[float] | None], *, n: int = 80, seed: int = 0) -> Cohort:
    """Patients -> phenotype mix of their one slide (None = no slides); a clinical table (age) for everyone."""
    root.mkdir(parents=True, exist_ok=True)
    slides = {}
    for i, (pid, mix) in enumerate(mixes.items()):
        if mix is not None:
            path = write_bag(root / f"{pid}.npy", mix, n, seed=seed * 1000 + i)
            slides[pid] = (SlideRef(pid, f"{pid}_s1", path, "npy"),)
    ids = list(mixes)
    rng = np.random.default_rng(seed)
    patients = pd.DataFrame({"time": rng.exponential(10, len(ids)) + 0.1, "event": rng.random(len(ids)) < 0.7},
                            index=ids)
    clinical = pd.DataFrame({"age": rng.normal(60, 10, len(ids))}, index=ids)
    return Cohort(name="phenotypes", patients=patients, modalities={
        "pathology": SlideSource(slides=slides),
        "clinical": ClinicalSource(table=clinical, numeric=("age",)),
    })


def days(d: float) -> datetime:
    return PT + timedelta(days=d)


def write_meds(root: Path, rows: list[Row]) -> Path:
    cols = list(zip(*rows, strict=True))
    arrays = [pa.array(list(c), type=f.type) for c, f in zip(cols, MEDS_SCHEMA, strict=True)]
    (root / "data" / "train").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays(arrays, schema=MEDS_SCHEMA), root / "data" / "train" / "0.parquet")
    return root


def meds_rows(n: int = 8) -> list[Row]:
    """Subjects 1..n: HR at -10 d and -2 d (rising with the id), a diagnosis, a static height; a rare code for 1."""
    rows: list[Row] = []
    for sid in range(1, n + 1):
        rows += [
            (sid, None, "HEIGHT", 160.0 + sid),
            (sid, days(-30), "DX//C50", None),
            (sid, days(-10), "LAB//HR", 60.0 + sid),
            (sid, days(-2), "LAB//HR", 60.0 + 3 * sid),
        ]
    rows.append((1, days(-1), "RARE//ONE", 1.0))
    return rows


def meds_cohort(root: Path, rows: list[Row], n: int = 8) -> Cohort:
    ids = [f"P{i}" for i in range(1, n + 1)]
    write_meds(root, rows)
    patients = pd.DataFrame({
        "time": np.arange(1.0, n + 1), "event": [True, False] * (n // 2) + [True] * (n % 2),
        "prediction_time": pd.to_datetime([PT] * n).astype("datetime64[us]"),
    }, index=ids)
    return Cohort(name="meds", patients=patients,
                  modalities={"ehr": MedsSource(root=root, subject_ids={p: i + 1 for i, p in enumerate(ids)})})
