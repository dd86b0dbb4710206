"""`multimodal predict` answers as a table: survival and cumulative hazard at chosen times (the model's own
interpolation between bin edges), columns named by arm, arm differences, csv or parquet by suffix, and metadata."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

if str(Path(__file__).parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from scoring_fixtures import cli, trained  # noqa: E402


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Predictions of the shared tiny pipeline at the bin edges, between them, before the first and after the last
    one, as parquet and as csv."""
    from multimodal.pipeline import Pipeline

    pipe_dir, cohort = trained(tmp_path_factory)
    pipe = Pipeline.from_pretrained(pipe_dir)
    edges = [float(e) for e in pipe.model.config.bin_edges]
    last = float(pipe.metadata["max_train_time"])
    assert len(edges) >= 2 and last > edges[-1]
    mids = [(a + b) / 2 for a, b in zip([0.0, *edges], [*edges, last], strict=True)]
    times = sorted({*edges, *mids, last, last + 100.0})
    root = tmp_path_factory.mktemp("tables")
    arg = ",".join(repr(t) for t in times)
    from multimodal.cli.main import main

    for suffix in ("parquet", "csv"):
        assert main(["predict", "--pipeline", str(pipe_dir), "--manifest", str(cohort / "manifest.yaml"),
                     "--out", str(root / f"preds.{suffix}"), "--times", arg]) == 0
    return {"pipe": pipe, "pipe_dir": pipe_dir, "cohort": cohort, "edges": edges, "last": last, "mids": mids,
            "times": times, "parquet": root / "preds.parquet", "csv": root / "preds.csv"}


def _label(t: float) -> str:
    from multimodal.pipeline import time_label

    return time_label(t)


def test_survival_at_times_follows_the_models_rule(tables: dict) -> None:
    df = pd.read_parquet(tables["parquet"])
    edges, last = tables["edges"], tables["last"]
    s = df[[f"surv_{k}" for k in range(len(edges) + 1)]].to_numpy(float)
    knots_t, knots_s = [0.0, *edges, last], np.column_stack([np.ones(len(df)), s])
    for k, e in enumerate(edges):  # at a bin edge: that bin's survival
        np.testing.assert_allclose(df[f"survival_t{_label(e)}"], s[:, k], atol=1e-6)
    for j, m in enumerate(tables["mids"]):  # between edges: the straight line between the two knots
        want = (knots_s[:, j] + knots_s[:, j + 1]) / 2
        np.testing.assert_allclose(df[f"survival_t{_label(m)}"], want, atol=1e-6)
        assert knots_t[j] < m < knots_t[j + 1]
    np.testing.assert_allclose(df[f"survival_t{_label(last)}"], s[:, -1], atol=1e-6)
    np.testing.assert_allclose(df[f"survival_t{_label(last + 100.0)}"], s[:, -1], atol=1e-6)  # flat after it
    curve = df[[f"survival_t{_label(t)}" for t in tables["times"]]].to_numpy(float)
    assert ((curve >= 0) & (curve <= 1)).all()
    assert (np.diff(curve, axis=1) <= 1e-7).all()  # non-increasing in time
    for t in tables["times"]:
        np.testing.assert_allclose(df[f"cumhaz_t{_label(t)}"], -np.log(df[f"survival_t{_label(t)}"]), atol=1e-6)


def test_the_same_rule_as_the_study(tables: dict) -> None:
    """One interpolation rule: the pipeline's curve is the study's (multimodal.study.discrete_survival_on_grid)."""
    from multimodal.study import discrete_survival_on_grid

    df = pd.read_parquet(tables["parquet"])
    s = df[[f"surv_{k}" for k in range(len(tables["edges"]) + 1)]].to_numpy(float)
    grid = np.asarray(tables["times"])
    want = discrete_survival_on_grid(s, tables["edges"], tables["last"], grid)
    got = df[[f"survival_t{_label(t)}" for t in grid]].to_numpy(float)
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_columns_named_by_arm_and_the_arm_difference(tables: dict) -> None:
    from multimodal.cohorts.cohort import Cohort

    df = pd.read_parquet(tables["parquet"])
    arms = tables["pipe"].metadata["treatment_arms"]
    assert arms == ["standard", "targeted"]
    for a, arm in enumerate(arms):
        np.testing.assert_array_equal(df[f"risk_{arm}"], df[f"risk_arm_{a}"])  # old columns kept
        np.testing.assert_array_equal(df[f"response_prob_{arm}"], df[f"response_prob_arm_{a}"])
    np.testing.assert_allclose(df["risk_diff_targeted_vs_standard"], df["risk_targeted"] - df["risk_standard"])
    np.testing.assert_allclose(df["response_prob_diff_targeted_vs_standard"],
                               df["response_prob_targeted"] - df["response_prob_standard"])
    own = Cohort.from_manifest(tables["cohort"] / "manifest.yaml").patients.loc[df["patient_id"], "treatment"]
    for t in tables["times"]:
        lab = _label(t)
        per_arm = df[[f"survival_t{lab}_{arm}" for arm in arms]].to_numpy(float)
        assert ((per_arm >= 0) & (per_arm <= 1)).all()
        # a patient's own-arm column is that arm's column
        np.testing.assert_allclose(df[f"survival_t{lab}"], per_arm[np.arange(len(df)), own.to_numpy()], atol=1e-6)
        np.testing.assert_allclose(df[f"survival_t{lab}_diff_targeted_vs_standard"], per_arm[:, 1] - per_arm[:, 0])
        np.testing.assert_allclose(df[f"cumhaz_t{lab}_targeted"], -np.log(per_arm[:, 1]), atol=1e-6)
    assert not [c for c in df.columns if c.startswith("surv_arm_")]


def test_csv_and_parquet_hold_the_same_table_and_metadata(tables: dict) -> None:
    from multimodal.api import pipeline_id

    pq_df, csv_df = pd.read_parquet(tables["parquet"]), pd.read_csv(tables["csv"])
    assert list(csv_df.columns) == list(pq_df.columns)
    pd.testing.assert_frame_equal(csv_df, pq_df, check_dtype=False, atol=1e-6)
    assert tables["parquet"].read_bytes()[:4] == b"PAR1" and not tables["csv"].read_bytes().startswith(b"PAR1")
    meta = json.loads(pq.read_schema(tables["parquet"]).metadata[b"multimodal"])
    side = json.loads(Path(str(tables["csv"]) + ".json").read_text())
    assert meta == side
    assert meta["time_unit"] == "days" and meta["treatment_arms"] == ["standard", "targeted"]
    assert meta["bin_edges"] == tables["edges"] and meta["last_bin_time"] == tables["last"]
    assert meta["times"] == tables["times"]
    assert meta["pipeline_id"] == pipeline_id(tables["pipe_dir"]) and len(meta["pipeline_id"]) == 16
    assert set(meta["columns"]) == set(pq_df.columns) and all(meta["columns"].values())
    assert "arm targeted minus arm standard" in meta["columns"]["risk_diff_targeted_vs_standard"]


def test_out_suffix_and_times_are_checked(tables: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["predict", "--pipeline", tables["pipe_dir"], "--manifest", tables["cohort"] / "manifest.yaml"]
    rc, _, err = cli(capsys, *base, "--out", tmp_path / "preds.txt")
    assert rc == 2 and "--out" in err and "'.txt'" in err
    rc, _, err = cli(capsys, *base, "--out", tmp_path / "preds.parquet", "--times", "365,soon")
    assert rc == 2 and "--times" in err
    rc, _, err = cli(capsys, *base, "--out", tmp_path / "preds.parquet", "--times", "-1")
    assert rc == 2 and "--times" in err
    assert list(tmp_path.iterdir()) == []
    # without --times: no survival_t columns, the arm columns all the same
    rc, _, err = cli(capsys, *base, "--out", tmp_path / "plain.csv")
    assert rc == 0, err
    plain = pd.read_csv(tmp_path / "plain.csv")
    assert not [c for c in plain.columns if c.startswith(("survival_t", "cumhaz_t"))]
    assert {"risk", "surv_0", "risk_arm_0", "risk_standard", "risk_diff_targeted_vs_standard"} <= set(plain.columns)
    assert json.loads((tmp_path / "plain.csv.json").read_text())["times"] == []
    rc, _, err = cli(capsys, *base, "--out", tmp_path / "plain.csv")  # the output exists
    assert rc == 2 and "exists" in err


def test_recalibration_maps_apply_to_every_arm(tables: dict) -> None:
    """With recalibration maps (the tiny pipeline has too few inner-validation patients to fit them: set by hand),
    each arm's curve goes through the same survival map as the patient's own, and response_prob_<arm> through the
    response map; the last bin is read at the map's last bin end when max_train_time is not recorded."""
    import copy

    from multimodal.cohorts.cohort import Cohort

    pipe = copy.copy(tables["pipe"])
    k = len(tables["edges"]) + 1
    pipe.metadata = {**pipe.metadata, "recalibration": {
        "survival": {"intercepts": [0.2] * k, "slope": 0.7, "bin_ends": [*tables["edges"], tables["last"]]},
        "response": {"intercept": 0.3, "slope": 0.5}}}
    pipe.metadata.pop("max_train_time")
    cohort = Cohort.from_manifest(tables["cohort"] / "manifest.yaml", outcomes="optional")
    times = tables["times"]
    df = pipe.predict_table(cohort, times=times)
    raw = pd.read_parquet(tables["parquet"])
    own = cohort.patients.loc[df["patient_id"], "treatment"].to_numpy()
    assert not np.allclose(df["surv_0"], raw["surv_0"])  # the map changed the curves
    for t in times:
        per_arm = df[[f"survival_t{_label(t)}_{arm}" for arm in ("standard", "targeted")]].to_numpy(float)
        np.testing.assert_allclose(df[f"survival_t{_label(t)}"], per_arm[np.arange(len(df)), own], atol=1e-6)
    for a, arm in enumerate(("standard", "targeted")):
        np.testing.assert_allclose(df[f"response_prob_{arm}"], df[f"response_prob_arm_{a}"])
    np.testing.assert_allclose(df["response_prob"], df["response_prob_arm_0"].where(own == 0, df["response_prob_arm_1"]),
                               atol=1e-6)
