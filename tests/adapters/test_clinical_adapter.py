"""ClinicalAdapter: wide clinical tables -> one static token per variable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from multimodal.adapters.base import Adapter
from multimodal.adapters.clinical import ClinicalAdapter, ClinicalAdapterConfig
from multimodal.cohorts import ClinicalSource, Cohort
from multimodal.config import from_dict
from multimodal.errors import ConfigError, InputError

IDS = [f"P{i}" for i in range(8)]
TRAIN = IDS[:6]


def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [50.0, 60.0, np.nan, 70.0, 40.0, 80.0, 63.0, 55.0],
            "sex": ["F", "M", "F", "F", "M", "M", "F", "X"],
            "stage": ["I", "II", np.nan, "[Not Available]", "II", "III", "IV-B", "I"],
            "grade": [1, 2, 2, 3, np.nan, 1, 2, 4],
            "vital_status": ["Alive", "Dead", "Alive", "Dead", "Alive", "Dead", "Alive", "Dead"],
            "days_to_last_follow_up": [100, 200, 300, 400, 500, 600, 700, 800],
            "survival_months": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            "site_code": ["A", "B", "A", "B", "A", "B", "A", "B"],
        },
        index=pd.Index(IDS, name="patient_id"),
    )


def cohort(t: pd.DataFrame | None = None, **src: object) -> Cohort:
    patients = pd.DataFrame({"time": np.arange(1.0, 9.0), "event": [True, False] * 4}, index=pd.Index(IDS))
    source = ClinicalSource(table=table() if t is None else t, **src)  # type: ignore[arg-type]
    return Cohort(name="c", patients=patients, modalities={"clinical": source})


def tokens(a: ClinicalAdapter, pid: str) -> dict[str, tuple[int, float, bool]]:
    s = a.transform(pid)
    return {n.split(" = ")[0]: (int(c), float(v), bool(m)) for n, c, v, m in
            zip(s.names[0], s.codes[0], s.values[0], s.value_mask[0], strict=True)}


def test_one_token_per_variable_with_missing_indicators_and_unseen_levels() -> None:
    c = cohort(categorical=("sex", "stage"), numeric=("age", "grade"))
    a = ClinicalAdapter(exclude=("site_code",)).fit(c, TRAIN)
    vocab = {c: i for i, c in enumerate(a.vocabulary)}
    assert [v.name for v in a.variables] == ["age", "sex", "stage", "grade"]
    ages = np.array([50.0, 60.0, 70.0, 40.0, 80.0])  # training ages, NaN left out
    s = a.transform("P0")
    assert s.names[0] == ("age = 50", "sex = F", "stage = I", "grade = 1")
    assert s.times.abs().sum() == 0 and s.mask.all() and s.codes.dtype == torch.int64
    assert s.values[0, 0].item() == pytest.approx((50.0 - ages.mean()) / ages.std(), rel=1e-6)
    assert s.value_mask.tolist() == [[True, False, False, True]]

    missing = a.transform("P2")  # age NaN, stage NaN
    assert missing.names[0][0] == "age = <missing>" and missing.names[0][2] == "stage = <missing>"
    assert missing.codes[0, 0].item() == vocab["age=<missing>"] and not missing.value_mask[0, 0]
    assert missing.values[0, 0].item() == 0.0
    assert missing.codes[0, 2].item() == vocab["stage=<missing>"]
    assert a.transform("P3").codes[0, 2].item() == vocab["stage=<missing>"]  # "[Not Available]" is missing

    unseen = a.transform("P6")  # held out: stage "IV-B" never seen in training
    assert unseen.codes[0, 2].item() == vocab["stage=<UNK>"]
    assert unseen.names[0][2] == "stage = IV-B [UNK]"
    assert a.transform("P7").codes[0, 1].item() == vocab["sex=<UNK>"]
    assert "stage=IV-B" not in vocab and {"stage=I", "stage=II", "stage=III"} <= set(vocab)
    assert a.stream_spec().max_tokens == 4 and a.stream_spec().vocab_size == len(vocab)
    assert a.transform("P999").num_tokens == 0


def test_excluded_and_leaky_columns_never_reach_a_token() -> None:
    a = ClinicalAdapter(exclude=("site_code",)).fit(cohort(), TRAIN)  # nothing declared: inferred by dtype
    kinds = {v.name: v.kind for v in a.variables}
    assert kinds == {"age": "numeric", "sex": "categorical", "stage": "categorical", "grade": "numeric"}
    assert a.excluded == ("days_to_last_follow_up", "site_code", "survival_months", "vital_status")
    for pid in IDS:
        names = " ".join(a.transform(pid).names[0])
        assert not any(word in names for word in ("vital", "follow", "survival", "site", "Dead", "Alive"))
    assert not any(c.startswith(("vital", "days_to", "survival", "site")) for c in a.vocabulary)
    # source-declared leaky columns (e.g. from an inferring loader) are excluded too
    b = ClinicalAdapter().fit(cohort(categorical=("sex", "vital_status"), numeric=("survival_months",)), TRAIN)
    assert [v.name for v in b.variables] == ["sex"]


def test_conflicting_or_bad_declarations_are_errors() -> None:
    with pytest.raises(ConfigError, match="both declared and excluded"):
        from_dict(ClinicalAdapterConfig, {"categorical": ["stage"], "exclude": ["stage"]})
    with pytest.raises(ConfigError, match="match exclude_patterns"):
        ClinicalAdapter(numeric=("survival_months",)).fit(cohort(), TRAIN)
    kept = ClinicalAdapter(numeric=("survival_months",), exclude_patterns=()).fit(cohort(), TRAIN)
    assert [v.name for v in kept.variables] == ["survival_months"]
    with pytest.raises(InputError, match="no column 'weight'") as err:
        ClinicalAdapter(numeric=("weight",)).fit(cohort(), TRAIN)
    assert err.value.field == "weight"
    bad = table()
    bad["age"] = bad["age"].astype(object)
    bad.loc["P4", "age"] = "forty"
    with pytest.raises(InputError, match="non-numeric value 'forty'") as err:
        ClinicalAdapter().fit(cohort(bad, numeric=("age",)), TRAIN)
    assert err.value.patient == "P4" and err.value.field == "age"


def test_poisoned_held_out_rows_leave_state_identical_and_save_load_roundtrip(tmp_path: Path) -> None:
    a = ClinicalAdapter(min_category_count=1).fit(cohort(), TRAIN)
    poisoned = table()
    poisoned.loc["P6":, "age"] = 1e9
    poisoned.loc["P6":, "stage"] = "NEW"
    b = ClinicalAdapter(min_category_count=1).fit(cohort(poisoned), TRAIN)
    assert json.dumps(a.state_json(), sort_keys=True) == json.dumps(b.state_json(), sort_keys=True)
    assert b.transform("P6").values[0, 0].item() == pytest.approx(5.0)  # clipped

    a.save(tmp_path)
    c = Adapter.load(tmp_path)
    assert isinstance(c, ClinicalAdapter) and c.state_json() == a.state_json()
    c.bind(cohort())
    for pid in IDS:
        x, y = a.transform(pid), c.transform(pid)
        assert x.names == y.names
        for k, v in x.tensor_fields().items():
            assert torch.equal(v, getattr(y, k)), k


def test_rare_levels_fold_into_unk() -> None:
    a = ClinicalAdapter(categorical=("stage",), min_category_count=2).fit(cohort(), TRAIN)
    assert a.variables[0].levels == ("II",)  # I and III seen once in training
    vocab = {c: i for i, c in enumerate(a.vocabulary)}
    assert a.transform("P0").codes[0, 0].item() == vocab["stage=<UNK>"]


def test_leakage_patterns_live_in_cohorts_and_source_allowed_columns_are_kept() -> None:
    from multimodal.adapters.clinical import DEFAULT_LEAKAGE_PATTERNS
    from multimodal.cohorts import clinical_columns

    assert DEFAULT_LEAKAGE_PATTERNS is clinical_columns.DEFAULT_LEAKAGE_PATTERNS
    assert ClinicalAdapterConfig().exclude_patterns == DEFAULT_LEAKAGE_PATTERNS
    # a column the manifest declared explicitly (the loader kept it, listed in `allowed`) is not dropped again
    src = {"categorical": ("sex", "vital_status"), "numeric": ("survival_months",), "allowed": ("vital_status",)}
    a = ClinicalAdapter().fit(cohort(**src), TRAIN)
    assert [v.name for v in a.variables] == ["sex", "vital_status"]
