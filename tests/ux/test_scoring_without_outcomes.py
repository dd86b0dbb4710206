"""Scoring new patients: a manifest without outcomes (or with empty ones) is predicted and explained like one with
them; training still needs them; patients that a modality names but the patient table lacks are one warning each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

if str(Path(__file__).parent) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))

from scoring_fixtures import DEMO_CONFIG, cli, copy_cohort, trained, without_outcome_columns  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained pipeline, its cohort, a copy without outcome columns, and the predictions with outcomes."""
    pipe, cohort = trained(tmp_path_factory)
    root = tmp_path_factory.mktemp("no_outcomes")
    from multimodal.api import predict_to_file

    baseline = root / "with_outcomes.parquet"
    predict_to_file(pipe, cohort / "manifest.yaml", baseline)
    return {"pipeline": pipe, "cohort": cohort, "baseline": baseline,
            "no_outcomes": copy_cohort(cohort, root / "cohort", without_outcome_columns)}


def test_predict_without_outcome_columns_cli_and_api(setup: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from multimodal.api import predict_to_file
    from multimodal.cohorts.cohort import Cohort
    from multimodal.pipeline import Pipeline

    want = pd.read_parquet(setup["baseline"])
    out = tmp_path / "cli.parquet"
    rc, _, err = cli(capsys, "predict", "--pipeline", setup["pipeline"], "--manifest", setup["no_outcomes"],
                     "--out", out)
    assert rc == 0, err
    pd.testing.assert_frame_equal(pd.read_parquet(out), want)
    assert predict_to_file(setup["pipeline"], setup["no_outcomes"], tmp_path / "api.parquet") == len(want)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "api.parquet"), want)

    cohort = Cohort.from_manifest(setup["no_outcomes"], outcomes="optional")
    assert cohort.patients["time"].isna().all()
    pred = Pipeline.from_pretrained(setup["pipeline"]).predict(cohort)
    pd.testing.assert_frame_equal(pred, want[list(pred.columns)])


def test_empty_outcome_values_are_scored_too(setup: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The manifest declares the outcome columns and the table has them, empty (for every patient or a few)."""
    def empty(df: pd.DataFrame) -> pd.DataFrame:
        n = len(df)
        return df.assign(time=np.nan, event=pd.array([None] * n, dtype="boolean"),
                         response=pd.array([None] * n, dtype="Int64"))

    def some_empty(df: pd.DataFrame) -> pd.DataFrame:
        df = df.assign(event=df["event"].astype("boolean"))
        df.loc[df.index[:3], "time"] = np.nan
        df.loc[df.index[:3], "event"] = pd.NA
        return df

    want = pd.read_parquet(setup["baseline"])
    for name, edit in (("empty", empty), ("some_empty", some_empty)):
        manifest = copy_cohort(setup["cohort"], tmp_path / name, edit)
        out = tmp_path / f"{name}.parquet"
        rc, _, err = cli(capsys, "predict", "--pipeline", setup["pipeline"], "--manifest", manifest, "--out", out)
        assert rc == 0, (name, err)
        pd.testing.assert_frame_equal(pd.read_parquet(out), want)
        rc, out_text, _ = cli(capsys, "validate", manifest)
        assert rc == 2 and "time is missing" in out_text  # training rules
        rc, out_text, _ = cli(capsys, "validate", manifest, "--for-scoring")
        assert rc == 0, out_text


def test_explain_without_outcomes(setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    patient = str(pd.read_parquet(setup["baseline"])["patient_id"].iloc[0])
    rc, _, err = cli(capsys, "explain", "--pipeline", setup["pipeline"], "--manifest", setup["no_outcomes"],
                     "--patient", patient, "--out", tmp_path / "explained")
    assert rc == 0, err
    result = json.loads((tmp_path / "explained" / "risk_result.json").read_text())
    assert result["survival"] is not None and result["risk_score"] is not None


def test_training_still_needs_outcomes(setup: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("train", "cv"):
        rc, _, err = cli(capsys, cmd, DEMO_CONFIG, "--out", tmp_path / cmd, "--set",
                         f"data.manifest={setup['no_outcomes']}")
        assert rc == 2, (cmd, err)
        assert "no column 'time'" in err and "'event'" in err, (cmd, err)
        assert not (tmp_path / cmd).exists()
    rc, out, _ = cli(capsys, "validate", setup["no_outcomes"])
    assert rc == 2 and "no column 'time'" in out
    rc, out, _ = cli(capsys, "validate", setup["no_outcomes"], "--for-scoring")
    assert rc == 0 and "VALID" in out


def _add_extra_patients(cohort: Path) -> None:
    """2 slides of unknown patients, 3 expression profiles of unknown patients, 1 MEDS subject of no patient."""
    import anndata as ad

    slides = pd.read_csv(cohort / "slides.csv")
    first = slides.iloc[0]
    extra = pd.DataFrame([{"patient_id": f"NEW-{i}", "slide_id": f"NEW-{i}_slide1", "path": first["path"]}
                          for i in (1, 2)])
    pd.concat([slides, extra]).to_csv(cohort / "slides.csv", index=False)

    path = cohort / "omics" / "expression.h5ad"
    adata = ad.read_h5ad(path)
    more = ad.AnnData(X=adata.X[:3].copy(), obs=pd.DataFrame(index=[f"NEW-{i}" for i in (3, 4, 5)]),
                      var=adata.var.copy())
    for layer in adata.layers:
        more.layers[layer] = adata.layers[layer][:3].copy()
    ad.concat([adata, more], merge="same").write_h5ad(path)

    shard = sorted((cohort / "meds" / "data").rglob("*.parquet"))[0]
    t = pq.read_table(shard)
    row = t.slice(t.num_rows - 1, 1)
    idx = row.schema.get_field_index("subject_id")
    row = row.set_column(idx, row.schema.field(idx), pa.array([999_999_999], pa.int64()))
    pq.write_table(pa.concat_tables([t, row]), shard)


def test_extra_patients_in_a_modality_are_one_warning_each(setup: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    manifest = copy_cohort(setup["cohort"], tmp_path / "extra")
    _add_extra_patients(manifest.parent)
    out = tmp_path / "p.parquet"
    rc, _, err = cli(capsys, "predict", "--pipeline", setup["pipeline"], "--manifest", manifest, "--out", out)
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if "not in the patient table" in ln]
    assert len(lines) == 3, err  # one per modality
    text = "\n".join(lines)
    assert "2 patient(s) in modality 'pathology'" in text and "'NEW-1', 'NEW-2'" in text
    assert "3 patient(s) in modality 'genomics'" in text and "expression.h5ad" in text
    assert "1 MEDS subject_id(s) in modality 'ehr'" in text and "999999999" in text
    # the extra patients change nothing for the others
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(setup["baseline"]))
