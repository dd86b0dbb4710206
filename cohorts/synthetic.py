"""The embedded synthetic cohort: every modality in its real format, with planted, documented ground truth.

:func:`generate_synthetic_cohort` writes, under one folder (built in a temporary folder and renamed at the end)::

    manifest.yaml          the cohort manifest (multimodal.cohorts.manifest schema)
    outcomes.parquet       patient_id, subject_id, time, event, prediction_time, arm, response, split
    clinical.csv           patient_id, age, sex, stage, grade (some values missing)
    slides.csv             patient_id, slide_id, path
    slides/<slide>.h5      TRIDENT patch features + level-0 coords with attrs
    omics/expression.h5ad  X = log1p-normalized, layers["counts"] = raw counts; obs index = patient id
    omics/pathways.gmt     gene sets
    omics/mutations.maf    MAF (tab separated, '#version' header line)
    omics/sequenced_samples.txt
    meds/                  MEDS 0.4: data/<split>/<shard>.parquet, metadata/{codes,subject_splits}.parquet,
                           metadata/dataset.json
    ground_truth.json      the generative model, its parameters, per-patient truth and the oracle c-index
    ground_truth/patch_labels/<slide>.npy   per-patch phenotype cluster id (int8), rows aligned with the h5

The generative model is described in ``docs/synthetic.md``; its pieces live in ``synthetic_model`` (latents and
outcomes), ``synthetic_pathology``, ``synthetic_omics`` and ``synthetic_ehr``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from multimodal.cohorts.manifest import DAYS_PER_UNIT
from multimodal.cohorts.synthetic_ehr import (
    ACCEL_LAB,
    ACCEL_WINDOW_DAYS,
    CAUSAL_LAB,
    AcceleratingLab,
    EhrSubject,
    write_meds,
)
from multimodal.cohorts.synthetic_model import (
    CAUSAL_GENE,
    CAUSAL_PATHWAY_SIGNS,
    DRIVER_GENES,
    INTERACTION_GENE,
    INTERACTION_PARTS,
    INTERACTION_PATHWAY,
    MODIFIER_PATHWAYS,
    PART_MODALITY,
    PATHWAY_NAMES,
    PHENOTYPES,
    RESPONSE_PATHWAY,
    SIGNALS,
    STAGES,
    EffectSizes,
    Latents,
    LinearPredictor,
    Outcomes,
    arm_names,
    auroc,
    causal_pathways,
    draw_interaction_latents,
    draw_latents,
    draw_outcomes,
    harrell_c,
    linear_predictor,
    pathway_names,
    survival_prob,
    variance_shares,
    weibull_scale,
)
from multimodal.cohorts.synthetic_omics import make_panel, write_expression, write_gmt, write_mutations
from multimodal.cohorts.synthetic_pathology import SlideRecord, cluster_centres, plan_slides, write_slide
from multimodal.config import to_dict
from multimodal.errors import ConfigError
from multimodal.io import atomic_dir

TimeUnit = Literal["days", "weeks", "months", "years"]
Signal = Literal["additive", "interaction"]
HIGH_RISK_PHENOTYPE = "necrosis"
DATA_MODALITIES = ("pathology", "genomics", "ehr")
GROUND_TRUTH_FORMAT = 1
_EPOCH_2014 = np.datetime64("2014-01-01T09:00:00", "us")

# RNG stream ids: each part of the cohort draws from its own stream, so changing one knob (say patches per slide)
# leaves the other parts of the same seed unchanged.
_S_LATENT, _S_MISSING, _S_OUTCOME, _S_SPLIT, _S_TIMES, _S_CENTRES, _S_SLIDES = 1, 2, 3, 4, 5, 6, 7
_S_PANEL, _S_EXPR, _S_MUT, _S_EHR, _S_CLIN = 8, 9, 10, 11, 12
_S_INTERACTION, _S_EHR_ACCEL = 13, 14  # signal="interaction" only: its latents, the CEA rows


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes, knobs and effect sizes of the synthetic cohort (all defaults give the documented 200-patient cohort).

    Attributes:
        patients: number of patients.
        seed: random seed; the same seed gives the same cohort.
        patches_per_slide: mean patches per slide.
        patches_per_slide_sigma: log-normal spread of the patch count per slide (0 = exactly ``patches_per_slide``).
        min_patches_per_slide: lower bound on a slide's patch count.
        slides_per_patient: (min, max) slides per patient, drawn uniformly.
        embed_dim: patch embedding dimension.
        encoder: patch encoder name stored in the h5 ``features`` attrs.
        patch_size_level0: patch side in level-0 pixels on a 40x-native slide (a 20x-native slide gets half).
        vary_magnification: draw each slide's native magnification from {20, 40} (else all 40x).
        cluster_separation: expected distance between two phenotype centres, in units of the patch noise SD.
        patch_noise: per-dimension SD of a patch embedding around its centre.
        slide_shift_sd: per-dimension SD of the per-slide shift (stain / scanner batch effect).
        n_genes: genes in the expression panel.
        n_pathways: gene sets (pathways) in the GMT; each drives its member genes.
        missing_pathology: fraction of patients without slides.
        missing_genomics: fraction without expression / mutation data.
        missing_ehr: fraction without MEDS events.
        missing_clinical_values: per-field fraction of missing age / stage / grade values in clinical.csv.
        n_arms: treatment arms (1-4); arm 0 ``standard`` is the control.
        censoring_rate: target fraction of censored patients (reached by tuning the dropout rate).
        max_follow_up_days: administrative censoring time.
        time_unit: unit of ``time`` in outcomes.parquet (ground truth stays in days).
        horizons_days: horizons of the true survival probabilities in ground_truth.json.
        split_fractions: train / tuning / held_out fractions (MEDS subject splits, ``split`` column).
        meds_shard_size: subjects per MEDS parquet shard.
        effects: coefficients of the outcome models.
        signal: ``"additive"`` (log-hazard linear in the latents; the right model is linear) or ``"interaction"``
            (the additive parts plus tumour-adjacent immune patches, a pathway x mutation term and a lab's recent
            acceleration, which a model must read patches in place, cross data types or read trajectories to use;
            coefficients in ``effects.interaction``, docs/synthetic.md).
    """

    patients: int = 200
    seed: int = 0
    patches_per_slide: int = 2000
    patches_per_slide_sigma: float = 0.3
    min_patches_per_slide: int = 16
    slides_per_patient: tuple[int, ...] = (1, 3)  # (min, max); tuple[int, ...] because of config._coerce
    embed_dim: int = 64
    encoder: str = "synthetic-uni"
    patch_size_level0: int = 512
    vary_magnification: bool = True
    cluster_separation: float = 6.0
    patch_noise: float = 1.0
    slide_shift_sd: float = 0.3
    n_genes: int = 400
    n_pathways: int = 20
    missing_pathology: float = 0.15
    missing_genomics: float = 0.1
    missing_ehr: float = 0.1
    missing_clinical_values: float = 0.06
    n_arms: int = 2
    censoring_rate: float = 0.35
    max_follow_up_days: float = 3650.0
    time_unit: TimeUnit = "days"
    horizons_days: tuple[float, ...] = (365.0, 730.0, 1095.0, 1825.0)
    split_fractions: tuple[float, ...] = (0.7, 0.1, 0.2)
    meds_shard_size: int = 10_000
    effects: EffectSizes = field(default_factory=EffectSizes)
    signal: Signal = "additive"

    def __post_init__(self) -> None:
        def bad(name: str, expected: str, actual: object) -> None:
            msg = f"expected {expected}, got {actual!r}"
            raise ConfigError(msg, field=name)

        if self.signal not in SIGNALS:
            bad("signal", f"one of {list(SIGNALS)}", self.signal)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                bad(f.name, "a finite number", value)
        if self.patients < 4:
            bad("patients", "at least 4", self.patients)
        if self.patches_per_slide < 1 or self.min_patches_per_slide < 1:
            bad("patches_per_slide", ">= 1", (self.patches_per_slide, self.min_patches_per_slide))
        if len(self.slides_per_patient) != 2:
            bad("slides_per_patient", "two integers (min, max)", self.slides_per_patient)
        lo, hi = self.slides_per_patient
        if lo < 1 or hi < lo:
            bad("slides_per_patient", "(min >= 1, max >= min)", self.slides_per_patient)
        if self.embed_dim < 1:
            bad("embed_dim", ">= 1", self.embed_dim)
        if self.patch_size_level0 < 2 or self.patch_size_level0 % 2:
            bad("patch_size_level0", "an even number >= 2", self.patch_size_level0)
        if self.n_genes < len(DRIVER_GENES):
            bad("n_genes", f">= {len(DRIVER_GENES)} (the driver genes)", self.n_genes)
        if not 1 <= self.n_arms <= len(MODIFIER_PATHWAYS) + 1:
            bad("n_arms", f"1..{len(MODIFIER_PATHWAYS) + 1}", self.n_arms)
        needed = [n for n, _ in CAUSAL_PATHWAY_SIGNS[: self.effects.n_causal_pathways]]
        needed += list(MODIFIER_PATHWAYS[: self.n_arms - 1]) + [RESPONSE_PATHWAY]
        needed += [INTERACTION_PATHWAY] if self.signal == "interaction" else []
        min_pathways = 1 + max(PATHWAY_NAMES.index(n) for n in needed)
        if self.n_pathways < min_pathways:
            bad("n_pathways", f">= {min_pathways} (the causal and biomarker pathways)", self.n_pathways)
        for name in ("missing_pathology", "missing_genomics", "missing_ehr", "missing_clinical_values"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                bad(name, "a fraction in [0, 1]", value)
        present = sum(self.patients - round(f * self.patients) for f in self._missing_fractions().values())
        if present < self.patients:
            msg = (f"missing fractions {self._missing_fractions()} leave fewer modality slots ({present}) than "
                   f"patients ({self.patients}); every patient needs at least one of pathology/genomics/ehr")
            raise ConfigError(msg, field="missing_pathology")
        if not 0.0 <= self.censoring_rate < 1.0:
            bad("censoring_rate", "a fraction in [0, 1)", self.censoring_rate)
        if self.max_follow_up_days <= 0:
            bad("max_follow_up_days", "> 0", self.max_follow_up_days)
        fr = self.split_fractions
        if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
            bad("split_fractions", "three non-negative fractions summing to 1", self.split_fractions)
        if self.meds_shard_size < 1:
            bad("meds_shard_size", ">= 1", self.meds_shard_size)

    def _missing_fractions(self) -> dict[str, float]:
        return {"pathology": self.missing_pathology, "genomics": self.missing_genomics, "ehr": self.missing_ehr}


def generate_synthetic_cohort(
    out_dir: str | Path, config: SyntheticConfig | None = None, *, overwrite: bool = False, thumbnails: bool = False,
) -> Path:
    """Write a complete synthetic cohort under ``out_dir`` and return the path of its ``manifest.yaml``.

    The folder is built under a temporary name and renamed at the end, so it appears whole or not at all.

    Args:
        out_dir: output folder; must be absent or empty unless ``overwrite``.
        config: sizes and knobs (default :class:`SyntheticConfig`).
        overwrite: replace a non-empty ``out_dir``.
        thumbnails: also paint an H&E-like thumbnail of each slide's planted tissue map
            (:mod:`multimodal.cohorts.synthetic_thumbnails`), for report crops; the rest of the cohort is unchanged.

    Raises:
        InputError: ``out_dir`` exists and is not empty (and ``overwrite`` is false).
    """
    cfg = config or SyntheticConfig()
    target = Path(out_dir)
    with atomic_dir(target, overwrite=overwrite) as tmp:
        _generate_into(tmp, cfg)
        if thumbnails and (tmp / "slides.csv").is_file():
            from multimodal.cohorts.synthetic_thumbnails import write_thumbnails

            write_thumbnails(tmp, seed=cfg.seed)
    return target / "manifest.yaml"


# ---- orchestration ----------------------------------------------------------------------------------------------


def _rng(cfg: SyntheticConfig, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, stream])


def patient_ids(n: int) -> list[str]:
    width = max(4, len(str(n)))
    return [f"SYN-{i + 1:0{width}d}" for i in range(n)]


def draw_missing(rng: np.random.Generator, n: int, fractions: dict[str, float]) -> dict[str, np.ndarray]:
    """Exactly ``round(f * n)`` patients miss each modality; nobody misses all of them (swaps keep the counts)."""
    miss = {}
    for name, frac in fractions.items():
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[: round(frac * n)]] = True
        miss[name] = mask
    names = list(fractions)
    stacked = np.stack([miss[m] for m in names], axis=1)  # (n, M) True = missing
    for i in np.flatnonzero(stacked.all(axis=1)):
        for mi in np.argsort(stacked.sum(axis=0), kind="stable"):  # give back the most available modality first
            donors = np.flatnonzero(~stacked[:, mi] & ((~stacked).sum(axis=1) >= 2))
            if donors.size:
                j = int(donors[rng.integers(donors.size)])
                stacked[i, mi], stacked[j, mi] = False, True
                break
    return {m: stacked[:, k].copy() for k, m in enumerate(names)}


def _assign_splits(rng: np.random.Generator, n: int, fractions: tuple[float, ...]) -> np.ndarray:
    counts = np.floor(np.array(fractions) * n).astype(int)
    counts[0] += n - counts.sum()
    labels = np.repeat(np.array(["train", "tuning", "held_out"], dtype=object), counts)
    return labels[rng.permutation(n)]


@dataclass(frozen=True)
class _Cohort:
    """Everything drawn before writing; shared by the writers and the ground truth."""

    cfg: SyntheticConfig
    ids: list[str]
    subject_ids: np.ndarray
    pathways: list[str]
    arms: list[str]
    lat: Latents
    lp: LinearPredictor
    out: Outcomes
    missing: dict[str, np.ndarray]
    split: np.ndarray
    prediction_time: np.ndarray  # datetime64[us]


def _draw(cfg: SyntheticConfig) -> _Cohort:
    n = cfg.patients
    pathways = pathway_names(cfg.n_pathways)
    lat = draw_latents(_rng(cfg, _S_LATENT), n, cfg.n_pathways, cfg.n_arms)
    if cfg.signal == "interaction":
        inter = draw_interaction_latents(_rng(cfg, _S_INTERACTION), n, cfg.effects.interaction)
        lat = dataclasses.replace(lat, interaction=inter)
    lp = linear_predictor(lat, pathways, cfg.effects, cfg.n_arms)
    out = draw_outcomes(
        _rng(cfg, _S_OUTCOME), lat, lp, pathways, cfg.effects,
        censoring_rate=cfg.censoring_rate, max_follow_up_days=cfg.max_follow_up_days,
    )
    rng_t = _rng(cfg, _S_TIMES)
    days = rng_t.integers(0, 6 * 365, size=n)
    prediction_time = _EPOCH_2014 + days.astype("timedelta64[D]").astype("timedelta64[us]")
    return _Cohort(
        cfg=cfg, ids=patient_ids(n), subject_ids=np.arange(100_001, 100_001 + n, dtype=np.int64),
        pathways=pathways, arms=arm_names(cfg.n_arms), lat=lat, lp=lp, out=out,
        missing=draw_missing(_rng(cfg, _S_MISSING), n, cfg._missing_fractions()),
        split=_assign_splits(_rng(cfg, _S_SPLIT), n, cfg.split_fractions), prediction_time=prediction_time,
    )


def _generate_into(root: Path, cfg: SyntheticConfig) -> None:
    c = _draw(cfg)
    slides = _write_pathology(root, c)
    n_maf = _write_genomics(root, c)
    _write_ehr(root, c)
    _write_clinical(root, c)
    _write_outcomes(root, c)
    truth = _ground_truth(c, slides, n_maf)
    (root / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    (root / "manifest.yaml").write_text(yaml.safe_dump(_manifest(c), sort_keys=False))


def _present(c: _Cohort, modality: str) -> list[int]:
    return [int(i) for i in np.flatnonzero(~c.missing[modality])]


# ---- writers ----------------------------------------------------------------------------------------------------


def _write_pathology(root: Path, c: _Cohort) -> list[SlideRecord]:
    cfg = c.cfg
    idx = _present(c, "pathology")
    if not idx:
        return []
    (root / "slides").mkdir()
    (root / "ground_truth" / "patch_labels").mkdir(parents=True)
    centres = cluster_centres(_rng(cfg, _S_CENTRES), len(PHENOTYPES), cfg.embed_dim, cfg.cluster_separation)
    centres = centres * np.float32(cfg.patch_noise)
    plans = plan_slides(
        _rng(cfg, _S_SLIDES), [(i, c.ids[i]) for i in idx], c.lat.phenotype_mix, seed=cfg.seed,
        patches_per_slide=cfg.patches_per_slide, patches_sigma=cfg.patches_per_slide_sigma,
        min_patches=cfg.min_patches_per_slide, slides_per_patient=cfg.slides_per_patient,
        patch_size_level0=cfg.patch_size_level0, vary_magnification=cfg.vary_magnification,
        high_risk_index=PHENOTYPES.index(HIGH_RISK_PHENOTYPE),
        til_logit=None if c.lat.interaction is None else c.lat.interaction.til_logit,
    )
    records = [
        write_slide(root, p, centres, encoder=cfg.encoder, noise=cfg.patch_noise, shift_sd=cfg.slide_shift_sd)
        for p in plans
    ]
    table = pd.DataFrame(
        {"patient_id": [r.patient_id for r in records], "slide_id": [r.slide_id for r in records],
         "path": [r.path for r in records]}
    )
    table.to_csv(root / "slides.csv", index=False, lineterminator="\n")
    return records


def _write_genomics(root: Path, c: _Cohort) -> int:
    cfg = c.cfg
    idx = _present(c, "genomics")
    if not idx:
        return 0
    omics = root / "omics"
    omics.mkdir()
    panel = make_panel(_rng(cfg, _S_PANEL), cfg.n_genes, c.pathways)
    ids = [c.ids[i] for i in idx]
    samples = [f"{p}-01A" for p in ids]
    write_expression(omics / "expression.h5ad", _rng(cfg, _S_EXPR), panel, ids, samples,
                     c.lat.pathway_activity[idx])
    write_gmt(omics / "pathways.gmt", panel)
    drivers = {g: status[idx] for g, status in c.lat.driver_mutated.items()}
    return write_mutations(omics / "mutations.maf", omics / "sequenced_samples.txt", _rng(cfg, _S_MUT), panel,
                           samples, drivers)


def _write_ehr(root: Path, c: _Cohort) -> None:
    idx = _present(c, "ehr")
    if not idx:
        return
    from multimodal import __version__

    pt_us = c.prediction_time.astype(np.int64)
    subjects = [
        EhrSubject(
            subject_id=int(c.subject_ids[i]), split=str(c.split[i]), prediction_time_us=int(pt_us[i]),
            age=float(c.lat.age[i]), sex=str(c.lat.sex[i]), ldh_base=float(c.lat.ldh_base[i]),
            ldh_slope=float(c.lat.ldh_slope[i]), treatment_code=f"TREATMENT//{c.arms[c.lat.arm[i]].upper()}",
            observed_days=float(c.out.time[i]), died=bool(c.out.event[i]), accel_lab=_accel_lab(c, i),
        )
        for i in idx
    ]
    extra = _rng(c.cfg, _S_EHR_ACCEL) if c.lat.interaction is not None else None
    write_meds(
        root / "meds", _rng(c.cfg, _S_EHR), subjects, dataset_name="multimodal-synthetic",
        dataset_version=f"seed{c.cfg.seed}-n{c.cfg.patients}", etl_version=__version__,
        shard_size=c.cfg.meds_shard_size, extra_rng=extra,
    )


def _accel_lab(c: _Cohort, i: int) -> AcceleratingLab | None:
    il = c.lat.interaction
    if il is None:
        return None
    rise = c.cfg.effects.interaction.acceleration_log_rise * float(il.z_accel[i])
    return AcceleratingLab(log_level=float(il.cea_log_level[i]), log_slope=float(il.cea_log_slope[i]), log_rise=rise)


def _write_clinical(root: Path, c: _Cohort) -> None:
    rng = _rng(c.cfg, _S_CLIN)
    n = len(c.ids)
    frac = c.cfg.missing_clinical_values
    age = np.where(rng.random(n) < frac, np.nan, c.lat.age)
    stage = np.array([STAGES[s] for s in c.lat.stage], dtype=object)
    stage[rng.random(n) < frac] = None
    grade = np.array([f"G{g}" for g in c.lat.grade], dtype=object)
    grade[rng.random(n) < frac] = None
    table = pd.DataFrame({"patient_id": c.ids, "age": age, "sex": c.lat.sex, "stage": stage, "grade": grade})
    table.to_csv(root / "clinical.csv", index=False, lineterminator="\n")


def _write_outcomes(root: Path, c: _Cohort) -> None:
    per_unit = DAYS_PER_UNIT[c.cfg.time_unit]
    table = pa.table(
        {
            "patient_id": pa.array(c.ids, pa.string()),
            "subject_id": pa.array(c.subject_ids, pa.int64()),
            "time": pa.array(c.out.time / per_unit, pa.float64()),
            "event": pa.array(c.out.event, pa.bool_()),
            "prediction_time": pa.array(c.prediction_time.astype(np.int64), pa.timestamp("us")),
            "arm": pa.array([c.arms[a] for a in c.lat.arm], pa.string()),
            "response": pa.array(c.out.response, pa.int64()),
            "split": pa.array(c.split.tolist(), pa.string()),
        }
    )
    pq.write_table(table, root / "outcomes.parquet")


def _manifest(c: _Cohort) -> dict[str, Any]:
    cfg = c.cfg
    patients: dict[str, Any] = {
        "path": "outcomes.parquet", "id": "patient_id", "time": "time", "event": "event",
        "time_unit": cfg.time_unit, "prediction_time": "prediction_time",
    }
    if cfg.n_arms > 1:
        patients |= {"treatment": "arm", "treatment_arms": list(c.arms)}
    patients |= {"response": "response", "response_classes": 2, "meds_subject_id": "subject_id"}
    mods: dict[str, Any] = {}
    if _present(c, "pathology"):
        mods["pathology"] = {"type": "slides", "table": "slides.csv", "patient_column": "patient_id",
                             "slide_column": "slide_id", "path_column": "path", "format": "trident"}
    if _present(c, "genomics"):
        mods["genomics"] = {
            "type": "omics", "expression": "omics/expression.h5ad", "mutations": "omics/mutations.maf",
            "mutation_samples": "omics/sequenced_samples.txt",
            "mutation_patient_pattern": r"^(?P<patient>.+)-\d{2}[A-Z]$",
        }
    if _present(c, "ehr"):
        mods["ehr"] = {"type": "meds", "path": "meds"}
    mods["clinical"] = {"type": "clinical", "path": "clinical.csv", "id": "patient_id",
                        "categorical": ["sex", "stage", "grade"], "numeric": ["age"]}
    return {"version": 1, "name": f"synthetic-seed{cfg.seed}-n{cfg.patients}", "patients": patients,
            "modalities": mods}


# ---- ground truth -----------------------------------------------------------------------------------------------


def _r(x: float) -> float:
    return round(float(x), 6)


def _assigned_parts(c: _Cohort) -> dict[str, np.ndarray]:
    """The prognostic parts plus ``treatment`` (the assigned arm's effect): they sum to the assigned lp."""
    n = len(c.ids)
    return {**c.lp.parts, "treatment": c.lp.arm_effect[np.arange(n), c.lat.arm]}


def _variance_truth(c: _Cohort) -> dict[str, Any]:
    """Each part's and modality's share of the variance of the assigned log-hazard, and oracles without a modality."""
    parts = _assigned_parts(c)
    total = np.sum(list(parts.values()), axis=0)
    modality = {PART_MODALITY.get(k, k) for k in parts}
    by_modality = {m: np.sum([v for k, v in parts.items() if PART_MODALITY.get(k, k) == m], axis=0)
                   for m in ("pathology", "genomics", "ehr", "clinical", "treatment") if m in modality}
    inter = [v for k, v in parts.items() if k in INTERACTION_PARTS]
    inter_sum = np.sum(inter, axis=0) if inter else np.zeros_like(total)
    without = {m: _r(harrell_c(c.out.time, c.out.event, total - by_modality[m])) for m in DATA_MODALITIES}
    return {
        "log_hazard_variance": _r(np.var(total)),
        "variance_share_by_part": {k: _r(v) for k, v in variance_shares(parts, total).items()},
        "variance_share_by_modality": {k: _r(v) for k, v in variance_shares(by_modality, total).items()},
        "interaction_variance_share": _r(variance_shares({"i": inter_sum}, total)["i"]),
        "oracle_c_index_without_pathology": without["pathology"],
        "oracle_c_index_without_modality": without,
        "variance_note": "share = var(part) / var(lp) over all patients, lp = assigned-arm linear predictor (the "
                         "sum of the parts, treatment included); the parts are drawn independently, so the shares "
                         "sum to 1 up to their sample covariances; oracle_c_index_without_<m> = Harrell c of lp minus "
                         "every part of modality m",
    }


def _interaction_truth(c: _Cohort) -> dict[str, Any]:
    """What ``signal="interaction"`` plants (``causal.interactions`` of the ground truth)."""
    ie = c.cfg.effects.interaction
    return {
        "pathology_spatial": {
            "modality": "pathology", "latent": "z_til", "log_hr_per_sd": ie.til,
            "feature": "share of immune patches (cluster 2) with a tumour patch (cluster 0) among their 8 grid "
                       "neighbours (coords / patch_size_level0); the immune fraction itself carries no signal",
            "til_share": f"sigmoid({ie.til_logit_sd} * z_til) per patient, slide logit + N(0, 0.25^2)",
        },
        "genomics_x_mutation": {
            "modality": "genomics", "pathway": INTERACTION_PATHWAY, "gene": INTERACTION_GENE,
            "log_hr": ie.pathway_x_mutation, "prevalence": DRIVER_GENES[INTERACTION_GENE][0],
            "term": f"a[{INTERACTION_PATHWAY}] * ({INTERACTION_GENE}_nonsilent - {DRIVER_GENES[INTERACTION_GENE][0]})",
        },
        "ehr_acceleration": {
            "modality": "ehr", "code": ACCEL_LAB, "latent": "z_accel", "log_hr_per_sd": ie.acceleration,
            "window_days": ACCEL_WINDOW_DAYS, "log_rise_per_sd": ie.acceleration_log_rise,
            "feature": f"change of log {ACCEL_LAB} over the {ACCEL_WINDOW_DAYS:g} days before prediction_time; "
                       "its long-run level and slope carry no signal",
        },
    }


def _interaction_latent(c: _Cohort, i: int) -> dict[str, Any]:
    il = c.lat.interaction
    if il is None:
        return {}
    return {"z_til": _r(il.z_til[i]), "til_share": _r(il.til_share[i]), "z_accel": _r(il.z_accel[i]),
            "cea_log_level": _r(il.cea_log_level[i]), "cea_log_slope_per_year": _r(il.cea_log_slope[i])}


def _ground_truth(c: _Cohort, slides: list[SlideRecord], n_maf_rows: int) -> dict[str, Any]:
    from multimodal import __version__

    cfg, lat, lp, out = c.cfg, c.lat, c.lp, c.out
    eff = cfg.effects
    n = len(c.ids)
    by_arm = lp.by_arm
    assigned = by_arm[np.arange(n), lat.arm]
    horizons = np.array(cfg.horizons_days, dtype=float)
    surv = survival_prob(horizons[None, :], by_arm[:, :, None], eff)  # (n, arms, H)
    slides_of: dict[str, list[str]] = {}
    for r in slides:
        slides_of.setdefault(r.patient_id, []).append(r.slide_id)
    hr = PHENOTYPES.index(HIGH_RISK_PHENOTYPE)
    patients = []
    for i, pid in enumerate(c.ids):
        a = int(lat.arm[i])
        patients.append({
            "patient_id": pid,
            "subject_id": int(c.subject_ids[i]),
            "split": str(c.split[i]),
            "arm": c.arms[a],
            "arm_index": a,
            "linear_predictor": _r(assigned[i]),
            "linear_predictor_by_arm": {arm: _r(by_arm[i, j]) for j, arm in enumerate(c.arms)},
            "risk_parts": {**{k: _r(v[i]) for k, v in lp.parts.items()}, "treatment": _r(lp.arm_effect[i, a])},
            "survival_at_horizons": {f"{h:g}": _r(surv[i, a, k]) for k, h in enumerate(horizons)},
            "survival_at_horizons_by_arm": {
                arm: {f"{h:g}": _r(surv[i, j, k]) for k, h in enumerate(horizons)} for j, arm in enumerate(c.arms)
            },
            "response_probability_by_arm": {arm: _r(out.response_prob[i, j]) for j, arm in enumerate(c.arms)},
            "true_event_time_days": _r(out.event_time[i]),
            "censoring_time_days": _r(out.censor_time[i]),
            "latent": {
                "high_risk_fraction": _r(lat.high_risk_fraction[i]),
                "z_high_risk": _r(lat.z_path[i]),
                "phenotype_mix": {name: _r(lat.phenotype_mix[i, k]) for k, name in enumerate(PHENOTYPES)},
                "pathway_activity": {name: _r(lat.pathway_activity[i, k]) for k, name in enumerate(c.pathways)},
                "driver_mutations": {g: bool(s[i]) for g, s in lat.driver_mutated.items()},
                "ldh_base": _r(lat.ldh_base[i]),
                "ldh_slope_per_year": _r(lat.ldh_slope[i]),
                "z_ldh_slope": _r(lat.z_lab[i]),
                "age": _r(lat.age[i]),
                "sex": str(lat.sex[i]),
                "stage": STAGES[int(lat.stage[i])],
                "grade": int(lat.grade[i]),
                **_interaction_latent(c, i),
            },
            "missing_modalities": [m for m in DATA_MODALITIES if c.missing[m][i]],
            "slides": slides_of.get(pid, []),
        })
    variance = _variance_truth(c)
    oracle = {
        "c_index_harrell": _r(harrell_c(out.time, out.event, assigned)),
        "c_index_prognostic_only": _r(harrell_c(out.time, out.event, lp.prognostic)),
        "c_index_by_modality": {k: _r(harrell_c(out.time, out.event, v)) for k, v in lp.parts.items()},
        "c_index_without_modality": variance["oracle_c_index_without_modality"],
        "response_auroc": _r(auroc(out.response.astype(bool), out.response_prob[np.arange(n), lat.arm])),
        "n_patients": n,
        "n_events": int(out.event.sum()),
        "censoring_fraction": _r(1.0 - out.event.mean()),
        "note": "risk = true linear predictor under the assigned arm, computed from latent variables (also for "
                "patients whose modality is missing); time/event as in outcomes.parquet",
    }
    modifiers = {c.arms[j]: MODIFIER_PATHWAYS[j - 1] for j in range(1, cfg.n_arms)}
    causal = {
        "pathways": [name for name, _ in causal_pathways(eff)],
        "pathway_effects": {name: beta for name, beta in causal_pathways(eff)},
        "genes": [CAUSAL_GENE],
        "gene_effects": {CAUSAL_GENE: eff.driver},
        "gene_rule": "non-silent mutation (Missense, Nonsense, Frame_Shift, Splice_Site ...); Silent rows are noise",
        "decoy_genes": [g for g in DRIVER_GENES if g != CAUSAL_GENE],
        "ehr_codes": [CAUSAL_LAB],
        "ehr_feature": f"slope of {CAUSAL_LAB} over the year before prediction_time (log-HR per SD of the slope)",
        "ehr_effect": eff.lab_slope,
        "high_risk_phenotype": HIGH_RISK_PHENOTYPE,
        "high_risk_cluster_id": hr,
        "high_risk_effect": eff.high_risk_phenotype,
        "phenotypes": list(PHENOTYPES),
        "clinical_effects": {"age_per_10y": eff.age, "stage_per_step": eff.stage},
        "treatment": {
            "control_arm": c.arms[0],
            "biomarker_pathways": modifiers,
            "log_hr_main": eff.treatment if cfg.n_arms > 1 else 0.0,
            "log_hr_per_sd_biomarker": eff.treatment_modifier if cfg.n_arms > 1 else 0.0,
        },
        "response": {
            "pathway": RESPONSE_PATHWAY,
            "biomarker_pathways": modifiers,
        },
    }
    if cfg.signal == "interaction":
        causal["interactions"] = _interaction_truth(c)
    equation = "S(t|x) = exp(-(t/scale)^shape * exp(lp)); lp = pathology + genomics + ehr + clinical + treatment"
    if cfg.signal == "interaction":
        equation += " + pathology_spatial + genomics_x_mutation + ehr_acceleration (docs/synthetic.md eq. 1, 2, 4)"
    else:
        equation += " (docs/synthetic.md eq. 1-2)"
    model = {
        "survival": {
            "family": "weibull_proportional_hazards",
            "equation": equation,
            "shape": eff.weibull_shape,
            "scale_days": _r(weibull_scale(eff)),
            "baseline_median_days": eff.baseline_median_days,
        },
        "censoring": {
            "type": "C = min(Exponential(rate), max_follow_up_days), independent of everything else",
            "rate_per_day": out.censor_rate,
            "max_follow_up_days": cfg.max_follow_up_days,
            "target_fraction": cfg.censoring_rate,
            "achieved_fraction": _r(1.0 - out.event.mean()),
        },
        "response": {
            "family": "logistic",
            "equation": "logit p = intercept + b_pathway*a[RESPONSE_PATHWAY] + b_driver*TP53 + "
                        "1[arm>0]*(b_treatment + b_modifier*a[biomarker(arm)])",
        },
        "treatment_assignment": "balanced random permutation (RCT-like), independent of all covariates",
        "effects": to_dict(eff),
        "time_unit_of_outcomes": cfg.time_unit,
        "time_unit_of_ground_truth": "days",
    }
    slide_truth = {
        r.slide_id: {
            "patient_id": r.patient_id, "path": r.path, "labels_path": r.labels_path, "n_patches": r.n_patches,
            "patch_size_level0": r.patch_size_level0, "level0_magnification": r.level0_magnification,
            "high_risk_fraction": r.phenotype_fractions[hr],
            "phenotype_fractions": dict(zip(PHENOTYPES, r.phenotype_fractions, strict=True)),
            **({} if r.til_target is None else {"til_target": r.til_target, "til_score": r.til_score}),
        }
        for r in slides
    }
    return {
        "generator": {"name": "multimodal.cohorts.synthetic", "package_version": __version__,
                      "format_version": GROUND_TRUTH_FORMAT},
        "config": to_dict(cfg),
        "signal": cfg.signal,
        "arms": list(c.arms),
        "pathways": list(c.pathways),
        "causal": causal,
        "model": model,
        "oracle": oracle,
        **{k: v for k, v in variance.items() if k != "oracle_c_index_without_modality"},
        "counts": {
            "patients": n,
            "with_modality": {m: int((~c.missing[m]).sum()) for m in DATA_MODALITIES},
            "slides": len(slides),
            "patches": int(sum(r.n_patches for r in slides)),
            "maf_rows": n_maf_rows,
        },
        "patients": patients,
        "slides": slide_truth,
    }


# ---- reading the ground truth back (for tests and benchmarks) -------------------------------------------------------


def load_ground_truth(path: str | Path) -> dict[str, Any]:
    """The ``ground_truth.json`` of a synthetic cohort; ``path`` is the cohort folder, its manifest or the JSON."""
    p = Path(path)
    if p.is_dir():
        p = p / "ground_truth.json"
    elif p.name != "ground_truth.json":
        p = p.parent / "ground_truth.json"
    if not p.is_file():
        msg = "no ground_truth.json here: not a cohort written by 'multimodal synth'"
        raise ConfigError(msg, file=p, hint="pass the folder written by 'multimodal synth'")
    return json.loads(p.read_text())


def patch_labels(root: str | Path, slide_id: str) -> np.ndarray:
    """(N,) int8 planted phenotype cluster id of each patch of ``slide_id`` (rows aligned with its h5 file)."""
    root = Path(root)
    if root.is_file():
        root = root.parent
    return np.load(root / "ground_truth" / "patch_labels" / f"{slide_id}.npy", allow_pickle=False)


def high_risk_patch_mask(root: str | Path, slide_id: str) -> np.ndarray:
    """(N,) bool: True where the patch belongs to the high-risk phenotype (the target of patch attributions)."""
    return patch_labels(root, slide_id) == PHENOTYPES.index(HIGH_RISK_PHENOTYPE)
