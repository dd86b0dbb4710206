"""Golden test: our Harrell c-index reproduces every per-fold validation c-index published with MCAT (ICCV 2021).

The published per-patient risks (``tcga_mcat/mcat_val_predictions.csv.gz``) were scored by the authors with
``concordance_index_censored(1 - censorship, survival_months, risk)``; ``harrell_c`` must give the same numbers for
every (model, cohort, fold), and each fold's patients must be the ``val`` column of the PORPOISE split file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multimodal.metrics import harrell_c


@pytest.fixture(scope="module")
def mcat(shared_data):
    folder = shared_data / "tcga_mcat"
    preds = pd.read_csv(folder / "mcat_val_predictions.csv.gz")
    reported = pd.read_csv(folder / "mcat_fold_cindex_reported.csv")
    return preds, reported


def test_every_reported_fold_cindex_is_reproduced(mcat):
    preds, reported = mcat
    groups = preds.groupby(["model", "cancer", "fold"])
    assert len(reported) == groups.ngroups > 0
    worst = 0.0
    for row in reported.itertuples(index=False):
        g = groups.get_group((row.model, row.cancer, row.folds))
        ours = harrell_c(
            time=g["survival_months"].to_numpy(float),
            event=(1 - g["censorship"]).astype(bool).to_numpy(),
            risk=g["risk"].to_numpy(float),
        )
        assert isinstance(ours, float)
        assert ours == pytest.approx(row.val_cindex, abs=1e-9), (row.model, row.cancer, row.folds)
        worst = max(worst, abs(ours - row.val_cindex))
    assert worst < 1e-9


def test_censorship_polarity_matters(mcat):
    """Feeding ``censorship`` as if it were ``event`` must NOT reproduce the numbers (the test can fail)."""
    preds, reported = mcat
    row = reported.iloc[0]
    g = preds[(preds.model == row.model) & (preds.cancer == row.cancer) & (preds.fold == row.folds)]
    wrong = harrell_c(g["survival_months"], g["censorship"].astype(bool), g["risk"])
    assert abs(wrong - row.val_cindex) > 1e-3


def test_fold_patients_are_the_porpoise_val_split(mcat, shared_data):
    preds, _ = mcat
    for (cancer, fold), g in preds.groupby(["cancer", "fold"]):
        split = pd.read_csv(shared_data / f"tcga_porpoise/splits/5foldcv/tcga_{cancer}/splits_{fold}.csv")
        val = set(split["val"].dropna().astype(str))
        for model, gm in g.groupby("model"):
            assert set(gm["case_id"].astype(str)) == val, (model, cancer, fold)
            assert gm["case_id"].is_unique
        assert np.isfinite(g["risk"]).all()
