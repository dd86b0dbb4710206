"""``signal="interaction"``: the three non-additive mechanisms are really in the files, and the truth describes them.

Each mechanism is checked from the written files the way a model would have to read it: the TIL share from the h5
coords and the patch labels, the CEA acceleration from the MEDS rows at or before the prediction time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import polars as pl
import pytest

from multimodal.cli.main import main
from multimodal.cohorts.synthetic import (
    SyntheticConfig,
    generate_synthetic_cohort,
    load_ground_truth,
    patch_labels,
)
from multimodal.cohorts.synthetic_model import PHENOTYPES, EffectSizes, InteractionEffects
from multimodal.cohorts.synthetic_pathology import IMMUNE, TUMOUR, place_immune, tumour_adjacent_share
from multimodal.config import from_dict
from multimodal.errors import ConfigError

INTER = SyntheticConfig(patients=120, patches_per_slide=150, seed=1, signal="interaction")
NEW_PARTS = ("pathology_spatial", "genomics_x_mutation", "ehr_acceleration")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_ix") / "cohort"
    generate_synthetic_cohort(root, INTER)
    return root


@pytest.fixture(scope="module")
def truth(cohort: Path) -> dict:
    return load_ground_truth(cohort)


def _corr(a: list[float] | np.ndarray, b: list[float] | np.ndarray) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


# ---- ground truth -----------------------------------------------------------------------------------------------


def test_interaction_truth_records_parts_latents_and_shares(truth: dict) -> None:
    assert truth["signal"] == "interaction" and truth["config"]["signal"] == "interaction"
    assert set(truth["causal"]["interactions"]) == set(NEW_PARTS)
    eff = truth["model"]["effects"]["interaction"]
    for p in truth["patients"]:
        lat, parts = p["latent"], p["risk_parts"]
        hyp = lat["pathway_activity"]["SYN_HYPOXIA"]
        expect = {
            "pathology_spatial": eff["til"] * lat["z_til"],
            "genomics_x_mutation": eff["pathway_x_mutation"] * hyp * (lat["driver_mutations"]["TP53"] - 0.45),
            "ehr_acceleration": eff["acceleration"] * lat["z_accel"],
        }
        for k, v in expect.items():
            assert parts[k] == pytest.approx(v, abs=1e-5), (p["patient_id"], k)
        assert p["linear_predictor"] == pytest.approx(sum(parts.values()), abs=1e-5)
        assert lat["til_share"] == pytest.approx(1 / (1 + np.exp(-eff["til_logit_sd"] * lat["z_til"])), abs=1e-5)
    with_til = [s for s in truth["slides"].values() if s["til_score"] is not None]
    assert len(with_til) > 0.9 * len(truth["slides"])
    assert all(0 <= s["til_score"] <= 1 and 0 < s["til_target"] < 1 for s in with_til)


def test_variance_shares_match_the_parts_and_sum_as_documented(truth: dict) -> None:
    parts = pd.DataFrame([p["risk_parts"] for p in truth["patients"]])
    lp = np.array([p["linear_predictor"] for p in truth["patients"]])
    shares = truth["variance_share_by_part"]
    assert set(shares) == set(parts.columns)
    for k, v in shares.items():
        assert 0 < v < 1, k
        assert v == pytest.approx(np.var(parts[k].to_numpy()) / np.var(lp), abs=1e-3), k
    # independent parts: the shares sum to 1 up to their sample covariances
    assert sum(shares.values()) == pytest.approx(1.0, abs=0.15)
    inter = parts[list(NEW_PARTS)].sum(axis=1).to_numpy()
    assert truth["interaction_variance_share"] == pytest.approx(np.var(inter) / np.var(lp), abs=1e-3)
    assert 0.25 < truth["interaction_variance_share"] < 0.6
    by_mod = truth["variance_share_by_modality"]
    assert set(by_mod) == {"pathology", "genomics", "ehr", "clinical", "treatment"}
    assert all(0 < v < 1 for v in by_mod.values())
    path = (parts["pathology"] + parts["pathology_spatial"]).to_numpy()
    assert by_mod["pathology"] == pytest.approx(np.var(path) / np.var(lp), abs=1e-3)
    assert sum(by_mod.values()) == pytest.approx(1.0, abs=0.15)
    oracle = truth["oracle"]
    assert truth["oracle_c_index_without_pathology"] == oracle["c_index_without_modality"]["pathology"]
    assert 0.5 < truth["oracle_c_index_without_pathology"] < oracle["c_index_harrell"]


# ---- the mechanisms are in the files ----------------------------------------------------------------------------


def _tumour_neighbour_share(coords: np.ndarray, labels: np.ndarray, patch_size: int) -> tuple[int, int]:
    """(immune patches with a tumour patch among their 8 grid neighbours, immune patches), from h5 coords."""
    cells = coords // patch_size
    tumour = {(int(x), int(y)) for x, y in cells[labels == TUMOUR]}
    immune = cells[labels == IMMUNE]
    near = sum(any((int(x) + dx, int(y) + dy) in tumour for dx in (-1, 0, 1) for dy in (-1, 0, 1)) for x, y in immune)
    return near, len(immune)


def test_tumour_adjacent_immune_share_tracks_the_til_latent_and_the_fraction_does_not(cohort: Path,
                                                                                     truth: dict) -> None:
    slides = pd.read_csv(cohort / "slides.csv")
    z_til = {p["patient_id"]: p["latent"]["z_til"] for p in truth["patients"]}
    share, fraction, z = [], [], []
    for pid, grp in slides.groupby("patient_id"):
        near = immune = total = 0
        for sid, path in zip(grp.slide_id, grp.path, strict=True):
            with h5py.File(cohort / path, "r") as f:
                coords, ps0 = f["coords"][:], int(f["coords"].attrs["patch_size_level0"])
            labels = patch_labels(cohort, sid)
            a, b = _tumour_neighbour_share(coords, labels, ps0)
            near, immune, total = near + a, immune + b, total + labels.size
        if immune:
            share.append(near / immune)
            fraction.append(immune / total)
            z.append(z_til[pid])
    assert len(z) > 80
    assert _corr(share, z) > 0.5
    assert abs(_corr(fraction, z)) < 0.2
    assert np.std(share) > 0.15  # the share really varies between patients


def _cea(cohort: Path) -> pl.DataFrame:
    data = pl.read_parquet(sorted((cohort / "meds" / "data").glob("*/*.parquet")))
    out = pl.read_parquet(cohort / "outcomes.parquet").select("subject_id", "patient_id", "prediction_time")
    return data.join(out, on="subject_id").filter(pl.col("code") == "LAB//CEA").with_columns(
        days_before=(pl.col("prediction_time") - pl.col("time")).dt.total_seconds() / 86400.0,
        log_value=pl.col("numeric_value").cast(pl.Float64).log(),
    )


def test_recent_cea_change_tracks_z_accel_and_the_long_run_level_does_not(cohort: Path, truth: dict) -> None:
    cea = _cea(cohort)
    assert cea.filter(pl.col("days_before") < 0).height > 0  # follow-up rows after prediction_time: leakage bait
    z_accel = {p["patient_id"]: p["latent"]["z_accel"] for p in truth["patients"]}
    change, level, z = [], [], []
    for (pid,), grp in cea.filter(pl.col("days_before") >= 0).sort("days_before").group_by(
            ["patient_id"], maintain_order=True):
        old = grp.filter(pl.col("days_before") >= 90)
        if old.height == 0:
            continue
        change.append(grp["log_value"][0] - old["log_value"][0])  # latest value - latest value >= 90 days back
        level.append(old["log_value"].mean())
        z.append(z_accel[pid])
    assert len(z) > 80
    assert _corr(change, z) > 0.6
    assert abs(_corr(level, z)) < 0.2


def test_interaction_keeps_the_additive_latents_of_the_seed(cohort: Path, truth: dict, tmp_path: Path) -> None:
    add_root = tmp_path / "additive"
    generate_synthetic_cohort(add_root, dataclasses.replace(INTER, signal="additive"))
    add = load_ground_truth(add_root)
    assert add["signal"] == "additive" and add["interaction_variance_share"] == 0.0
    assert "interactions" not in add["causal"] and "z_til" not in add["patients"][0]["latent"]
    assert set(add["variance_share_by_part"]) == {"pathology", "genomics", "ehr", "clinical", "treatment"}
    for a, b in zip(add["patients"], truth["patients"], strict=True):
        assert {k: v for k, v in b["latent"].items() if k in a["latent"]} == a["latent"]
        assert {k: b["risk_parts"][k] for k in ("pathology", "genomics", "ehr", "clinical")} == \
            {k: a["risk_parts"][k] for k in ("pathology", "genomics", "ehr", "clinical")}
    for rel in ("omics/expression.h5ad", "omics/mutations.maf"):
        assert (add_root / rel).read_bytes() == (cohort / rel).read_bytes(), rel
    assert _cea(add_root).height == 0


def test_interaction_cohort_validates(cohort: Path) -> None:
    assert main(["validate", str(cohort / "manifest.yaml")]) == 0


# ---- placement unit -------------------------------------------------------------------------------------------------


def test_place_immune_puts_the_requested_share_next_to_tumour() -> None:
    cols, rows = np.meshgrid(np.arange(30), np.arange(30))
    grid = np.stack([cols.ravel(), rows.ravel()], axis=1).astype(np.int64)
    labels = np.full(grid.shape[0], PHENOTYPES.index("stroma"), dtype=np.int8)
    labels[(grid[:, 0] < 10) & (grid[:, 1] < 10)] = TUMOUR  # a tumour block in one corner
    for share in (0.0, 0.5, 1.0):
        out = place_immune(np.random.default_rng(0), grid, labels, 20, share)
        assert (out == IMMUNE).sum() == 20 and (out == TUMOUR).sum() == 100
        assert tumour_adjacent_share(grid, out) == pytest.approx(share)
    # the rim holds 21 cells: asking for more puts the rest as near as possible, so the realised share saturates
    out = place_immune(np.random.default_rng(0), grid, labels, 42, 1.0)
    assert tumour_adjacent_share(grid, out) == pytest.approx(0.5)
    far = place_immune(np.random.default_rng(0), grid, labels, 20, 0.0)
    assert grid[far == IMMUNE].min() >= 20  # the far ones sit in the opposite corner


# ---- configuration and CLI ----------------------------------------------------------------------------------------


def test_signal_default_and_validation() -> None:
    assert SyntheticConfig().signal == "additive"
    with pytest.raises(ConfigError) as info:
        SyntheticConfig(signal="nonlinear")  # type: ignore[arg-type]
    assert info.value.field == "signal"
    with pytest.raises(ConfigError) as info:
        from_dict(SyntheticConfig, {"signal": "interactions"})
    assert info.value.field == "signal"
    with pytest.raises(ConfigError):
        EffectSizes(interaction=InteractionEffects(til_logit_sd=0.0))
    assert from_dict(SyntheticConfig, {"signal": "interaction"}).signal == "interaction"


def test_cli_signal_option(tmp_path: Path) -> None:
    out = tmp_path / "ix"
    assert main(["synth", "--out", str(out), "--patients", "8", "--patches-per-slide", "40",
                 "--signal", "interaction"]) == 0
    gt = load_ground_truth(out)
    assert gt["signal"] == "interaction" and "ehr_acceleration" in gt["variance_share_by_part"]
    assert main(["synth", "--out", str(tmp_path / "bad"), "--signal", "quadratic"]) == 2
