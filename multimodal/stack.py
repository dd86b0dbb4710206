"""The pooled stack: the strongest classical models on every modality's pooled features, inside the pipeline.

``model.stack: pooled_enet`` (an elastic-net Cox model; elastic-net logistic regression for a response study) or
``pooled_enet_gb`` (the same + a gradient-boosted Cox model / histogram gradient-boosting classifier). The
strongest classical models on our cohorts read per-patient pooled features (:mod:`multimodal.pooled`: slide PCA /
phenotype fractions, every gene plus gene-set scores, EHR count / last value / slope per code, the clinical table).
The stack makes them part of ours: their combined risk is a fixed log-hazard offset inside the survival head
(``Batch.offset``) and the fusion trunk learns what it leaves (stacking: Wolpert 1992; the Super Learner, van der
Laan et al. 2007):

1. The extractor and each candidate are fitted on the inner-training patients (coxnet's penalty by inner CV on
   them; gbsa with the study baseline's fixed settings).
2. Each candidate is also cross-fitted (:data:`CROSS_FIT_FOLDS` folds; the unsupervised extractor is shared): every
   inner-training patient gets a score from models that never saw it. The candidates' scores are standardized by the
   mean and sd of their cross-fitted scores and combined (``model.stack_weights``): ``equal`` = their average, scaled
   by a one-variable Cox (logistic) model on it; ``fitted`` = a Cox (logistic) model with non-negative coefficients
   on all of them (the Super Learner's meta-learner). On inner folds of the TCGA training patients the equal average
   beat the fitted weights (BLCA 0.638 vs 0.621, KIRC 0.721 vs 0.711, start only): weights fitted on a few hundred
   patients add variance. Either way the combined score is a log hazard ratio (log-odds).
3. The trunk trains against the cross-fitted offsets; the start (offset + fitted per-bin baseline, trunk at zero)
   and every trained epoch are scored on the inner-validation patients with the step-1 models' offsets (unseen by
   every part of the model); training must beat the start, and the trunk's term is then shrunk towards it by the
   scale with the best inner-validation score (:func:`multimodal.wide_init.choose_trunk_scale`).
4. The pipeline keeps a refit of the extractor and the candidates on every training patient of the fold (inner
   validation included) with the same standardization and weights: the super learner's last step.

Everything is arrays and JSON (``stack/stack.json`` + ``stack/stack.safetensors`` in the pipeline folder): coxnet as
its coefficients, gbsa as its trees' node arrays (evaluated exactly as scikit-learn evaluates them; multimodal/stack_candidates.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import Cohort
from multimodal.pooled import PooledFeatures, PooledFeaturesConfig, describe_column
from multimodal.stack_candidates import LINEAR, STRUCTURED, FittedCandidate, base_name, fit_candidate

__all__ = ["CROSS_FIT_FOLDS", "STACKS", "STACK_WEIGHTS", "STRUCTURED", "FittedCandidate", "PooledStack", "StackFit", "fit_pooled_stack",
           "stack_candidates", "stack_head", "stack_structure"]

#: Values of ``model.stack`` → the candidates it combines, for a survival head and for a (binary) response head.
#: A ``..._structure`` stack adds a twin of its linear candidate (name + :data:`STRUCTURED`) fitted with the pooled
#: features' ``structure`` families too (:data:`multimodal.pooled.STRUCTURE`: tissue co-localisation on the patch
#: grid, lab kinetics, gene-set x mutation products); every other candidate reads the item-1 features only.
STACKS: dict[str, dict[str, tuple[str, ...]]] = {
    "none": {"survival": (), "response": ()},
    "pooled_enet": {"survival": ("coxnet",), "response": ("enet_logistic",)},
    "pooled_enet_gb": {"survival": ("coxnet", "gbsa"), "response": ("enet_logistic", "gradient_boosting")},
    "pooled_enet_structure": {"survival": ("coxnet", "coxnet" + STRUCTURED),
                              "response": ("enet_logistic", "enet_logistic" + STRUCTURED)},
    "pooled_enet_gb_structure": {"survival": ("coxnet", "gbsa", "coxnet" + STRUCTURED),
                                 "response": ("enet_logistic", "gradient_boosting", "enet_logistic" + STRUCTURED)},
}


def stack_head(kind: str, task: str) -> str | None:
    """The head a stack's offset enters for ``task``: the response head for a response study, else the survival head
    (a ``both`` study: survival); None for ``none``."""
    if kind == "none" or kind not in STACKS:
        return None
    return "response" if task == "response" else "survival"


def stack_candidates(kind: str, head: str) -> tuple[str, ...]:
    if kind not in STACKS:
        raise ValueError(f"model.stack {kind!r}: expected one of {list(STACKS)}")
    return STACKS[kind][head]


def stack_structure(kind: str) -> tuple[str, ...]:
    """The pooled features' ``structure`` families a stack kind needs (every family for a ``..._structure`` kind)."""
    from multimodal.pooled import STRUCTURE

    return STRUCTURE if any(n.endswith(STRUCTURED) for h in STACKS.get(kind, {}).values() for n in h) else ()


#: Folds of the cross-fitting that gives each training patient its out-of-fold offset.
CROSS_FIT_FOLDS = 5
STATE_VERSION = 1




# ---- the stack -------------------------------------------------------------------------------------------------------
@dataclass
class PooledStack:
    """Fitted candidates on pooled features: ``offset = sum_k weight_k * (score_k - centre_k) / spread_k``."""

    kind: str
    pooled: PooledFeatures
    candidates: list[FittedCandidate]
    centre: np.ndarray  # per candidate: mean of its cross-fitted scores on the training patients
    spread: np.ndarray  # per candidate: their sd
    weights: np.ndarray  # per candidate: non-negative Cox / logistic coefficients of the standardized cross-fitted scores
    n_train: int
    intercept: float = 0.0  # the logistic meta-learner's intercept (response); 0 for survival (the baseline absorbs it)
    head: str = "survival"  # the head the offset enters: survival (log hazard) or response (log-odds)

    def _combine(self, scores: np.ndarray) -> np.ndarray:
        return self.intercept + ((scores - self.centre) / self.spread) @ self.weights

    def scores(self, x: pd.DataFrame) -> np.ndarray:
        return np.column_stack([c.score(x) for c in self.candidates])

    def offsets(self, cohort: Cohort, patient_ids: Sequence[str]) -> dict[str, float]:
        ids = [str(p) for p in patient_ids]
        lp = self._combine(self.scores(self.pooled.transform(cohort, ids)))
        return dict(zip(ids, lp.tolist(), strict=True))

    def contributions(self, cohort: Cohort, patient_id: str, top: int = 10) -> dict[str, Any]:
        """The patient's offset split exactly: a linear candidate's per-feature terms (its ``top`` largest listed), one
        term per tree candidate, and a constant; listed terms + ``rest`` + ``constant`` = ``offset``."""
        x = self.pooled.transform(cohort, [str(patient_id)])
        terms: list[dict[str, Any]] = []
        rest, constant = 0.0, float(self.intercept - np.sum(self.weights * self.centre / self.spread))
        for i, c in enumerate(self.candidates):
            w = self.weights[i] / self.spread[i]
            if base_name(c.name) in LINEAR:
                constant += float(w * c.scalars.get("intercept", 0.0))
                z = c.preprocessor.transform(x).to_numpy(np.float64)[0]
                each = w * z * c.arrays["coef"]
                order = [int(j) for j in np.argsort(-np.abs(each), kind="stable") if c.arrays["coef"][j] != 0]
                names = c.preprocessor.feature_names_
                terms += [{"feature": names[j], "label": describe_column(names[j]), "value": float(z[j]),
                           "contribution": float(each[j]), "candidate": c.name} for j in order[:top]]
                rest += float(each[order[top:]].sum()) if len(order) > top else 0.0
            else:
                terms.append({"feature": f"{c.name} (all features)", "label": f"{c.name} (all features)", "value": None,
                              "contribution": float(w * c.score(x)[0]), "candidate": c.name})
        terms.sort(key=lambda t: -abs(t["contribution"]))
        offset = float(self._combine(self.scores(x))[0])
        return {"offset": offset, "terms": terms, "rest": rest, "constant": constant, "head": self.head,
                "candidates": [c.name for c in self.candidates], "n_nonzero": self.n_nonzero}

    @property
    def n_nonzero(self) -> int:
        """Features with a non-zero coefficient in the linear candidate (0 without one)."""
        return sum(int(np.count_nonzero(c.arrays["coef"])) for c in self.candidates if base_name(c.name) in LINEAR)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "head": self.head, "candidates": [c.name for c in self.candidates],
                "weights": [float(w) for w in self.weights], "intercept": self.intercept, "n_train": self.n_train,
                "n_nonzero": self.n_nonzero}

    # ---- persistence -------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        from safetensors.numpy import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        pmeta, parrays = self.pooled.state()
        arrays = {f"pooled/{k}": v for k, v in parrays.items()}
        cmeta = []
        for i, c in enumerate(self.candidates):
            m, arr = c.to_state()
            cmeta.append(m)
            arrays.update({f"candidate{i}/{k}": v for k, v in arr.items()})
        arrays["centre"], arrays["spread"], arrays["weights"] = self.centre, self.spread, self.weights
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(d / "stack.safetensors"))
        meta = {"version": STATE_VERSION, "kind": self.kind, "head": self.head, "n_train": self.n_train,
                "intercept": self.intercept,
                "pooled": pmeta, "candidates": cmeta}
        (d / "stack.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: str | Path) -> PooledStack:
        from safetensors.numpy import load_file

        from multimodal.errors import IntegrityError

        d = Path(directory)
        try:
            meta = json.loads((d / "stack.json").read_text())
            arrays = load_file(str(d / "stack.safetensors"))
            if meta.get("version") != STATE_VERSION or meta.get("kind") not in STACKS or meta["kind"] == "none" \
                    or meta.get("head") not in ("survival", "response"):
                raise ValueError(f"version {meta.get('version')!r} / kind {meta.get('kind')!r} / head "
                                 f"{meta.get('head')!r}, expected {STATE_VERSION} / one of "
                                 f"{[k for k in STACKS if k != 'none']} / survival or response")
            pooled = PooledFeatures.from_state(meta["pooled"], {k[7:]: v for k, v in arrays.items()
                                                                if k.startswith("pooled/")})
            cands = []
            for i, cm in enumerate(meta["candidates"]):
                p = f"candidate{i}/"
                cands.append(FittedCandidate.from_state(cm, {k[len(p):]: v for k, v in arrays.items()
                                                             if k.startswith(p)}))
            centre, spread, weights = (np.asarray(arrays[k], np.float64) for k in ("centre", "spread", "weights"))
            if any(a.shape != (len(cands),) for a in (centre, spread, weights)) or not (spread > 0).all():
                raise ValueError("centre / spread / weights do not match the candidates")
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"{d}: the pooled stack cannot be read ({exc})") from exc
        return cls(str(meta["kind"]), pooled, cands, centre, spread, weights, int(meta["n_train"]),
                   float(meta.get("intercept", 0.0)), str(meta["head"]))


@dataclass(frozen=True)
class StackFit:
    """:func:`fit_pooled_stack`'s result: the stack and each training patient's cross-fitted offset."""

    stack: PooledStack
    offsets: dict[str, float]  # cross-fitted: what the trunk trains against
    x: pd.DataFrame  # the training patients' pooled table
    cross: np.ndarray | None = None  # (n, K) each candidate's cross-fitted score per training patient (rows of x)


def _non_negative(k: int, fit: Any) -> tuple[np.ndarray, Any]:
    """Non-negative coefficients by backward elimination: ``fit(columns)`` returns (coefficients, extra) for a model on
    those columns; a column whose coefficient comes out negative is dropped and the rest refitted. Returns the (k,)
    weights (0 for dropped columns; all 0 when none is left) and the last accepted fit's extra (None if none)."""
    keep = list(range(k))
    w = np.zeros(k)
    while keep:
        coef, extra = fit(keep)
        if (coef >= 0).all():
            w[keep] = coef
            return w, extra
        keep = [j for j, c in zip(keep, coef, strict=True) if c >= 0] if (coef >= 0).any() else []
    return w, None


def _meta_weights(z: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Non-negative Cox coefficients of the standardized cross-fitted scores ``z`` (n, K): the super learner's
    meta-learner. A candidate whose coefficient comes out negative is dropped and the rest refitted; when none is
    left the weights are 0 (no signal: the trunk is on its own)."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    y = Surv.from_arrays(np.asarray(event).astype(bool), np.asarray(time, dtype=float))
    return _non_negative(z.shape[1], lambda keep: (
        CoxPHSurvivalAnalysis(alpha=1e-4, ties="efron").fit(z[:, keep], y).coef_, None))[0]


def _logistic_meta(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative logistic coefficients (and the intercept) of the standardized cross-fitted logits ``z``; without
    a candidate left, the intercept is the log-odds of the responder share."""
    from sklearn.linear_model import LogisticRegression

    def fit(keep: list[int]) -> tuple[np.ndarray, float]:
        m = LogisticRegression(C=1e4, max_iter=1000).fit(z[:, keep], y)
        return m.coef_[0], float(m.intercept_[0])

    w, intercept = _non_negative(z.shape[1], fit)
    if intercept is None:
        p = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6))
        intercept = float(np.log(p / (1 - p)))
    return w, intercept


def _equal_weights(z: np.ndarray, target: np.ndarray, event: np.ndarray, response: bool) -> tuple[np.ndarray, float]:
    """Equal weights: one scale (and intercept) for the average of the standardized scores, by a one-variable Cox /
    logistic model; a scale that comes out negative gives weights 0."""
    avg = z.mean(axis=1, keepdims=True)
    w, intercept = (_logistic_meta(avg, target) if response else (_meta_weights(avg, target, event), 0.0))
    return np.full(z.shape[1], float(w[0]) / z.shape[1]), intercept


#: Values of ``model.stack_weights``.
STACK_WEIGHTS = ("equal", "fitted")


def fit_pooled_stack(cohort: Cohort, train_ids: Sequence[str], kind: str, pooled_config: PooledFeaturesConfig, *,
                     head: str = "survival", seed: int = 0, folds: int = CROSS_FIT_FOLDS,
                     calibrate_from: PooledStack | None = None, weights: str = "equal") -> StackFit:
    """Fit the stack ``kind`` on ``train_ids`` (steps 1-2 of the module docstring). With ``calibrate_from`` (the refit
    on every training patient, step 4) the cross-fitting is skipped and that stack's standardization and weights
    are kept, so the refit differs from it only by the data its candidates saw (``offsets`` is then empty)."""
    from sklearn.model_selection import StratifiedKFold

    names = stack_candidates(kind, head)
    if stack_structure(kind) and not pooled_config.structure:
        raise ValueError(f"model.stack {kind!r} needs pooled features with structure families {stack_structure(kind)}")
    if not names:
        raise ValueError(f"model.stack {kind!r} has no candidates; expected one of {[k for k in STACKS if k != 'none']}")
    ids = [str(p) for p in train_ids]
    pooled = PooledFeatures(pooled_config).fit(cohort, ids)
    x = pooled.transform(cohort, ids)
    response = head == "response"
    if response:  # binary labels; patients without one get an offset but do not fit anything
        lab = cohort.patients.loc[ids, "response"].to_numpy(dtype=float)
        rows = np.flatnonzero(np.isfinite(lab))
        target, event = lab[rows].astype(int), lab[rows].astype(int)
    else:
        rows = np.arange(len(ids))
        target, event = cohort.survival_arrays(ids)
    extra = set(pooled.structure_columns())
    plain = [c for c in x.columns if c not in extra]  # the item-1 features: what every untwinned candidate reads
    xs = x.iloc[rows]
    view = {n: xs if n.endswith(STRUCTURED) else xs[plain] for n in names}
    cands = [fit_candidate(n, view[n], target, event, seed) for n in names]
    if calibrate_from is not None:
        stack = PooledStack(kind, pooled, cands, calibrate_from.centre, calibrate_from.spread, calibrate_from.weights,
                            len(ids), calibrate_from.intercept, head)
        return StackFit(stack, {}, x)
    ev = np.asarray(event).astype(int)
    counts = [int(ev.sum()), int((1 - ev).sum())]
    k = max(2, min([folds] + [c for c in counts if c > 0]))
    cross = np.zeros((len(rows), len(names)))
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(rows)), ev):
        for j, n in enumerate(names):
            cross[te, j] = fit_candidate(n, view[n].iloc[tr], target[tr], event[tr], seed,
                                          like=cands[j]).score(xs.iloc[te])
    centre = cross.mean(axis=0)
    spread = np.where(cross.std(axis=0) > 1e-12, cross.std(axis=0), 1.0)
    z = (cross - centre) / spread
    if weights == "equal":
        w, intercept = _equal_weights(z, target, event, response)
    elif weights == "fitted":
        w, intercept = _logistic_meta(z, target) if response else (_meta_weights(z, target, event), 0.0)
    else:
        raise ValueError(f"model.stack_weights {weights!r}: expected one of {STACK_WEIGHTS}")
    stack = PooledStack(kind, pooled, cands, centre, spread, w, len(ids), intercept, head)
    full = stack._combine(stack.scores(x))  # patients without a label: the full fit's offset
    full[rows] = intercept + z @ w
    return StackFit(stack, dict(zip(ids, full.tolist(), strict=True)), x, cross)
