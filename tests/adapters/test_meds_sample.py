"""The real MEDS example (Medical-Event-Data-Standard ``simple_static_sharded_by_split``) through the EHR adapter.

The shared file is YAML whose keys are file paths (``data/train/0.parquet``, ``metadata/codes.parquet``, ...) and whose
values are embedded CSV; it is materialized into ``tmp_path`` as real parquet files in the MEDS 0.4 dtypes.
"""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from multimodal.adapters.ehr import EHRAdapter
from multimodal.cohorts import Cohort, MedsSource

SAMPLE = "ehr/meds_sample/simple_static_sharded_by_split.yaml"
PREDICTION_TIME = datetime(2010, 6, 5, 0, 0, 0)  # 1195293 is admitted later (2010-06-20): only static rows usable
DATA_SCHEMA = pa.schema(
    [("subject_id", pa.int64()), ("time", pa.timestamp("us")), ("code", pa.string()), ("numeric_value", pa.float32())]
)


def materialize(yaml_path: Path, root: Path) -> dict[str, pd.DataFrame]:
    """Write every embedded CSV as parquet with the MEDS schema of its kind; return the frames by relative path."""
    spec = yaml.safe_load(yaml_path.read_text())
    frames = {}
    for rel, text in spec.items():
        df = pd.read_csv(io.StringIO(text), dtype={"code": str})
        out = root / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("data/"):
            df["time"] = pd.to_datetime(df["time"], format="%m/%d/%Y, %H:%M:%S")
            table = pa.Table.from_pandas(df[["subject_id", "time", "code", "numeric_value"]], schema=DATA_SCHEMA,
                                         preserve_index=False)
        elif rel.endswith("subject_splits.parquet"):
            table = pa.table({"subject_id": pa.array(df["subject_id"], pa.int64()),
                              "split": pa.array(df["split"], pa.string())})
        else:  # codes.parquet: code, description, parent_codes list<string>
            parents = [[p] if isinstance(p, str) else [] for p in df["parent_codes"]]
            table = pa.table({"code": pa.array(df["code"], pa.string()),
                              "description": pa.array(df["description"], pa.string()),
                              "parent_codes": pa.array(parents, pa.list_(pa.string()))})
        pq.write_table(table, out)
        frames[rel] = df
    return frames


@pytest.fixture
def sample(shared_data: Path, tmp_path: Path) -> tuple[Path, dict[str, pd.DataFrame]]:
    root = tmp_path / "meds"
    return root, materialize(shared_data / SAMPLE, root)


def test_meds_sample_tokenizes_all_subjects(sample: tuple[Path, dict[str, pd.DataFrame]]) -> None:
    root, frames = sample
    splits = pq.read_table(root / "metadata/subject_splits.parquet").to_pandas()
    assert len(splits) == 6
    ids = {f"S{s}": int(s) for s in splits["subject_id"]}
    patients = pd.DataFrame(
        {"time": 1.0, "event": False, "prediction_time": pd.Timestamp(PREDICTION_TIME).as_unit("us")},
        index=pd.Index(list(ids), name="patient_id"),
    )
    cohort = Cohort(name="meds-sample", patients=patients, modalities={"ehr": MedsSource(root=root, subject_ids=ids)})
    train = [f"S{s}" for s in splits.loc[splits["split"] == "train", "subject_id"]]
    adapter = EHRAdapter(min_count=1).fit(cohort, train)

    events = pd.concat([f for rel, f in frames.items() if rel.startswith("data/")])
    usable = events[events["time"].isna() | (events["time"] <= PREDICTION_TIME)]
    train_codes = sorted(set(usable.loc[usable["subject_id"].isin([ids[p] for p in train]), "code"]))
    assert adapter.vocabulary[2:] == tuple(train_codes)
    assert "DISCHARGE" in train_codes and "MEDS_BIRTH" in train_codes

    # per-code statistics = numpy over the training subjects' rows up to the prediction time
    hr = usable[(usable["code"] == "HR") & usable["subject_id"].isin([ids[p] for p in train])]["numeric_value"]
    hr = hr.to_numpy(np.float32).astype(np.float64)
    k = adapter.vocabulary.index("HR")
    assert adapter.state.n_values[k] == len(hr) == 6
    assert adapter.state.mean[k] == pytest.approx(hr.mean(), rel=1e-12)
    assert adapter.state.std[k] == pytest.approx(hr.std(), rel=1e-12)

    for pid, sid in ids.items():
        s = adapter.transform(pid)
        rows = usable[usable["subject_id"] == sid]
        assert s.num_tokens == len(rows) > 0
        assert (s.times <= 0).all()
        n_static = int(rows["time"].isna().sum())
        assert all(n.endswith("@ static") for n in s.names[0][:n_static])
        timed = s.times[0, n_static:]
        assert (timed[1:] >= timed[:-1]).all()
    late = adapter.transform("S1195293")  # its admission is after the prediction time
    assert late.names[0] == ("EYE_COLOR//BLUE @ static", "HEIGHT = 164.687 @ static", "MEDS_BIRTH @ -11673.0d")
    held_out = adapter.transform("S1500733")
    assert held_out.names[0][-1] == "DISCHARGE @ -1.3d"
    assert adapter.stream_spec().vocab_size == len(train_codes) + 2
