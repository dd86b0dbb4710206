"""``multimodal explain --cohort`` / ``explain_cohort``: a patient x feature attribution table (parquet), the features'
values and a beeswarm-style PNG, for patients without outcomes too."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from scoring_fixtures import cli, copy_cohort, trained, without_outcome_columns  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    pipe, cohort = trained(tmp_path_factory)
    root = tmp_path_factory.mktemp("explain_cohort")
    return pipe, copy_cohort(cohort, root / "cohort", without_outcome_columns)


def test_cli_writes_table_values_and_plot(setup, tmp_path, capsys):
    from PIL import Image

    from multimodal.cohorts.cohort import Cohort

    pipe, manifest = setup
    ids = Cohort.from_manifest(manifest, outcomes="optional").patient_ids[:6]
    out = tmp_path / "explained"
    rc, stdout, err = cli(capsys, "explain", "--pipeline", pipe, "--manifest", manifest, "--cohort", "--patients",
                          ",".join(ids), "--steps", "8", "--out", out)
    assert rc == 0, err
    assert "attributions.parquet" in stdout
    table = pq.read_table(out / "attributions.parquet")
    assert table.schema.metadata[b"multimodal.target"] == b"risk"
    attr = table.to_pandas().set_index("patient_id")
    assert list(attr.index) == ids
    mods = {c.split(":", 1)[0] for c in attr.columns}
    assert {"pathology", "genomics", "ehr", "clinical"} <= mods, attr.columns
    assert "pathology:patches" in attr.columns and "clinical:age" in attr.columns
    assert not any(" @ " in c or " = " in c for c in attr.columns)  # codes, not code + value + time
    assert attr.notna().any().all()
    means = attr.abs().mean().to_numpy()
    assert (np.diff(means) <= 1e-12).all()  # columns by mean |attribution|, largest first
    values = pd.read_parquet(out / "feature_values.parquet").set_index("patient_id")
    assert list(values.columns) == list(attr.columns) and list(values.index) == ids
    age = Cohort.from_manifest(manifest, outcomes="optional").modalities["clinical"].table.loc[ids, "age"]
    # the clinical adapter standardizes age: the values rank the patients as their ages do
    assert values["clinical:age"].rank().tolist() == pd.Series(age.to_numpy(float)).rank().tolist()
    with Image.open(out / "attribution_beeswarm.png") as im:
        assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 200


def test_rows_add_up_to_the_patients_integrated_gradients(setup):
    from multimodal.cohorts.cohort import Cohort
    from multimodal.data import PatientDataset, collate_patients
    from multimodal.explain.attribution import integrated_gradients
    from multimodal.explain.cohort_table import cohort_attributions
    from multimodal.pipeline import Pipeline

    pipe_dir, manifest = setup
    pipe = Pipeline.from_pretrained(pipe_dir)
    cohort = Cohort.from_manifest(manifest, outcomes="optional")
    ids = cohort.patient_ids[:3]
    res = cohort_attributions(pipe, cohort, ids, n_steps=8)
    ds = PatientDataset(cohort, pipe.adapters, ids, train=False)
    for i, pid in enumerate(ids):
        ig = integrated_gradients(pipe.model.eval(), collate_patients([ds[i]]), n_steps=8)
        total = sum(float(np.sum(t.scores)) for t in ig.tokens.values())
        assert res.attributions.loc[pid].sum(skipna=True) == pytest.approx(total, rel=1e-5, abs=1e-7)
    long = res.to_long()
    assert set(long.columns) == {"patient_id", "modality", "feature", "attribution", "value"}
    assert len(long) == int(res.attributions.notna().sum().sum())


def test_unknown_patient_is_a_clear_error(setup, tmp_path, capsys):
    pipe, manifest = setup
    rc, _, err = cli(capsys, "explain", "--pipeline", pipe, "--manifest", manifest, "--cohort", "--patients",
                     "NOBODY", "--out", tmp_path / "x")
    assert rc == 2 and "NOBODY" in err
    assert not (tmp_path / "x").exists()
