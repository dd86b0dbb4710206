"""EHR trend tokens: one ``"CODE [trend]"`` token per measured numeric code, its slope per year standardized with the
training patients' slopes, computed from events up to the prediction time only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_ehr_adapter import (  # rootdir-based import (tests/adapters on sys.path)
    TRAIN,
    assert_same_outputs,
    days,
    make_cohort,
    write_meds,
)

from multimodal.adapters.base import Adapter
from multimodal.adapters.ehr import EHRAdapter, code_trends

SLOPES = {1: 10.0, 2: 20.0, 3: 40.0, 4: 80.0, 5: 30.0}  # LAB//LDH units per year (design)


def trend_rows() -> dict[str, list]:
    rows = []
    for sid, slope in SLOPES.items():
        for d in (-300.0, -200.0, -100.0, 0.0):  # the last one exactly at the prediction time (inclusive)
            rows.append((sid, days(d), "LAB//LDH", 200.0 + slope * d / 365.25))
        rows.append((sid, days(-50.0), "LAB//ALB", 4.0))  # a single measurement: no trend
    rows.append((5, days(30.0), "LAB//LDH", 9999.0))  # after the prediction time: must not move the trend
    return {"data/train/0.parquet": [r for r in rows if r[0] <= 4], "data/held_out/0.parquet": [r for r in rows if r[0] == 5]}


def _token(a: EHRAdapter, pid: str, name: str) -> tuple[float, str]:
    s = a.transform(pid)
    hits = [(float(v), n) for v, n in zip(s.values[0].tolist(), s.names[0], strict=True) if n.startswith(name)]
    assert len(hits) == 1, s.names
    return hits[0]


def test_trend_token_is_the_standardized_slope_per_year(tmp_path: Path) -> None:
    a = EHRAdapter(min_count=2).fit(make_cohort(write_meds(tmp_path, trend_rows())), TRAIN)
    assert "LAB//LDH [trend]" in a.vocabulary and "LAB//ALB [trend]" not in a.vocabulary
    # z-slopes of the training patients (values standardized with the training LDH mean/std first)
    vals = np.array([200.0 + SLOPES[s] * d / 365.25 for s in range(1, 5) for d in (-300, -200, -100, 0)])
    std = vals.std()
    z_slopes = np.array([SLOPES[s] / std for s in range(1, 5)])
    for pid, sid in (("P1", 1), ("P4", 4), ("P5", 5)):
        v, name = _token(a, pid, "LAB//LDH [trend]")
        assert v == pytest.approx((SLOPES[sid] / std - z_slopes.mean()) / z_slopes.std(), rel=1e-4, abs=1e-5)
        assert name.startswith(f"LAB//LDH [trend] = +{SLOPES[sid]:.4g}/y") and name.endswith("@ 0.0d")
    spec = a.stream_spec()
    assert spec.vocab_size == len(a.vocabulary) and spec.max_tokens == 256 + 64 + 1


def test_trends_off_and_minimum_points(tmp_path: Path) -> None:
    root = write_meds(tmp_path, trend_rows())
    off = EHRAdapter(min_count=2, trends=False).fit(make_cohort(root), TRAIN)
    assert not any("[trend]" in c for c in off.vocabulary)
    assert not any("[trend]" in n for n in off.transform("P1").names[0])
    five = EHRAdapter(min_count=2, trend_min_points=5).fit(make_cohort(root), TRAIN)
    assert not any("[trend]" in c for c in five.vocabulary)  # 4 points per patient < 5


def test_trend_state_round_trips_and_later_events_are_ignored(tmp_path: Path) -> None:
    root = write_meds(tmp_path / "meds", trend_rows())
    a = EHRAdapter(min_count=2).fit(make_cohort(root), TRAIN)
    a.save(tmp_path / "state")
    b = Adapter.load(tmp_path / "state")
    b.bind(make_cohort(root))
    assert_same_outputs(a, b, ("P1", "P5"))
    # P5's LDH of 9999 thirty days after its prediction time never reaches its trend
    _, name = _token(a, "P5", "LAB//LDH [trend]")
    assert name.startswith("LAB//LDH [trend] = +30/y")


def test_code_trends_least_squares() -> None:
    pidx = np.array([0, 0, 0, 1, 1, 1, 1])
    codes = np.array([2, 2, 2, 2, 2, 3, 3], dtype=np.int32)
    years = np.array([0.0, 1.0, 2.0, 0.0, 1.0, 0.0, 0.0])
    z = np.array([1.0, 3.0, 5.0, 0.0, 1.0, 4.0, 5.0])
    p, c, slope, last = code_trends(pidx, codes, years, z, min_points=2)
    assert p.tolist() == [0, 1] and c.tolist() == [2, 2]  # code 3 of patient 1: no time spread
    np.testing.assert_allclose(slope, [2.0, 1.0])
    np.testing.assert_allclose(last, [2.0, 1.0])
