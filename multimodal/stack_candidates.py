"""The pooled stack's candidates (:mod:`multimodal.stack`): each fitted classical model as a preprocessor plus arrays
(coefficients, or a tree ensemble's node arrays evaluated exactly as scikit-learn evaluates them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from multimodal.baselines import (
    CoxnetBaseline,
    CoxnetConfig,
    EnetLogisticBaseline,
    EnetLogisticConfig,
    GBSABaseline,
    GBSAConfig,
    GradientBoostingBaseline,
    GradientBoostingConfig,
    TabularPreprocessor,
)

__all__ = ["LINEAR", "STRUCTURED", "FittedCandidate", "base_name", "fit_candidate", "trees_sum"]

#: The linear candidates (the others are tree ensembles).
LINEAR = ("coxnet", "enet_logistic")
#: Suffix of a linear candidate's twin that also reads the pooled features' ``structure`` families.
STRUCTURED = "_structured"


def base_name(name: str) -> str:
    """A candidate's model: its name without :data:`STRUCTURED`."""
    return name.removesuffix(STRUCTURED)


@dataclass
class FittedCandidate:
    """One fitted candidate as arrays: a preprocessor plus a linear model (``coef``) or a tree ensemble."""

    name: str  # "coxnet" | "gbsa" | "enet_logistic" | "gradient_boosting" (a linear one may end in STRUCTURED)
    preprocessor: TabularPreprocessor
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)

    def score(self, x: pd.DataFrame) -> np.ndarray:
        z = self.preprocessor.transform(x).to_numpy(np.float64)
        if base_name(self.name) in LINEAR:
            return z @ self.arrays["coef"] + self.scalars.get("intercept", 0.0)
        return self.scalars["init"] + self.scalars["learning_rate"] * trees_sum(
            z, self.arrays, float32=bool(self.scalars.get("float32", 1.0)))

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arr = self.preprocessor.state()
        arrays = {f"preprocessor/{k}": v for k, v in arr.items()}
        arrays.update(self.arrays)
        return {"name": self.name, "preprocessor": meta, "scalars": self.scalars}, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> FittedCandidate:
        prep = TabularPreprocessor.from_state(meta["preprocessor"], {k[13:]: v for k, v in arrays.items()
                                                                      if k.startswith("preprocessor/")})
        own = {k: np.asarray(v) for k, v in arrays.items() if not k.startswith("preprocessor/")}
        name = str(meta["name"])
        trees = ("tree_start", "feature", "threshold", "left", "right", "value")
        need = {n: ("coef",) for n in LINEAR} | {"gbsa": trees, "gradient_boosting": trees}
        linear = base_name(name) in LINEAR
        if (name not in need and not linear) or any(k not in own for k in need[base_name(name)]):
            raise ValueError(f"candidate {name!r}: unknown, or arrays missing ({sorted(own)})")
        if linear and own["coef"].shape != (len(prep.feature_names_),):
            raise ValueError(f"{name}: {own['coef'].size} coefficients for {len(prep.feature_names_)} features")
        return cls(name, prep, own, {k: float(v) for k, v in dict(meta["scalars"]).items()})


def trees_sum(z: np.ndarray, t: dict[str, np.ndarray], *, float32: bool = True) -> np.ndarray:
    """Sum over the trees of each row's leaf value; a row goes left when ``x[feature] <= threshold``, with ``x`` cast
    to float32 first for scikit-learn's ``tree`` module (gbsa) and as is for its histogram gradient boosting."""
    x = z.astype(np.float32).astype(np.float64) if float32 else np.asarray(z, dtype=np.float64)
    rows = np.arange(len(x))
    out = np.zeros(len(x))
    start = t["tree_start"]
    for k in range(len(start) - 1):
        a, b = int(start[k]), int(start[k + 1])
        feat, thr, left, right, val = (t[n][a:b] for n in ("feature", "threshold", "left", "right", "value"))
        node = np.zeros(len(x), dtype=np.int64)
        while True:
            nxt = left[node]
            inner = nxt >= 0
            if not inner.any():
                break
            go_left = x[rows, np.where(inner, feat[node], 0)] <= thr[node]
            node = np.where(inner, np.where(go_left, nxt, right[node]), node)
        out += val[node]
    return out


def hgb_arrays(est: Any) -> dict[str, np.ndarray]:
    """A binary ``HistGradientBoostingClassifier``'s trees as node arrays (leaf values include the learning rate)."""
    nodes = [p[0].nodes for p in est._predictors]
    sizes = np.array([len(n) for n in nodes])
    return {
        "tree_start": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "feature": np.concatenate([n["feature_idx"] for n in nodes]).astype(np.int64),
        "threshold": np.concatenate([n["num_threshold"] for n in nodes]).astype(np.float64),
        "left": np.concatenate([np.where(n["is_leaf"], -1, n["left"].astype(np.int64)) for n in nodes]),
        "right": np.concatenate([np.where(n["is_leaf"], -1, n["right"].astype(np.int64)) for n in nodes]),
        "value": np.concatenate([n["value"] for n in nodes]).astype(np.float64),
    }


def enet_logistic_fixed(x: pd.DataFrame, y: np.ndarray, like: FittedCandidate, seed: int) -> FittedCandidate:
    """Elastic-net logistic regression with the penalty ``like`` chose by its inner CV (cross-fits reuse it: the
    inner CV of the saga solver on ~2,000 columns is the slow part, and only the penalty is shared)."""
    import inspect

    from sklearn.linear_model import LogisticRegression

    cfg = EnetLogisticConfig(seed=seed)
    prep = TabularPreprocessor(clip=cfg.clip).fit(x)
    kwargs: dict[str, Any] = {"C": like.scalars["C"], "l1_ratio": like.scalars.get("l1_ratio", cfg.l1_ratios[0]),
                              "solver": "saga", "max_iter": cfg.max_iter, "random_state": seed}
    if inspect.signature(LogisticRegression).parameters["penalty"].default != "deprecated":
        kwargs["penalty"] = "elasticnet"
    est = LogisticRegression(**kwargs).fit(prep.transform(x).to_numpy(), y)
    return FittedCandidate("enet_logistic", prep, {"coef": np.asarray(est.coef_[0], dtype=np.float64)},
                           {"intercept": float(est.intercept_[0]), "C": like.scalars["C"]})


def fit_candidate(name: str, x: pd.DataFrame, time: np.ndarray, event: np.ndarray, seed: int,
                   like: FittedCandidate | None = None) -> FittedCandidate:
    """``name`` fitted on ``x``; survival candidates read (time, event), response ones the labels in ``time``.
    ``like``: the same candidate fitted on all rows, whose tuned penalty a cross-fit may reuse."""
    if name.endswith(STRUCTURED) and base_name(name) in LINEAR:
        fitted = fit_candidate(base_name(name), x, time, event, seed, like)
        return FittedCandidate(name, fitted.preprocessor, fitted.arrays, fitted.scalars)
    if name == "enet_logistic" and like is not None:
        return enet_logistic_fixed(x, time, like, seed)
    if name == "enet_logistic":
        lr = EnetLogisticBaseline(EnetLogisticConfig(seed=seed)).fit(x, time)
        est = lr.estimator_
        l1 = getattr(est, "l1_ratio_", None)
        return FittedCandidate(name, lr.preprocessor_, {"coef": np.asarray(est.coef_[0], dtype=np.float64)},
                               {"intercept": float(est.intercept_[0]), "C": float(np.ravel(est.C_)[0]),
                                **({"l1_ratio": float(np.ravel(l1)[0])} if l1 is not None else {})})
    if name == "gradient_boosting":
        gb = GradientBoostingBaseline(GradientBoostingConfig(seed=seed)).fit(x, time)
        arrays = hgb_arrays(gb.estimator_)
        z = gb.preprocessor_.transform(x).to_numpy(np.float64)
        raw = np.asarray(gb.estimator_.decision_function(z), np.float64)
        init = float(np.mean(raw - trees_sum(z, arrays, float32=False)))
        return FittedCandidate(name, gb.preprocessor_, arrays, {"learning_rate": 1.0, "init": init, "float32": 0.0})
    if name == "coxnet":
        cox = CoxnetBaseline(CoxnetConfig(seed=seed)).fit(x, time, event)
        return FittedCandidate(name, cox.preprocessor_, {"coef": cox.coefficients()}, {"alpha": float(cox.alpha_)})
    if name == "gbsa":
        gb = GBSABaseline(GBSAConfig(seed=seed)).fit(x, time, event)
        trees = [e.tree_ for e in np.asarray(gb.estimator_.estimators_).ravel()]
        sizes = np.array([t.node_count for t in trees])
        arrays = {
            "tree_start": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            "feature": np.concatenate([t.feature for t in trees]).astype(np.int64),
            "threshold": np.concatenate([t.threshold for t in trees]).astype(np.float64),
            "left": np.concatenate([t.children_left for t in trees]).astype(np.int64),
            "right": np.concatenate([t.children_right for t in trees]).astype(np.int64),
            "value": np.concatenate([t.value[:, 0, 0] for t in trees]).astype(np.float64),
        }
        lr = float(gb.estimator_.learning_rate)
        z = gb.preprocessor_.transform(x).to_numpy(np.float64)
        init = float(np.mean(np.asarray(gb.estimator_.predict(z), np.float64) - lr * trees_sum(z, arrays)))
        return FittedCandidate(name, gb.preprocessor_, arrays, {"learning_rate": lr, "init": init})
    raise ValueError(f"unknown stack candidate {name!r}")
