"""A tiny valid cohort written in the real formats (by h5py, anndata, pyarrow, pandas), and helpers to break it.

Eight patients ``P001..P008``: an outcomes parquet with prediction times, treatment arms and response; TRIDENT-layout
h5 slide features (P001 and P002 have two slides each, P008 none); an ``.h5ad`` with ``layers["counts"]``; a MAF +
sequenced-sample list; a MEDS 0.4 directory; a clinical CSV; two external split files; ``manifest.yaml``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

PATIENTS = [f"P{i:03d}" for i in range(1, 9)]
SLIDES_PER_PATIENT = {"P001": 2, "P002": 2, "P003": 1, "P004": 1, "P005": 1, "P006": 1, "P007": 1}
DIM = 8
ENCODER = "conch_v15"
SUBJECT = {p: 101 + i for i, p in enumerate(PATIENTS)}
MEDS_PATIENTS = PATIENTS[:6]
EXPRESSION_PATIENTS = PATIENTS[:7]
SEQUENCED = [f"{p}-01" for p in PATIENTS[:6]]
MEDS_SCHEMA = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("us")), ("code", pa.string()),
                         ("numeric_value", pa.float32())])


def write_trident_h5(path: Path, features: np.ndarray, coords: np.ndarray | None = None, *,
                     encoder: str | None = ENCODER, patch_size_level0: int = 256, key: str = "features") -> Path:
    """Write a TRIDENT ``features_<enc>/<slide>.h5`` (features + coords + attrs) with h5py."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = features.shape[0] if features.ndim >= 1 else 0
    if coords is None:
        coords = (np.stack([np.arange(n) % 4, np.arange(n) // 4], axis=1) * patch_size_level0).astype(np.int64)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(key, data=features)
        if encoder is not None:
            ds.attrs["encoder"] = encoder
            ds.attrs["name"] = path.stem
        c = f.create_dataset("coords", data=coords)
        c.attrs["patch_size_level0"] = patch_size_level0
        c.attrs["patch_size"] = 256
        c.attrs["level0_magnification"] = 20
        c.attrs["target_magnification"] = 20
    return path


@dataclass
class TinyCohort:
    """Paths of the tiny cohort and small editing helpers for tests that break one thing."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.yaml"

    @property
    def patients_path(self) -> Path:
        return self.root / "outcomes.parquet"

    @property
    def slides_table_path(self) -> Path:
        return self.root / "slides.csv"

    @property
    def expression_path(self) -> Path:
        return self.root / "omics" / "expression.h5ad"

    @property
    def maf_path(self) -> Path:
        return self.root / "omics" / "mutations.maf"

    @property
    def meds_shard(self) -> Path:
        return self.root / "meds" / "data" / "train" / "0.parquet"

    @property
    def clinical_path(self) -> Path:
        return self.root / "clinical.csv"

    def slide_path(self, patient: str, k: int = 1) -> Path:
        return self.root / "features" / f"{patient}_slide{k}.h5"

    # manifest
    def manifest(self) -> dict[str, Any]:
        return yaml.safe_load(self.manifest_path.read_text())

    def write_manifest(self, data: dict[str, Any]) -> None:
        self.manifest_path.write_text(yaml.safe_dump(data, sort_keys=False))

    def edit_manifest(self, fn: Callable[[dict[str, Any]], None]) -> None:
        data = self.manifest()
        fn(data)
        self.write_manifest(data)

    # tables
    def patients(self) -> pd.DataFrame:
        return pd.read_parquet(self.patients_path)

    def write_patients(self, df: pd.DataFrame) -> None:
        df.to_parquet(self.patients_path, index=False)

    def edit_patients(self, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
        df = self.patients()
        out = fn(df)
        self.write_patients(df if out is None else out)

    def edit_csv(self, path: Path, fn: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
        df = pd.read_csv(path, dtype=str)
        out = fn(df)
        (df if out is None else out).to_csv(path, index=False)

    def meds(self) -> pa.Table:
        return pq.read_table(self.meds_shard)

    def write_meds(self, table: pa.Table) -> None:
        pq.write_table(table, self.meds_shard)


def _write_outcomes(root: Path) -> None:
    rng = np.random.default_rng(0)
    n = len(PATIENTS)
    df = pd.DataFrame({
        "patient_id": PATIENTS,
        "time": np.round(rng.uniform(30, 2000, n), 1),
        "event": [True, False, True, True, False, True, False, False],
        "prediction_time": pd.to_datetime([f"2020-01-{i + 1:02d}" for i in range(n)]).astype("datetime64[us]"),
        "arm": ["A", "B"] * (n // 2),
        "response": pd.array([1, 0, 1, 0, 0, 1, None, 1], dtype="Int64"),
        "subject_id": np.array([SUBJECT[p] for p in PATIENTS], dtype=np.int64),
        "site": ["s1", "s2"] * (n // 2),
    })
    df.to_parquet(root / "outcomes.parquet", index=False)


def _write_slides(root: Path) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for pid, k in SLIDES_PER_PATIENT.items():
        for j in range(1, k + 1):
            n = int(rng.integers(5, 20))
            path = write_trident_h5(root / "features" / f"{pid}_slide{j}.h5",
                                    rng.normal(size=(n, DIM)).astype(np.float32))
            rows.append({"patient_id": pid, "slide_id": path.stem, "path": f"features/{path.name}"})
    pd.DataFrame(rows).to_csv(root / "slides.csv", index=False)


def _write_omics(root: Path) -> None:
    import anndata as ad

    (root / "omics").mkdir(exist_ok=True)
    rng = np.random.default_rng(2)
    counts = rng.poisson(20, size=(len(EXPRESSION_PATIENTS), 12)).astype(np.float32)
    adata = ad.AnnData(X=np.log1p(counts), obs=pd.DataFrame(index=EXPRESSION_PATIENTS),
                       var=pd.DataFrame(index=[f"G{i}" for i in range(12)]))
    adata.layers["counts"] = counts
    adata.write_h5ad(root / "omics" / "expression.h5ad")
    maf = pd.DataFrame({
        "Hugo_Symbol": ["TP53", "KRAS", "TP53", "PIK3CA"],
        "Chromosome": ["17", "12", "17", "3"],
        "Start_Position": [7675088, 25245350, 7674220, 179234297],
        "Variant_Classification": ["Missense_Mutation", "Missense_Mutation", "Nonsense_Mutation", "Silent"],
        "Tumor_Sample_Barcode": ["P001-01", "P002-01", "P004-01", "P004-01"],
    })
    with open(root / "omics" / "mutations.maf", "w") as fh:
        fh.write("#version 2.4\n")
        maf.to_csv(fh, sep="\t", index=False)
    (root / "omics" / "sequenced_samples.txt").write_text("\n".join(SEQUENCED) + "\n")


def _write_meds(root: Path) -> None:
    meds = root / "meds"
    for d in ("data/train", "metadata"):
        (meds / d).mkdir(parents=True, exist_ok=True)
    pt = dict(zip(PATIENTS, pd.to_datetime([f"2020-01-{i + 1:02d}" for i in range(len(PATIENTS))]), strict=True))
    rows: list[tuple[int, Any, str, float | None]] = []
    for i, pid in enumerate(MEDS_PATIENTS):
        sid = SUBJECT[pid]
        rows.append((sid, None, "GENDER//F" if i % 2 else "GENDER//M", None))
        rows.append((sid, pt[pid] - pd.Timedelta(days=400), "MEDS_BIRTH", None))
        rows.append((sid, pt[pid] - pd.Timedelta(days=100), "DIAGNOSIS//ICD//10//C67", None))
        rows.append((sid, pt[pid] - pd.Timedelta(days=30), "LAB//HGB", 12.0 + i))
        rows.append((sid, pt[pid], "LAB//HGB", 11.5 + i))  # at the prediction time: allowed (inclusive)
    rows.append((999, None, "GENDER//M", None))  # a MEDS subject outside the cohort is fine
    table = pa.table({
        "subject_id": pa.array([r[0] for r in rows], pa.int64()),
        "time": pa.array([None if r[1] is None else r[1].to_pydatetime() for r in rows], pa.timestamp("us")),
        "code": pa.array([r[2] for r in rows], pa.string()),
        "numeric_value": pa.array([r[3] for r in rows], pa.float32()),
    })
    pq.write_table(table, meds / "data" / "train" / "0.parquet")
    codes = sorted({r[2] for r in rows})
    pq.write_table(pa.table({"code": pa.array(codes, pa.string()),
                             "description": pa.array([c.lower() for c in codes], pa.string()),
                             "parent_codes": pa.array([[] for _ in codes], pa.list_(pa.string()))}),
                   meds / "metadata" / "codes.parquet")
    subjects = sorted({r[0] for r in rows})
    pq.write_table(pa.table({"subject_id": pa.array(subjects, pa.int64()),
                             "split": pa.array(["train"] * len(subjects), pa.string())}),
                   meds / "metadata" / "subject_splits.parquet")
    (meds / "metadata" / "dataset.json").write_text(json.dumps(
        {"dataset_name": "tiny", "dataset_version": "0.1", "etl_name": "tests", "meds_version": "0.4.1"}))


def _write_clinical(root: Path) -> None:
    pd.DataFrame({
        "patient_id": PATIENTS,
        "age": [61, 70, 55, 48, 80, 66, 59, 73],
        "sex": ["F", "M"] * 4,
        "stage": ["I", "II", "III", "IV", "II", "I", "III", "II"],
        "note": ["x"] * 8,
    }).to_csv(root / "clinical.csv", index=False)


def _write_splits(root: Path) -> None:
    (root / "splits").mkdir(exist_ok=True)
    pd.DataFrame({"train": PATIENTS[:4], "val": PATIENTS[4:]}).to_csv(root / "splits" / "splits_0.csv")
    train, val = PATIENTS[3:], PATIENTS[:3]
    pd.DataFrame({"train": train, "val": val + [None] * (len(train) - len(val))}).to_csv(
        root / "splits" / "splits_1.csv")


MANIFEST: dict[str, Any] = {
    "version": 1,
    "name": "tiny",
    "patients": {
        "path": "outcomes.parquet", "id": "patient_id", "time": "time", "event": "event", "time_unit": "days",
        "prediction_time": "prediction_time", "treatment": "arm", "treatment_arms": ["A", "B"],
        "response": "response", "meds_subject_id": "subject_id",
    },
    "modalities": {
        "pathology": {"type": "slides", "table": "slides.csv", "format": "trident"},
        "genomics": {"type": "omics", "expression": "omics/expression.h5ad", "mutations": "omics/mutations.maf",
                     "mutation_samples": "omics/sequenced_samples.txt",
                     "mutation_patient_pattern": r"^(?P<patient>P\d+)-\d+$"},
        "ehr": {"type": "meds", "path": "meds"},
        "clinical": {"type": "clinical", "path": "clinical.csv", "categorical": ["sex", "stage"],
                     "numeric": ["age"], "exclude": ["note"]},
    },
    "splits": {"files": "splits/splits_{k}.csv", "folds": 2},
}


def write_tiny_cohort(root: Path) -> TinyCohort:
    """Write the tiny valid cohort under ``root`` and return its handle."""
    root.mkdir(parents=True, exist_ok=True)
    _write_outcomes(root)
    _write_slides(root)
    _write_omics(root)
    _write_meds(root)
    _write_clinical(root)
    _write_splits(root)
    tc = TinyCohort(root)
    tc.write_manifest(json.loads(json.dumps(MANIFEST)))
    return tc
