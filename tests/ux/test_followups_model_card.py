"""MODEL_CARD.md formats numbers one way (metrics with 3 decimals, a CI as ``0.612 (0.550–0.670)``) and never shows a
raw ``nan`` / ``None`` / ``inf``: a missing or undefined value reads "n/a"."""

from __future__ import annotations

import math
import re

import pytest

from multimodal.model import MultimodalConfig, MultimodalModel
from multimodal.pipeline import Pipeline
from multimodal.report.model_card import fmt_ci, fmt_metric, fmt_value, render_model_card

STREAMS = [
    {"modality": "genomics", "kind": "slots", "feature_dim": 12, "num_slots": 4, "vocab_size": 0, "max_tokens": 4,
     "slot_names": ["P1", "P2", "P3", "P4"]},
    {"modality": "ehr", "kind": "events", "feature_dim": 0, "num_slots": 0, "vocab_size": 19, "max_tokens": 16,
     "slot_names": []},
]


def _pipeline(metadata: dict) -> Pipeline:
    config = MultimodalConfig(streams=STREAMS, d_model=16, depth=1, num_heads=2, num_latents=2,
                              bin_edges=[372.2364066472525, 800.7343612331888, 1242.5164272977074])
    return Pipeline({}, MultimodalModel(config), metadata)


def _raw_values(card: str) -> list[str]:
    return re.findall(r"\b(?:nan|NaN|None|inf|null)\b", card)


def test_undefined_values_read_na() -> None:
    card = render_model_card(_pipeline({
        "cohort": "demo", "task": "survival", "time_unit": "days", "treatment_arms": [], "n_train": 30,
        "n_val": None, "best_epoch": 2, "best_val_score": float("nan"), "seed": 0,
        "validation": {"study": "runs/demo", "n_folds": None, "c_index (mean over folds)": float("nan"),
                       "c_index 95% CI": [None, None], "ibs (mean over folds)": float("inf"),
                       "oracle c_index": None},
    }))
    assert _raw_values(card) == [], _raw_values(card)
    assert "inner-validation score n/a)" in card
    assert "early stopping on n/a inner-validation" in card
    assert "- c_index (mean over folds) with 95% CI: n/a (n/a)" in card
    assert "- ibs (mean over folds): n/a" in card
    assert "oracle" not in card  # a real cohort has no generator truth: no line, not "n/a"
    assert "- study: run folder `demo`" in card and "runs/demo" not in card
    assert "- n_folds: n/a" in card
    assert "treatment arms: none" in card


def test_metrics_three_decimals_and_ci_in_brackets() -> None:
    card = render_model_card(_pipeline({
        "cohort": "demo", "task": "survival", "time_unit": "days", "treatment_arms": ["standard", "targeted"],
        "n_train": 30, "n_val": 10, "best_epoch": 0, "best_val_score": 0.34782608695652173, "seed": 0,
        "validation": {"study": "runs/demo", "n_folds": 5,
                       "protocol": {"splits": "stratified 5-fold (seed 0)", "time_unit": "days"},
                       "c_index (mean over folds)": 0.6123, "c_index 95% CI": [0.5504, 0.6701],
                       "c_index_bootstrap 95% CI": [0.58, 0.64], "oracle c_index": 0.71234},
    }))
    assert "- c_index (mean over folds) with 95% CI: 0.612 (0.550–0.670)" in card
    assert "- c_index_bootstrap 95% CI: 0.580–0.640" in card
    assert "- oracle c_index (synthetic cohort: the c-index of the generator's true risk, the best any model can " \
           "reach): 0.712" in card
    assert "  - splits: stratified 5-fold (seed 0)" in card  # a nested section, not a dict repr
    assert "{" not in card.split("## Performance")[1]
    assert "(selected epoch 0, inner-validation score 0.348). Seed 0." in card
    assert "edges 372.2, 800.7, 1242.5 days" in card
    assert "treatment arms: standard, targeted" in card
    # the stream table: sizes that do not apply read n/a, not 0 or blank
    assert "| genomics | slots | 12 | 4 | n/a |" in card
    assert "| ehr | events | n/a | n/a | 19 |" in card
    assert card.count("c_index") == 3


@pytest.mark.parametrize(("value", "want"), [(None, "n/a"), (math.nan, "n/a"), (-math.inf, "n/a"), ("x", "n/a"),
                                             (True, "n/a"), (0.5, "0.500"), (1, "1.000"), (0.61249, "0.612")])
def test_fmt_metric(value: object, want: str) -> None:
    assert fmt_metric(value) == want


def test_fmt_ci_and_value() -> None:
    assert fmt_ci([0.55, 0.67]) == "0.550–0.670"
    assert fmt_ci([0.55, None]) == fmt_ci(None) == fmt_ci([math.nan, 0.6]) == "n/a"
    assert [fmt_value(v) for v in (None, "", math.nan, 3, 0.25, [], ["a", "b"], False)] == [
        "n/a", "n/a", "n/a", "3", "0.250", "none", "a, b", "False"]
