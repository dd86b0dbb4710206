"""The planted generative model of the synthetic cohort: latent patient variables, hazards, outcomes, response.

Everything here is pure numpy and writes no files. :func:`draw_latents` draws the per-patient truth (tissue
phenotype mix, pathway activities, driver mutations, lab trend, clinical variables, arm); :func:`draw_outcomes` turns
it into survival times (Weibull proportional hazards), independent censoring and a binary response. The equations are
documented in ``docs/synthetic.md`` and recorded in ``ground_truth.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from multimodal.errors import ConfigError

#: Tissue phenotypes of the patch-embedding clusters; the cluster id is the position in this tuple.
PHENOTYPES: tuple[str, ...] = ("tumour", "stroma", "immune", "necrosis", "fat", "normal")
#: Dirichlet concentration of the non-high-risk phenotypes (same order as PHENOTYPES, high-risk entry unused).
PHENOTYPE_CONCENTRATION: tuple[float, ...] = (3.0, 2.0, 1.5, 0.0, 0.7, 1.5)

#: Pathway names (the first ``n_pathways`` are used; extra ones are numbered).
PATHWAY_NAMES: tuple[str, ...] = (
    "SYN_PROLIFERATION", "SYN_HYPOXIA", "SYN_IMMUNE_RESPONSE", "SYN_RTK_SIGNALING", "SYN_DNA_REPAIR",
    "SYN_ANGIOGENESIS", "SYN_GLYCOLYSIS", "SYN_EMT", "SYN_APOPTOSIS", "SYN_WNT_SIGNALING", "SYN_NOTCH_SIGNALING",
    "SYN_HEDGEHOG_SIGNALING", "SYN_INTERFERON_RESPONSE", "SYN_OXIDATIVE_PHOSPHORYLATION",
    "SYN_FATTY_ACID_METABOLISM", "SYN_TGF_BETA_SIGNALING", "SYN_P53_PATHWAY", "SYN_MTORC1_SIGNALING",
    "SYN_KRAS_SIGNALING", "SYN_INFLAMMATORY_RESPONSE",
)
#: Prognostic pathways in order of use, with the sign of their log-hazard effect.
CAUSAL_PATHWAY_SIGNS: tuple[tuple[str, float], ...] = (
    ("SYN_PROLIFERATION", 1.0), ("SYN_HYPOXIA", 1.0), ("SYN_IMMUNE_RESPONSE", -1.0),
    ("SYN_GLYCOLYSIS", 1.0), ("SYN_EMT", 1.0),
)
#: Biomarker pathway of experimental arm j (arm 0 is the control arm).
MODIFIER_PATHWAYS: tuple[str, ...] = ("SYN_RTK_SIGNALING", "SYN_DNA_REPAIR", "SYN_ANGIOGENESIS")
#: Pathway whose activity raises the response probability in every arm.
RESPONSE_PATHWAY = "SYN_IMMUNE_RESPONSE"

#: Driver genes: name -> (prevalence of a non-silent mutation, chromosome, GRCh38 start, gene length).
DRIVER_GENES: dict[str, tuple[float, str, int, int]] = {
    "TP53": (0.45, "17", 7_668_402, 19_149),
    "KRAS": (0.25, "12", 25_205_246, 45_684),
    "EGFR": (0.12, "7", 55_019_017, 192_612),
    "PIK3CA": (0.15, "3", 179_148_114, 91_979),
    "STK11": (0.12, "19", 1_205_778, 22_654),
    "KEAP1": (0.10, "19", 10_486_120, 17_770),
    "BRAF": (0.05, "7", 140_719_327, 205_602),
    "PTEN": (0.08, "10", 87_863_113, 108_818),
}
#: The driver whose non-silent mutation raises risk (the others are decoys).
CAUSAL_GENE = "TP53"
#: Other named genes placed in the expression panel (no mutation model).
OTHER_NAMED_GENES: tuple[str, ...] = ("CDKN2A", "RB1", "ERBB2", "MYC", "SMAD4", "NF1", "ARID1A", "APC")

STAGES: tuple[str, ...] = ("I", "II", "III", "IV")
STAGE_PROBS: tuple[float, ...] = (0.25, 0.30, 0.27, 0.18)

# Population constants of the latent variables (documented in docs/synthetic.md).
HIGH_RISK_LOGIT_MEAN = -2.2
HIGH_RISK_LOGIT_SD = 0.9
AGE_MEAN, AGE_SD, AGE_MIN, AGE_MAX = 64.0, 10.0, 25.0, 92.0
LDH_BASE_MEAN, LDH_BASE_SD = 210.0, 35.0
LDH_SLOPE_MEAN, LDH_SLOPE_SD = 20.0, 60.0  # U/L per year

#: The log-hazard signals a cohort can carry: ``additive`` (linear in the latents) or ``interaction`` (additive plus
#: the three non-additive mechanisms of :class:`InteractionEffects`; docs/synthetic.md, "The interaction signal").
SIGNALS: tuple[str, ...] = ("additive", "interaction")
#: Cross-modal mechanism: this pathway's log-HR depends on a non-silent mutation of ``INTERACTION_GENE``.
INTERACTION_PATHWAY = "SYN_HYPOXIA"
INTERACTION_GENE = "TP53"
# Population constants of the interaction latents: log CEA (ng/mL) at the first panel and its long-run slope.
CEA_LOG_LEVEL_MEAN, CEA_LOG_LEVEL_SD = 1.1, 1.0
CEA_LOG_SLOPE_SD = 0.8  # log units per year (wide, so a year-long slope says little about the recent bend)


@dataclass(frozen=True)
class InteractionEffects:
    """Coefficients of the non-additive mechanisms planted by ``signal="interaction"`` (unused by ``"additive"``).

    Defaults make the three interaction parts carry about 40 % of the log-hazard variance (docs/synthetic.md).

    Attributes:
        til: log-HR per SD of the latent TIL score ``z_til`` (negative = tumour-adjacent immune cells protect).
        til_logit_sd: spread of the planted TIL share: share of immune patches next to tumour =
            sigmoid(til_logit_sd * z_til) per patient (each slide scatters N(0, 0.25^2) around it on the logit).
        pathway_x_mutation: log-HR of ``a[INTERACTION_PATHWAY] * (INTERACTION_GENE non-silent - prevalence)``, so
            the pathway matters strongly only in mutated patients.
        acceleration: log-HR per SD of ``z_accel``, the recent acceleration of ``LAB//CEA``.
        acceleration_log_rise: rise of log CEA over the last 90 days before the prediction time per SD of
            ``z_accel`` (a quadratic bend; the long-run level and slope are independent of it).
    """

    til: float = -0.7
    til_logit_sd: float = 1.5
    pathway_x_mutation: float = 1.4
    acceleration: float = 0.7
    acceleration_log_rise: float = 0.6

    def __post_init__(self) -> None:
        if self.til_logit_sd <= 0 or self.acceleration_log_rise <= 0:
            msg = f"expected > 0, got til_logit_sd {self.til_logit_sd}, rise {self.acceleration_log_rise}"
            raise ConfigError(msg, field="effects.interaction")


@dataclass(frozen=True)
class EffectSizes:
    """Coefficients of the planted outcome models (log-hazard and response logit scales).

    Attributes:
        high_risk_phenotype: log-HR per SD of the latent logit of the high-risk phenotype fraction.
        pathway: |log-HR| per SD of each prognostic pathway activity (signs in ``CAUSAL_PATHWAY_SIGNS``).
        n_causal_pathways: how many prognostic pathways (1-5).
        driver: log-HR of a non-silent mutation in the causal driver gene (centred at its prevalence).
        lab_slope: log-HR per SD of the causal lab's slope before the prediction time.
        age: log-HR per 10 years of age (centred at 64).
        stage: log-HR per stage step (centred at stage 2.5).
        treatment: log-HR of an experimental arm vs control at biomarker activity 0.
        treatment_modifier: change in that log-HR per SD of the arm's biomarker pathway (negative = benefit).
        weibull_shape: shape k of the Weibull baseline hazard.
        baseline_median_days: median survival of a patient with linear predictor 0 (control arm, average covariates).
        response_intercept: response logit intercept.
        response_treatment: response logit shift of an experimental arm at biomarker activity 0.
        response_modifier: interaction of an experimental arm with its biomarker pathway activity.
        response_pathway: response logit per SD of ``RESPONSE_PATHWAY`` (all arms).
        response_driver: response logit shift for a non-silent causal driver mutation (all arms).
        interaction: coefficients of the non-additive mechanisms (used only when ``signal="interaction"``).
    """

    high_risk_phenotype: float = 0.7
    pathway: float = 0.5
    n_causal_pathways: int = 3
    driver: float = 0.8
    lab_slope: float = 0.6
    age: float = 0.3
    stage: float = 0.3
    treatment: float = -0.15
    treatment_modifier: float = -0.5
    weibull_shape: float = 1.3
    baseline_median_days: float = 900.0
    response_intercept: float = -0.4
    response_treatment: float = 0.2
    response_modifier: float = 1.2
    response_pathway: float = 0.5
    response_driver: float = -0.4
    interaction: InteractionEffects = field(default_factory=InteractionEffects)

    def __post_init__(self) -> None:
        if not 1 <= self.n_causal_pathways <= len(CAUSAL_PATHWAY_SIGNS):
            msg = f"expected 1..{len(CAUSAL_PATHWAY_SIGNS)}, got {self.n_causal_pathways}"
            raise ConfigError(msg, field="effects.n_causal_pathways")
        if self.weibull_shape <= 0 or self.baseline_median_days <= 0:
            msg = f"expected > 0, got shape {self.weibull_shape}, median {self.baseline_median_days}"
            raise ConfigError(msg, field="effects.weibull_shape")


@dataclass(frozen=True)
class Latents:
    """Per-patient latent truth (arrays of length n patients; pathway arrays (n, P))."""

    z_path: np.ndarray  # latent high-risk logit, standardized
    high_risk_fraction: np.ndarray  # sigmoid(mean + sd * z_path)
    phenotype_mix: np.ndarray  # (n, K) patient-level phenotype proportions (rows sum to 1)
    pathway_activity: np.ndarray  # (n, P) standard normal
    driver_mutated: dict[str, np.ndarray]  # gene -> bool (non-silent mutation)
    z_lab: np.ndarray  # standardized slope of the causal lab
    ldh_base: np.ndarray  # U/L at the first pre-treatment measurement
    ldh_slope: np.ndarray  # U/L per year
    age: np.ndarray  # years at the prediction time
    sex: np.ndarray  # "F" / "M"
    stage: np.ndarray  # 0..3 (I..IV)
    grade: np.ndarray  # 1..3, correlated with z_path (no direct effect)
    arm: np.ndarray  # int arm index, 0 = control
    interaction: InteractionLatents | None = None  # drawn only for signal="interaction"


@dataclass(frozen=True)
class InteractionLatents:
    """Per-patient latents of the interaction mechanisms (independent of every other latent)."""

    z_til: np.ndarray  # latent TIL score, standard normal
    til_logit: np.ndarray  # til_logit_sd * z_til: logit of the planted share of immune patches next to tumour
    z_accel: np.ndarray  # recent acceleration of the CEA trajectory, standard normal
    cea_log_level: np.ndarray  # log CEA (ng/mL) at the first pre-treatment panel
    cea_log_slope: np.ndarray  # long-run slope of log CEA per year

    @property
    def til_share(self) -> np.ndarray:
        return sigmoid(self.til_logit)


def pathway_names(n_pathways: int) -> list[str]:
    """The first ``n_pathways`` pathway names (numbered ``SYN_PATHWAY_<k>`` beyond the named ones)."""
    named = list(PATHWAY_NAMES[:n_pathways])
    named += [f"SYN_PATHWAY_{k + 1:02d}" for k in range(len(named), n_pathways)]
    return named


def causal_pathways(effects: EffectSizes) -> list[tuple[str, float]]:
    """(name, signed log-HR) of the prognostic pathways."""
    return [(name, sign * effects.pathway) for name, sign in CAUSAL_PATHWAY_SIGNS[: effects.n_causal_pathways]]


def arm_names(n_arms: int) -> list[str]:
    """Arm names: ``standard`` (control) then ``targeted`` (or ``targeted_1``, ``targeted_2``...)."""
    if n_arms == 2:
        return ["standard", "targeted"]
    return ["standard"] + [f"targeted_{j}" for j in range(1, n_arms)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_latents(rng: np.random.Generator, n: int, n_pathways: int, n_arms: int) -> Latents:
    """Draw every patient's latent variables. Arms are assigned by a balanced random permutation (RCT-like)."""
    z_path = rng.standard_normal(n)
    frac = sigmoid(HIGH_RISK_LOGIT_MEAN + HIGH_RISK_LOGIT_SD * z_path)
    k_hr = PHENOTYPES.index("necrosis")
    conc = np.array([c for i, c in enumerate(PHENOTYPE_CONCENTRATION) if i != k_hr])
    others = rng.dirichlet(conc, size=n) * (1.0 - frac)[:, None]
    mix = np.insert(others, k_hr, frac, axis=1)
    activity = rng.standard_normal((n, n_pathways))
    drivers = {g: rng.random(n) < prev for g, (prev, *_rest) in DRIVER_GENES.items()}
    z_lab = rng.standard_normal(n)
    ldh_base = LDH_BASE_MEAN + LDH_BASE_SD * rng.standard_normal(n)
    age = np.clip(AGE_MEAN + AGE_SD * rng.standard_normal(n), AGE_MIN, AGE_MAX)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    stage = rng.choice(len(STAGES), size=n, p=np.array(STAGE_PROBS))
    grade_latent = 0.6 * z_path + 0.8 * rng.standard_normal(n)
    grade = 1 + np.searchsorted(np.array([-0.5, 0.6]), grade_latent)
    arm = np.resize(np.arange(n_arms), n)
    arm = arm[rng.permutation(n)]
    return Latents(
        z_path=z_path, high_risk_fraction=frac, phenotype_mix=mix, pathway_activity=activity,
        driver_mutated=drivers, z_lab=z_lab, ldh_base=ldh_base, ldh_slope=LDH_SLOPE_MEAN + LDH_SLOPE_SD * z_lab,
        age=np.round(age, 1), sex=sex, stage=stage, grade=grade.astype(np.int64), arm=arm.astype(np.int64),
    )


def draw_interaction_latents(rng: np.random.Generator, n: int, effects: InteractionEffects) -> InteractionLatents:
    """The interaction latents, from their own RNG stream (so the additive latents of a seed do not change)."""
    z_til = rng.standard_normal(n)
    z_accel = rng.standard_normal(n)
    level = CEA_LOG_LEVEL_MEAN + CEA_LOG_LEVEL_SD * rng.standard_normal(n)
    slope = CEA_LOG_SLOPE_SD * rng.standard_normal(n)
    return InteractionLatents(z_til=z_til, til_logit=effects.til_logit_sd * z_til, z_accel=z_accel,
                              cea_log_level=level, cea_log_slope=slope)


#: Modality of each part of the prognostic linear predictor (interaction parts count for the modality they come from).
PART_MODALITY: dict[str, str] = {
    "pathology": "pathology", "pathology_spatial": "pathology", "genomics": "genomics",
    "genomics_x_mutation": "genomics", "ehr": "ehr", "ehr_acceleration": "ehr", "clinical": "clinical",
}
#: The parts added by ``signal="interaction"``.
INTERACTION_PARTS: tuple[str, ...] = ("pathology_spatial", "genomics_x_mutation", "ehr_acceleration")


@dataclass(frozen=True)
class LinearPredictor:
    """Log-hazard parts per modality and per arm; ``by_arm[:, a]`` = ``prognostic + arm_effect[:, a]``."""

    parts: dict[str, np.ndarray]  # pathology / genomics / ehr / clinical (+ INTERACTION_PARTS) prognostic parts
    arm_effect: np.ndarray  # (n, n_arms) treatment log-HR per arm (column 0 = 0)

    @property
    def prognostic(self) -> np.ndarray:
        return np.sum(list(self.parts.values()), axis=0)

    @property
    def by_arm(self) -> np.ndarray:
        return self.prognostic[:, None] + self.arm_effect


def linear_predictor(lat: Latents, pathways: list[str], effects: EffectSizes, n_arms: int) -> LinearPredictor:
    """The true log-hazard of every patient under every arm (see docs/synthetic.md, eq. 1)."""
    act = {name: lat.pathway_activity[:, i] for i, name in enumerate(pathways)}
    genomic = sum(beta * act[name] for name, beta in causal_pathways(effects))
    prev = DRIVER_GENES[CAUSAL_GENE][0]
    genomic = genomic + effects.driver * (lat.driver_mutated[CAUSAL_GENE].astype(float) - prev)
    stage_mean = 1.5  # stage index 0..3 centred at "stage 2.5"
    parts = {
        "pathology": effects.high_risk_phenotype * lat.z_path,
        "genomics": np.asarray(genomic, dtype=float),
        "ehr": effects.lab_slope * lat.z_lab,
        "clinical": effects.age * (lat.age - AGE_MEAN) / 10.0 + effects.stage * (lat.stage - stage_mean),
    }
    if lat.interaction is not None:
        parts |= interaction_parts(lat, act, effects.interaction)
    n = lat.z_path.shape[0]
    arm_effect = np.zeros((n, n_arms))
    for j in range(1, n_arms):
        mod = act[MODIFIER_PATHWAYS[j - 1]]
        arm_effect[:, j] = effects.treatment + effects.treatment_modifier * mod
    return LinearPredictor(parts=parts, arm_effect=arm_effect)


def interaction_parts(
    lat: Latents, act: dict[str, np.ndarray], effects: InteractionEffects
) -> dict[str, np.ndarray]:
    """The non-additive log-hazard parts (docs/synthetic.md eq. 4): spatial TILs, pathway x mutation, acceleration."""
    il = lat.interaction
    assert il is not None
    mutated = lat.driver_mutated[INTERACTION_GENE].astype(float) - DRIVER_GENES[INTERACTION_GENE][0]
    return {
        "pathology_spatial": effects.til * il.z_til,
        "genomics_x_mutation": effects.pathway_x_mutation * act[INTERACTION_PATHWAY] * mutated,
        "ehr_acceleration": effects.acceleration * il.z_accel,
    }


def variance_shares(parts: dict[str, np.ndarray], total: np.ndarray) -> dict[str, float]:
    """var(part) / var(total) of each part, on the drawn cohort (population variance, ddof 0)."""
    denom = float(np.var(total))
    return {k: float(np.var(v)) / denom if denom > 0 else float("nan") for k, v in parts.items()}


def weibull_scale(effects: EffectSizes) -> float:
    """Scale λ (days) such that S(median | lp=0) = 0.5: λ = median / ln(2)^(1/k)."""
    return effects.baseline_median_days / np.log(2.0) ** (1.0 / effects.weibull_shape)


def survival_prob(t_days: np.ndarray, lp: np.ndarray, effects: EffectSizes) -> np.ndarray:
    """S(t | lp) = exp(-(t/λ)^k · exp(lp)); broadcasts ``lp`` (n, 1) against ``t_days`` (T,)."""
    lam = weibull_scale(effects)
    return np.exp(-((np.asarray(t_days) / lam) ** effects.weibull_shape) * np.exp(lp))


@dataclass(frozen=True)
class Outcomes:
    event_time: np.ndarray  # true event time T (days)
    censor_time: np.ndarray  # censoring time C (days)
    time: np.ndarray  # observed min(T, C) (days)
    event: np.ndarray  # bool, T <= C
    censor_rate: float  # exponential dropout rate per day (0 = administrative only)
    response_prob: np.ndarray  # (n, n_arms)
    response: np.ndarray  # int 0/1 under the assigned arm


def _solve_censor_rate(t: np.ndarray, e: np.ndarray, admin: float, target: float) -> float:
    """Exponential dropout rate whose censoring fraction (with the given draws) is closest to ``target``."""

    def frac(rate: float) -> float:
        c = np.minimum(e / rate, admin) if rate > 0 else np.full_like(t, admin)
        return float(np.mean(c < t))

    if target <= frac(0.0):
        return 0.0
    lo, hi = -20.0, 5.0  # log rate per day
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if frac(float(np.exp(mid))) < target:
            lo = mid
        else:
            hi = mid
    return float(np.exp(hi))


def draw_outcomes(
    rng: np.random.Generator,
    lat: Latents,
    lp: LinearPredictor,
    pathways: list[str],
    effects: EffectSizes,
    *,
    censoring_rate: float,
    max_follow_up_days: float,
) -> Outcomes:
    """Survival under the assigned arm, independent censoring, and response under the assigned arm."""
    n = lat.z_path.shape[0]
    lp_assigned = lp.by_arm[np.arange(n), lat.arm]
    lam = weibull_scale(effects)
    t = lam * (rng.exponential(size=n) / np.exp(lp_assigned)) ** (1.0 / effects.weibull_shape)
    t = np.maximum(t, 1.0)  # at least one day of follow-up
    e = rng.exponential(size=n)
    rate = _solve_censor_rate(t, e, max_follow_up_days, censoring_rate)
    c = np.minimum(e / rate, max_follow_up_days) if rate > 0 else np.full(n, max_follow_up_days)
    c = np.maximum(c, 1.0)
    event = t <= c
    time = np.where(event, t, c)
    act = {name: lat.pathway_activity[:, i] for i, name in enumerate(pathways)}
    base = (
        effects.response_intercept
        + effects.response_pathway * act.get(RESPONSE_PATHWAY, np.zeros(n))
        + effects.response_driver * lat.driver_mutated[CAUSAL_GENE]
    )
    n_arms = lp.arm_effect.shape[1]
    logits = np.repeat(base[:, None], n_arms, axis=1)
    for j in range(1, n_arms):
        logits[:, j] += effects.response_treatment + effects.response_modifier * act[MODIFIER_PATHWAYS[j - 1]]
    prob = sigmoid(logits)
    response = (rng.random(n) < prob[np.arange(n), lat.arm]).astype(np.int64)
    return Outcomes(
        event_time=t, censor_time=c, time=time, event=event, censor_rate=rate, response_prob=prob, response=response
    )


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray, chunk: int = 2048) -> float:
    """Harrell's concordance index (higher risk = earlier event); risk ties count 1/2, pairs need t_i < t_j, e_i."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    risk = np.asarray(risk, float)
    conc = 0.0
    total = 0.0
    idx = np.flatnonzero(event)
    for start in range(0, idx.size, chunk):
        i = idx[start : start + chunk]
        comparable = time[i][:, None] < time[None, :]
        diff = risk[i][:, None] - risk[None, :]
        conc += float(np.sum(comparable & (diff > 0)) + 0.5 * np.sum(comparable & (diff == 0)))
        total += float(np.sum(comparable))
    return conc / total if total else float("nan")


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties 1/2)."""
    y = np.asarray(y, bool)
    pos, neg = score[y], score[~y]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(order.size)
    allv = np.concatenate([pos, neg])[order]
    # average ranks for ties
    _, first, counts = np.unique(allv, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0) / (pos.size * neg.size))
