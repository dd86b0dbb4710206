"""EHRAdapter on small MEDS 0.4 directories written with pyarrow in the exact MEDS dtypes, sharded over files."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from multimodal.adapters.base import Adapter
from multimodal.adapters.ehr import EHRAdapter, EHRAdapterConfig
from multimodal.cohorts import Cohort, MedsSource
from multimodal.config import from_dict
from multimodal.errors import ConfigError, InputError
from multimodal.registry import create_adapter, list_adapters
from multimodal.types import collate_streams

PT = datetime(2020, 1, 1, 12, 0, 0)
MEDS_SCHEMA = pa.schema(
    [("subject_id", pa.int64()), ("time", pa.timestamp("us")), ("code", pa.string()), ("numeric_value", pa.float32())]
)
Row = tuple[int, datetime | None, str, float | None]


def write_shard(path: Path, rows: list[Row], schema: pa.Schema = MEDS_SCHEMA) -> Path:
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    arrays = [pa.array(list(c), type=f.type) for c, f in zip(cols, schema, strict=False)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)
    return path


def days(d: float) -> datetime:
    return PT + timedelta(days=d)


def base_rows() -> dict[str, list[Row]]:
    """Four training subjects (1-4) in train/0 and train/1, held-out subject 5 in held_out/0."""
    train0: list[Row] = []
    train1: list[Row] = []
    for sid, shard in ((1, train0), (2, train0), (3, train1), (4, train1)):
        shard += [
            (sid, None, "EYE//BROWN" if sid % 2 else "EYE//BLUE", None),
            (sid, None, "HEIGHT", 160.0 + 5 * sid),
            (sid, days(-30 - sid), "DX//ICD10//C50", None),
            (sid, days(-10), "LAB//HR", 60.0 + 10 * sid),
            (sid, days(-2), "LAB//HR", 70.0 + 10 * sid),
            (sid, days(-1), "LAB//TEMP", 36.5),
        ]
    held = [
        (5, None, "EYE//BROWN", None),
        (5, days(-5), "LAB//HR", 90.0),
        (5, days(-3), "RARE//NEVER_SEEN", 1.0),
        (5, days(-1), "LAB//TEMP", 39.0),
    ]
    return {"data/train/0.parquet": train0, "data/train/1.parquet": train1, "data/held_out/0.parquet": held}


def write_meds(root: Path, shards: dict[str, list[Row]]) -> Path:
    for rel, rows in shards.items():
        write_shard(root / rel, rows)
    return root


def make_cohort(root: Path, n: int = 5, pts: dict[str, datetime] | None = None) -> Cohort:
    ids = [f"P{i}" for i in range(1, n + 1)]
    pts = pts or {}
    patients = pd.DataFrame(
        {
            "time": np.arange(1.0, n + 1),
            "event": [True, False] * (n // 2) + [True] * (n % 2),
            "prediction_time": pd.to_datetime([pts.get(p, PT) for p in ids]).astype("datetime64[us]"),
        },
        index=pd.Index(ids, name="patient_id"),
    )
    src = MedsSource(root=root, subject_ids={p: i for i, p in enumerate(ids, start=1)})
    return Cohort(name="t", patients=patients, modalities={"ehr": src})


TRAIN = ["P1", "P2", "P3", "P4"]


def fitted(root: Path, **cfg: object) -> EHRAdapter:
    a = EHRAdapter(min_count=cfg.pop("min_count", 2), **cfg)
    return a.fit(make_cohort(root), TRAIN)


def state_of(a: EHRAdapter) -> tuple[str, dict[str, np.ndarray]]:
    return json.dumps(a.state_json(), sort_keys=True), {k: v.numpy().copy() for k, v in a.state_tensors().items()}


def assert_same_state(a: EHRAdapter, b: EHRAdapter) -> None:
    ja, ta = state_of(a)
    jb, tb = state_of(b)
    assert ja == jb
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and ta[k].tobytes() == tb[k].tobytes(), k  # bit-identical


def assert_same_outputs(a: EHRAdapter, b: EHRAdapter, patients: tuple[str, ...]) -> None:
    for p in patients:
        x, y = a.transform(p), b.transform(p)
        for k, v in x.tensor_fields().items():
            assert torch.equal(v, getattr(y, k)), k
        assert x.names == y.names


# ---- tokens ----------------------------------------------------------------------------------------------------------
def test_tokens_codes_values_times_and_names(tmp_path: Path) -> None:
    a = fitted(write_meds(tmp_path, base_rows()))
    # min_count=2 distinct training patients: every training code qualifies; sorted, from index 2
    assert a.vocabulary == ("<PAD>", "<UNK>", "DX//ICD10//C50", "EYE//BLUE", "EYE//BROWN", "HEIGHT", "LAB//HR",
                            "LAB//TEMP")
    s = a.transform("P1")
    v = {c: i for i, c in enumerate(a.vocabulary)}
    assert s.codes.tolist() == [[v["EYE//BROWN"], v["HEIGHT"], v["DX//ICD10//C50"], v["LAB//HR"], v["LAB//HR"],
                                 v["LAB//TEMP"]]]
    assert s.codes.dtype == torch.int64 and s.mask.all()
    np.testing.assert_allclose(s.times[0].numpy(), [0, 0, -31, -10, -2, -1], rtol=1e-6)
    hr = np.array([60.0 + 10 * k for k in range(1, 5)] + [70.0 + 10 * k for k in range(1, 5)])
    z = (np.array([70.0, 80.0]) - hr.mean()) / hr.std()
    np.testing.assert_allclose(s.values[0, 3:5].numpy(), z, rtol=1e-6)
    height = 160.0 + 5 * np.arange(1, 5)
    assert s.values[0, 1].item() == pytest.approx((165.0 - height.mean()) / height.std(), rel=1e-6)
    assert s.value_mask.tolist() == [[False, True, False, True, True, True]]
    assert s.values[0, 5].item() == 0.0  # TEMP is constant in training: std 1, centred
    assert s.names[0][:2] == ("EYE//BROWN @ static", "HEIGHT = 165 @ static")
    assert s.names[0][3] == "LAB//HR = 70 @ -10.0d"
    assert s.names[0][2] == "DX//ICD10//C50 @ -31.0d"
    spec = a.stream_spec()
    assert (spec.kind, spec.vocab_size, spec.max_tokens) == ("events", 8, 256 + 64)


def test_unseen_codes_become_unk_without_value(tmp_path: Path) -> None:
    a = fitted(write_meds(tmp_path, base_rows()))
    s = a.transform("P5")
    names = s.names[0]
    i = next(k for k, n in enumerate(names) if n.startswith("RARE//NEVER_SEEN"))
    assert s.codes[0, i].item() == 1 and not s.value_mask[0, i]
    assert names[i] == "RARE//NEVER_SEEN [UNK] = 1 @ -3.0d"
    temp = next(k for k, n in enumerate(names) if n.startswith("LAB//TEMP"))
    assert s.values[0, temp].item() == pytest.approx(39.0 - 36.5)  # training std of TEMP is 0 -> 1
    assert a.transform("P404").num_tokens == 0  # no EHR mapping: an empty stream, not an error


def test_value_clip_and_min_count_units(tmp_path: Path) -> None:
    rows = base_rows()
    rows["data/train/0.parquet"] += [(1, days(-20 + k / 10), "LAB//ONLY_P1", 1.0) for k in range(10)]
    rows["data/held_out/0.parquet"].append((5, days(-1), "LAB//HR", 1e6))
    root = write_meds(tmp_path, rows)
    by_patients = fitted(root, min_count=2)
    by_events = fitted(root, min_count=2, min_count_unit="events")
    assert "LAB//ONLY_P1" not in by_patients.vocabulary  # 10 events but one patient
    assert "LAB//ONLY_P1" in by_events.vocabulary
    s = by_patients.transform("P5")
    assert s.values.abs().max().item() == pytest.approx(5.0)  # clipped at value_clip


def test_most_recent_events_kept_and_static_always(tmp_path: Path) -> None:
    rows = base_rows()
    rows["data/train/0.parquet"] += [(1, days(-100 + k), f"LAB//X{k % 3}", float(k)) for k in range(20)]
    a = fitted(write_meds(tmp_path, rows), max_events=4)
    s = a.transform("P1")
    assert s.num_tokens == 2 + 4  # 2 static rows + the 4 most recent timed events
    assert s.names[0][:2] == ("EYE//BROWN @ static", "HEIGHT = 165 @ static")
    np.testing.assert_allclose(s.times[0, 2:].numpy(), [-31, -10, -2, -1], rtol=1e-6)
    assert s.meta["n_usable_events"] == 2 + 4 + 20 and s.meta["n_dropped"] == 20
    assert a.stream_spec().max_tokens == 4 + 64
    no_static = fitted(write_meds(tmp_path, rows), max_events=4, include_static=False).transform("P1")
    assert no_static.num_tokens == 4 and not any("static" in n for n in no_static.names[0])


def test_unsorted_rows_on_disk_give_time_ordered_tokens(tmp_path: Path) -> None:
    rows = base_rows()
    sorted_a = fitted(write_meds(tmp_path / "sorted", rows))
    shuffled = {}
    for k, (rel, r) in enumerate(rows.items()):
        r = list(r)
        random.Random(k).shuffle(r)
        shuffled[rel] = r
    # and scatter a subject over two files (MEDS forbids it; the adapter must still be right)
    moved = [r for r in shuffled["data/train/0.parquet"] if r[0] == 1 and r[2] == "LAB//HR"]
    shuffled["data/train/0.parquet"] = [r for r in shuffled["data/train/0.parquet"] if r not in moved]
    shuffled["data/train/1.parquet"] += moved
    shuffled_a = fitted(write_meds(tmp_path / "shuffled", shuffled))
    for p in ("P1", "P2", "P5"):
        s, t = sorted_a.transform(p), shuffled_a.transform(p)
        assert torch.equal(s.codes, t.codes) and torch.equal(s.times, t.times) and torch.equal(s.values, t.values)
        assert s.names == t.names
        timed = t.times[0][t.times[0] != 0]
        assert torch.all(timed[1:] >= timed[:-1])
    assert_same_state(sorted_a, shuffled_a)


def test_code_prefix_depth_truncates_codes(tmp_path: Path) -> None:
    rows = base_rows()
    rows["data/train/1.parquet"] += [(3, days(-4), "LAB//HR//bpm", 75.0), (4, days(-4), "LAB//HR//ecg", 76.0)]
    a = fitted(write_meds(tmp_path, rows), code_prefix_depth=2)
    assert "LAB//HR" in a.vocabulary and not any(c.count("//") > 1 for c in a.vocabulary)
    s = a.transform("P3")
    assert sum(n.startswith("LAB//HR = ") for n in s.names[0]) == 3


# ---- leakage ---------------------------------------------------------------------------------------------------------
def test_prediction_time_is_inclusive_and_later_events_never_used(tmp_path: Path) -> None:
    clean = fitted(write_meds(tmp_path / "clean", base_rows()))
    rows = base_rows()
    for sid, shard in ((1, "train/0"), (2, "train/0"), (3, "train/1"), (4, "train/1")):
        rows[f"data/{shard}.parquet"] += [
            (sid, PT, "AT//PREDICTION", 1.0),  # exactly at prediction time: used
            (sid, PT + timedelta(seconds=1), "LEAK//AFTER", 5.0),  # one second later: never used
            (sid, PT + timedelta(seconds=1), "LAB//HR", 1e4),  # would shift the HR statistics
        ]
    leaky = fitted(write_meds(tmp_path / "leaky", rows))
    assert "AT//PREDICTION" in leaky.vocabulary
    assert "LEAK//AFTER" not in leaky.vocabulary
    names = leaky.transform("P1").names[0]
    assert names[-1] == "AT//PREDICTION = 1 @ 0.0d"
    assert not any("LEAK" in n or "10000" in n for n in names)
    hr = {c: i for i, c in enumerate(leaky.vocabulary)}["LAB//HR"]
    hr_clean = {c: i for i, c in enumerate(clean.vocabulary)}["LAB//HR"]
    assert leaky.state.mean[hr] == clean.state.mean[hr_clean] and leaky.state.std[hr] == clean.state.std[hr_clean]
    assert leaky.state.n_values[hr] == 8


def test_poisoned_held_out_patients_leave_state_bit_identical(tmp_path: Path) -> None:
    clean = fitted(write_meds(tmp_path / "clean", base_rows()))
    rows = base_rows()
    rows["data/held_out/0.parquet"] = [
        (5, days(-k / 7), code, 1e9 * (-1) ** k) for k in range(50) for code in ("LAB//HR", "EYE//BLUE", "NEW//CODE")
    ] + [(5, None, "HEIGHT", float("nan")), (5, None, "AAA//FIRST", 3.0)]
    poisoned = fitted(write_meds(tmp_path / "poisoned", rows))
    assert_same_state(clean, poisoned)
    for p in TRAIN:
        a, b = clean.transform(p), poisoned.transform(p)
        assert torch.equal(a.codes, b.codes) and torch.equal(a.values, b.values) and a.names == b.names


def test_patient_without_prediction_time_is_an_input_error(tmp_path: Path) -> None:
    root = write_meds(tmp_path, base_rows())
    cohort = make_cohort(root)
    cohort.patients.loc["P3", "prediction_time"] = pd.NaT
    with pytest.raises(InputError, match="prediction_time") as err:
        EHRAdapter().fit(cohort, TRAIN)
    assert err.value.patient == "P3" and err.value.field == "prediction_time"
    no_col = make_cohort(root)
    no_col.patients = no_col.patients.drop(columns=["prediction_time"])
    with pytest.raises(InputError, match="no prediction_time column") as err:
        EHRAdapter().fit(no_col, TRAIN)
    assert err.value.field == "prediction_time" and err.value.patient == "P1"


# ---- validation ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "arrow_type", "value"),
    [
        ("subject_id", pa.int32(), 1),
        ("time", pa.string(), "2020-01-01"),
        ("code", pa.int64(), 7),
        ("numeric_value", pa.string(), "1.5"),
    ],
)
def test_wrong_dtypes_name_file_and_field(tmp_path: Path, field: str, arrow_type: pa.DataType, value: object) -> None:
    root = write_meds(tmp_path, base_rows())
    schema = MEDS_SCHEMA.set(MEDS_SCHEMA.get_field_index(field), pa.field(field, arrow_type))
    row = {"subject_id": 9, "time": PT, "code": "X", "numeric_value": 1.0} | {field: value}
    bad = write_shard(root / "data/tuning/3.parquet", [tuple(row.values())], schema)
    with pytest.raises(InputError, match=f"'{field}' has dtype") as err:
        fitted(root)
    assert err.value.field == field and err.value.file == str(bad)


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no data/ folder") as err:
        fitted(tmp_path)
    assert err.value.field == "data"
    (tmp_path / "data" / "train").mkdir(parents=True)
    with pytest.raises(InputError, match="no parquet files"):
        fitted(tmp_path)
    (tmp_path / "data" / "train" / "0.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="cannot read parquet") as err:
        fitted(tmp_path)
    assert err.value.file.endswith("0.parquet")


def test_other_timestamp_units_float64_and_missing_numeric_column_are_read(tmp_path: Path) -> None:
    rows = base_rows()
    root = write_meds(tmp_path, {k: v for k, v in rows.items() if k != "data/train/1.parquet"})
    other = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("ns")), ("code", pa.large_string()),
                       ("numeric_value", pa.float64())])
    write_shard(root / "data/train/1.parquet", rows["data/train/1.parquet"], other)
    no_values = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("ms")),
                           ("code", pa.dictionary(pa.int32(), pa.string()))])
    write_shard(root / "data/train/2.parquet", [(6, days(-1), "LAB//TEMP")], no_values)
    a = fitted(root)
    reference = fitted(write_meds(tmp_path / "ref", rows))
    assert_same_state(a, reference)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="max_events"):
        from_dict(EHRAdapterConfig, {"max_events": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(EHRAdapterConfig, {"max_event": 10})
    assert isinstance(create_adapter("ehr", max_events=8), EHRAdapter)
    assert {"ehr", "clinical"} <= set(list_adapters())


# ---- state -----------------------------------------------------------------------------------------------------------
def test_save_load_bind_gives_identical_outputs(tmp_path: Path) -> None:
    root = write_meds(tmp_path / "meds", base_rows())
    a = fitted(root)
    a.save(tmp_path / "state")
    b = Adapter.load(tmp_path / "state")
    assert isinstance(b, EHRAdapter)
    assert_same_state(a, b)
    with pytest.raises(RuntimeError, match="bind"):
        b.transform("P1")
    b.bind(make_cohort(root))
    assert_same_outputs(a, b, ("P1", "P5"))
    assert b.stream_spec() == a.stream_spec()


def test_fit_is_deterministic_and_batch_equals_collate(tmp_path: Path) -> None:
    root = write_meds(tmp_path, base_rows())
    a, b = fitted(root), fitted(root)
    assert_same_state(a, b)
    ids = ["P2", "P404", "P5", "P1"]
    batch = a.transform_batch(ids, names=True)
    ref = collate_streams([a.transform(p) for p in ids])
    for k, v in ref.tensor_fields().items():
        assert torch.equal(v, getattr(batch, k)), k
    assert batch.names == ref.names
