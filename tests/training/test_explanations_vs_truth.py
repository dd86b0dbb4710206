"""Explanations recover the planted truth of a small synthetic cohort (loose version of bench/explain.py).

The cohort has stronger effects than the default one so that a model trained for seconds learns them. The patch
bound is below what the trained model reaches, and the second test checks that an untrained model of the same
architecture (chance-level explanations) stays under it, so it can fail. At this size the pathway recall (chance
5/8 with 8 pathways), the causal-lab share (10 patients) and the per-arm response correlation do not separate a
trained from an untrained model on every seed; bench/explain.py measures them on 3 x 1000 patients next to the
untrained model's figures (docs/explainability.md). Here they are checked for completeness and range only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multimodal.cohorts.synthetic_model import EffectSizes

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
OVERRIDES = [
    "training.epochs=12", "training.batch_size=16", "training.progress=false", "training.val_fraction=0",
    "model.d_model=32", "model.num_latents=4", "model.depth=1", "adapters.pathology.max_patches=64",
    # the attributions explain the fusion trunk's part of the output; with the pooled stack the slide signal it carries
    # is listed in the stack's terms (RiskResult.stack_terms), not in patch attributions (docs/fusion.md)
    "model.stack=none",
]


@pytest.fixture(scope="module")
def strong_cohort(tmp_path_factory):
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort, load_ground_truth

    eff = EffectSizes(high_risk_phenotype=1.5, lab_slope=1.2, pathway=0.8)
    manifest = generate_synthetic_cohort(tmp_path_factory.mktemp("strong") / "c", SyntheticConfig(
        patients=160, seed=5, patches_per_slide=150, embed_dim=16, n_genes=150, n_pathways=8, effects=eff))
    return manifest, load_ground_truth(manifest)


@pytest.fixture(scope="module")
def fitted(strong_cohort):
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.explain.validation import holdout_split
    from multimodal.pipeline import Pipeline

    cfg = load_experiment(DEMO_CONFIG, [f"data.manifest={strong_cohort[0]}", *OVERRIDES])
    cohort = load_cohort(cfg.data)
    train, test = holdout_split(cohort.patient_ids)
    pipe, _ = Pipeline.fit(cohort, train, adapters=make_adapters(cfg), model_config=cfg.model, training=cfg.training,
                           task=cfg.task, seed=0)
    return pipe, cohort, test


def _figures(pipe, fitted, strong_cohort):
    from multimodal.explain.validation import validate_explanations

    return validate_explanations(pipe, fitted[1], strong_cohort[1], fitted[2], n_steps=16)


def test_trained_model_explanations_recover_the_planted_truth(strong_cohort, fitted):
    fig = _figures(fitted[0], fitted, strong_cohort)
    assert fig["n_patients"] == 40 and fig["patch_auroc_n_patients"] >= 25 and fig["causal_lab_n_patients"] == 10
    assert sorted(fig["pathway_ranking"]) == sorted(fig["pathway_token_ranking"]) == sorted(strong_cohort[1]["pathways"])
    assert fig["patch_auroc_high_risk"] >= 0.65  # the necrosis patches carry the risk
    assert fig["pathway_recall_at_5"] in (0.0, 1 / 3, 2 / 3, 1.0) and fig["pathway_token_recall_at_5"] is not None
    assert 0.0 <= fig["causal_lab_top1_fraction"] <= fig["causal_lab_top3_fraction"] <= 1.0
    assert -1.0 <= fig["per_arm_response_corr"] <= 1.0


def test_an_untrained_model_stays_under_the_same_bounds(strong_cohort, fitted):
    from multimodal.explain.validation import untrained_copy

    chance = _figures(untrained_copy(fitted[0]), fitted, strong_cohort)
    assert chance["patch_auroc_high_risk"] < 0.65


def test_global_ranking_reads_the_spread_over_patients_not_a_shared_offset():
    """A token whose attribution is the same for every patient (the all-zero baseline's offset) leads the plain
    mean-|attribution| ranking but not the centered one, which ranks by how much a token moves patients apart."""
    from multimodal.explain.validation import rank_tokens

    rng = np.random.default_rng(0)
    act = rng.standard_normal(200)
    attr = {"causal": list(0.3 * act), "offset": list(-0.5 + 0.01 * rng.standard_normal(200)),
            "noise": list(0.05 * rng.standard_normal(200))}
    assert rank_tokens(attr, centered=False) == ["offset", "causal", "noise"]
    assert rank_tokens(attr) == ["causal", "noise", "offset"]
