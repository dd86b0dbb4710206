"""The reference features of bench/ceiling.py carry the planted signal, so its ceilings mean what they say.

The ceiling benchmark argues "no learner given these files gets closer to the oracle than X"; that holds only if the
hand-built features really recover the latent variables (a broken feature would make the ceiling look lower than it
is). These checks fail if a feature is misread (wrong pathway genes, events after the prediction time, wrong patch
cluster, mutation table misaligned with patients).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from bench.ceiling import _latent_frame, observed_features
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort, load_ground_truth


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[str]]:
    manifest = generate_synthetic_cohort(tmp_path_factory.mktemp("ceil") / "c",
                                         SyntheticConfig(patients=120, patches_per_slide=300, seed=5))
    return manifest, load_ground_truth(manifest), list(Cohort.from_manifest(manifest).patient_ids)


def _corr(a, b) -> float:
    """Spearman correlation over the patients where both are known."""
    ok = ~(np.isnan(a) | np.isnan(b))
    return float(spearmanr(a[ok], b[ok]).statistic)


def test_observed_features_recover_the_latent_variables(cohort) -> None:
    manifest, truth, ids = cohort
    obs = observed_features(manifest.parent, truth, ids)
    lat, true_form = _latent_frame(truth)
    lat = lat.loc[ids]
    assert set(true_form) <= set(lat.columns)
    assert _corr(obs["path_high_risk_logit"].to_numpy(), lat["z_high_risk"].to_numpy()) > 0.8
    for pw in truth["causal"]["pathways"]:
        assert _corr(obs[pw].to_numpy(), lat[pw].to_numpy()) > 0.8, pw
    assert _corr(obs["ldh_slope"].to_numpy(), lat["z_ldh_slope"].to_numpy()) > 0.6
    gene = truth["causal"]["genes"][0]
    seq = obs[f"mut_{gene}"].notna()
    assert seq.sum() > 0.5 * len(ids)
    agree = (obs.loc[seq, f"mut_{gene}"] == lat.loc[seq, f"mut_{gene}"]).mean()
    assert agree > 0.95
    # missing modalities stay missing (NaN) rather than silently becoming zeros
    no_slides = [p["patient_id"] for p in truth["patients"] if "pathology" in p["missing_modalities"]]
    if no_slides:
        assert obs.loc[no_slides, "path_high_risk_logit"].isna().all()
