"""Confidence intervals of a cv study: patient bootstraps within reporting folds, shared resamples for paired
method differences, metric ranges (used by :class:`multimodal.study.Study` and the cohort report)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SURVIVAL_KEYS = ("c_index", "c_index_uno", "td_auc", "ibs")
RESPONSE_KEYS = ("auroc", "auprc", "brier", "calibration_slope")


#: The calibration metrics: survival's at the calibration horizon, or the response's (task `response`).
CALIBRATION_KEYS = ("calibration_slope", "ici")
#: Natural range of a summary metric; confidence intervals are clipped to it (absent = unbounded).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "c_index": (0.0, 1.0), "c_index_uno": (0.0, 1.0), "td_auc": (0.0, 1.0), "ibs": (0.0, 1.0), "auroc": (0.0, 1.0),
    "auprc": (0.0, 1.0), "brier": (0.0, 1.0), "ici": (0.0, 1.0), "response_ici": (0.0, 1.0),
}
#: Prediction columns of ``S(t | x)`` on the IBS grid (written by :meth:`Study._score`).
IBS_SURV_PREFIX = "ibs_surv_"
#: Metrics whose IPCW computation (scikit-survival) is slow: bootstrapped with at most this many resamples (the first
#: ones of the shared resamples); the count is stated in the summary's ``protocol.intervals``.
IPCW_KEYS = ("c_index_uno", "td_auc", "ibs")
IPCW_BOOTSTRAP = 50
#: Prediction columns each bootstrapped metric family needs.
_BOOT_COLUMNS: dict[str, tuple[str, ...]] = {
    "risk": ("time", "event", "risk"),
    "ibs": ("time", "event"),  # and the ibs_surv_<j> columns
    "survival_calibration": ("time", "event", "event_prob_at_horizon", "calibration_horizon"),
    "response": ("response", "response_prob"),
}


@dataclass(frozen=True)
class FoldContext:
    """What a fold's metrics need besides its predictions: the training fold's time / event (IPCW censoring estimate of
    Uno's c-index, td-AUC and IBS) and the evaluation times of the fold's own metrics, kept fixed in every resample
    (``horizons`` of the td-AUC, default: chosen per resample; ``grid`` of the IBS)."""

    train_time: np.ndarray | None = None
    train_event: np.ndarray | None = None
    horizons: Sequence[float] | None = None
    grid: Sequence[float] | None = None


class FoldBootstrap:
    """Patient resamples drawn within each fold of ``preds`` (``fold``, ``patient_id`` columns), the same for every
    method and metric: the fold's patients are drawn with replacement ``n_boot`` times (seeded), and a method's rows
    are looked up by patient id, so two methods' resampled metrics are paired."""

    def __init__(self, preds: pd.DataFrame, n_boot: int, seed: int, *, task: str | None = None) -> None:
        self.n_boot, self.task = int(n_boot), task
        self._cache: dict[tuple[str, str, bool], np.ndarray] = {}
        rng = np.random.default_rng(seed)
        self.patients: dict[Any, pd.Index] = {}
        self.index: dict[Any, np.ndarray] = {}
        for fold, g in preds.groupby("fold", sort=True):
            ids = pd.Index(sorted(pd.unique(g["patient_id"]), key=str))
            self.patients[fold] = ids
            self.index[fold] = rng.integers(0, len(ids), (self.n_boot, len(ids)))

    def n_resamples(self, key: str) -> int:
        return min(self.n_boot, IPCW_BOOTSTRAP) if key in IPCW_KEYS else self.n_boot

    def values(self, sub: pd.DataFrame, key: str, contexts: dict[Any, FoldContext] | None = None, *,
               point: bool = False, name: str | None = None) -> np.ndarray:
        """``(resamples, folds)`` metric ``key`` of one method's predictions ``sub`` on each resample of each fold (NaN
        where undefined, or where ``sub`` lacks the metric's columns); ``point``: one row, the folds as they are.
        ``name``: the method's name, under which the values are kept for later calls."""
        if name is not None and (name, key, point) in self._cache:
            return self._cache[name, key, point]
        out = self._values(sub, key, contexts, point)
        if name is not None:
            self._cache[name, key, point] = out
        return out

    def _values(self, sub: pd.DataFrame, key: str, contexts: dict[Any, FoldContext] | None,
                point: bool) -> np.ndarray:
        from multimodal.errors import InputError
        from multimodal.metrics import UndefinedMetricError

        folds = list(self.index)
        n = 1 if point else self.n_resamples(key)
        out = np.full((n, len(folds)), np.nan)
        metric = _boot_metric(key, self.task)
        if metric is None or sub.empty:
            return out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, fold in enumerate(folds):
                cols = _aligned_columns(sub[sub["fold"] == fold], self.patients[fold], key, self.task)
                if cols is None:
                    continue
                ok = cols.pop("_ok")
                if not ok.any():  # e.g. a survival baseline's response metrics
                    continue
                ctx = (contexts or {}).get(fold)
                rows = np.arange(len(ok))[None] if point else self.index[fold][:n]
                for b, idx in enumerate(rows):
                    idx = idx[ok[idx]]
                    try:
                        out[b, j] = metric({c: a[idx] for c, a in cols.items()}, ctx)
                    except (UndefinedMetricError, InputError, ValueError, ZeroDivisionError):
                        continue
        out[~np.isfinite(out)] = np.nan
        return out

    def ci(self, sub: pd.DataFrame, key: str, contexts: dict[Any, FoldContext] | None = None, *,
           name: str | None = None) -> list[float | None]:
        """Percentile 95 % CI of the mean over folds of ``key`` (:func:`percentile_ci`)."""
        if not self.n_boot:
            return [None, None]
        return percentile_ci(_fold_means(self.values(sub, key, contexts, name=name)), key)


def _fold_means(vals: np.ndarray) -> np.ndarray:
    """Per resample (row), the mean of the folds where the metric is defined; resamples defined in no fold dropped."""
    ok = np.isfinite(vals)
    keep = ok.any(axis=1)
    return np.nansum(vals[keep], axis=1) / ok[keep].sum(axis=1)


def _paired_diffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per resample, mean over the folds where both are defined of ``a - b`` (same resamples for both)."""
    both = np.isfinite(a) & np.isfinite(b)
    keep = both.any(axis=1)
    d = np.where(both, a - b, 0.0)[keep]
    return d.sum(axis=1) / both[keep].sum(axis=1)


def percentile_ci(values: np.ndarray, key: str | None = None, *, width: float | None = None) -> list[float | None]:
    """The 2.5 % and 97.5 % quantiles of bootstrap ``values``, clipped to the metric's range (:data:`METRIC_RANGES`) or
    to ``[-width, width]``; ``[None, None]`` without values."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [None, None]
    lo, hi = (float(q) for q in np.quantile(v, [0.025, 0.975]))
    if width is not None:
        return [float(np.clip(lo, -width, width)), float(np.clip(hi, -width, width))]
    return _bounded(key, [lo, hi]) if key else [lo, hi]


def _fold_bootstrap(sub: pd.DataFrame, key: str, n_boot: int, seed: int, *, task: str | None = None,
                    contexts: dict[Any, FoldContext] | None = None) -> list[float | None]:
    """Percentile 95 % CI of the mean over folds of metric ``key`` of one method's predictions ``sub``: each resample
    draws patients with replacement within every fold (:class:`FoldBootstrap`); bounded to the metric's range
    (:data:`METRIC_RANGES`). ``contexts`` ({fold: :class:`FoldContext`}) gives the IPCW metrics their training fold.
    ``[None, None]`` when the predictions lack the metric's columns (runs resumed from folds written before the metric
    existed) or no resample is defined."""
    return FoldBootstrap(sub, n_boot, seed, task=task).ci(sub, key, contexts)


def main_metric(task: str | None) -> str:
    """The metric that ranks methods: c-index (survival studies), AUROC (response)."""
    return _summary_keys(task)[0]


def compare_methods(preds: pd.DataFrame, means: dict[str, dict[str, Any]], boot: FoldBootstrap, *,
                    ours: str = "multimodal", contexts: dict[str, dict[Any, FoldContext]] | None = None,
                    key: str | None = None) -> dict[str, Any] | None:
    """Our model against the baselines (methods not named ``multimodal*``) on ``key`` (default the main metric): the
    best baseline by mean over folds (``means``: {method: {metric: mean}}; baselines without the metric are not
    ranked), and the paired difference ours − baseline against it and against every baseline (``vs``), each with a
    95 % bootstrap CI over patients (:func:`paired_difference`). None when the study has no such baseline or no
    ``ours``."""
    key = key or main_metric(boot.task)
    base = {n: m.get(key) for n, m in means.items() if not n.startswith("multimodal")}
    ranked = sorted(((v, n) for n, v in base.items() if v is not None), key=lambda x: -x[0])
    if ours not in means or not ranked:
        return None
    vs = {n: paired_difference(preds, ours, n, key, boot, contexts=contexts) for n, v in base.items() if v is not None}
    best = ranked[0][1]
    return {"metric": key, "method": ours, "best_baseline": best, **vs[best], "n_boot": boot.n_resamples(key),
            "vs": vs}


def paired_difference(preds: pd.DataFrame, a: str, b: str, key: str, boot: FoldBootstrap, *,
                      contexts: dict[str, dict[Any, FoldContext]] | None = None) -> dict[str, Any]:
    """``{"diff", "ci95"}``: mean over folds of metric ``key`` of method ``a`` minus that of method ``b`` (rows of
    ``preds`` by ``method``; the folds where both are defined), with the percentile 95 % CI of the same difference
    over ``boot``'s resamples (the same patients drawn for both methods). ``contexts``: {method: {fold: context}}."""
    contexts = contexts or {}

    def vals(name: str, point: bool) -> np.ndarray:
        return boot.values(preds[preds["method"] == name], key, contexts.get(name), point=point, name=name)

    point = _paired_diffs(vals(a, True), vals(b, True))
    diff = float(point[0]) if point.size else None
    if not boot.n_boot:
        return {"diff": diff, "ci95": [None, None]}
    lo_hi = METRIC_RANGES.get(key)
    d = _paired_diffs(vals(a, False), vals(b, False))
    return {"diff": diff, "ci95": percentile_ci(d, width=(lo_hi[1] - lo_hi[0]) if lo_hi else None)}


def _summary_keys(task: str | None) -> tuple[str, ...]:
    """The summary's metric keys: :func:`_keys` plus the calibration slope and ICI (both also the response's in task
    `both`)."""
    keys = _keys(task)
    extra = CALIBRATION_KEYS
    if task == "both":
        extra = (*CALIBRATION_KEYS, *(f"response_{k}" for k in CALIBRATION_KEYS))
    return keys + tuple(k for k in extra if k not in keys)


def _bootstrap_keys(task: str | None) -> tuple[str, ...]:
    """Keys whose CI is also written as ``<key>_bootstrap`` (their name before every CI was a bootstrap): the main
    metric and the calibration."""
    keys = _summary_keys(task)
    return (keys[0], *(k for k in keys if k.endswith(CALIBRATION_KEYS)))


def _boot_family(key: str, task: str | None) -> str:
    if key in ("auroc", "auprc", "brier") or key.startswith("response_") or task == "response":
        return "response"
    if key == "ibs":
        return "ibs"
    return "survival_calibration" if key in CALIBRATION_KEYS else "risk"


def _aligned_columns(g: pd.DataFrame, ids: pd.Index, key: str, task: str | None) -> dict[str, np.ndarray] | None:
    """The columns metric ``key`` needs of one method's fold rows ``g``, as arrays in the order of the fold's patients
    ``ids`` (``surv``: the IBS grid columns as a matrix), and ``_ok``: the patients with every column defined; None
    when ``g`` lacks a column."""
    family = _boot_family(key, task)
    names = list(_BOOT_COLUMNS[family])
    surv_cols = sorted((c for c in g.columns if str(c).startswith(IBS_SURV_PREFIX)),
                       key=lambda c: int(str(c)[len(IBS_SURV_PREFIX):]))
    if not set(names) <= set(g.columns) or (family == "ibs" and not surv_cols):
        return None
    pos = ids.get_indexer(g["patient_id"])
    g, pos = g[pos >= 0], pos[pos >= 0]
    n = len(ids)
    cols: dict[str, np.ndarray] = {}
    for c in names:
        a = np.full(n, np.nan)
        a[pos] = pd.to_numeric(g[c], errors="coerce").to_numpy(float)
        cols[c] = a
    if family == "ibs":
        s = np.full((n, len(surv_cols)), np.nan)
        s[pos] = g[surv_cols].to_numpy(float)
        cols["surv"] = s
    ok = np.ones(n, bool)
    for a in cols.values():
        ok &= np.isfinite(a) if a.ndim == 1 else np.isfinite(a).all(axis=1)
    cols["_ok"] = ok
    return cols


def _boot_metric(key: str, task: str | None) -> Callable[[dict[str, np.ndarray], FoldContext | None], float] | None:
    """``metric(columns of one resampled fold, the fold's context)`` of a summary key, or None."""
    from multimodal import metrics as mx

    def surv(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return c["time"], c["event"].astype(bool)

    def resp(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return c["response"].astype(int), c["response_prob"]

    def train(ctx: FoldContext | None) -> tuple[np.ndarray, np.ndarray]:
        if ctx is None or ctx.train_time is None or ctx.train_event is None:
            raise mx.UndefinedMetricError("no training fold for the IPCW censoring estimate")
        return ctx.train_time, ctx.train_event

    def s_h(c: dict[str, np.ndarray]) -> np.ndarray:
        return 1.0 - c["event_prob_at_horizon"]

    def ibs(c: dict[str, np.ndarray], ctx: FoldContext | None) -> float:
        if ctx is None or ctx.grid is None:
            raise mx.UndefinedMetricError("no IBS grid")
        return mx.integrated_brier(*train(ctx), *surv(c), c["surv"], ctx.grid)

    def td_auc(c: dict[str, np.ndarray], ctx: FoldContext | None) -> float:
        return mx.td_auc(*train(ctx), *surv(c), c["risk"], ctx.horizons if ctx else None)["mean_auc"]

    family = _boot_family(key, task)
    if family == "response":
        fn = {"auroc": mx.auroc, "auprc": mx.auprc, "brier": mx.brier, "calibration_slope": mx.calibration_slope,
              "ici": mx.response_ici}.get(key.removeprefix("response_"))
        return None if fn is None else (lambda c, ctx: fn(*resp(c)))
    fns: dict[str, Callable[[dict[str, np.ndarray], FoldContext | None], float]] = {
        "c_index": lambda c, ctx: mx.harrell_c(*surv(c), c["risk"]),
        "c_index_uno": lambda c, ctx: mx.uno_c(*train(ctx), *surv(c), c["risk"]),
        "td_auc": td_auc,
        "ibs": ibs,
        "calibration_slope": lambda c, ctx: mx.survival_calibration_slope(*surv(c), s_h(c)),
        "ici": lambda c, ctx: mx.survival_ici(*surv(c), s_h(c), float(c["calibration_horizon"][0])),
    }
    return fns.get(key)


def _bounded(key: str, ci: list[float | None] | None) -> list[float | None] | None:
    lo_hi = METRIC_RANGES.get(key)
    if lo_hi is None or ci is None or ci[0] is None or ci[1] is None:
        return ci
    return [float(np.clip(ci[0], *lo_hi)), float(np.clip(ci[1], *lo_hi))]


def _intervals_text(task: str | None, n_boot: int) -> str:
    if not n_boot:
        return "no confidence intervals (evaluation.bootstrap 0)"
    slow = [k for k in _summary_keys(task) if k in IPCW_KEYS]
    fewer = f" ({', '.join(slow)}: {min(n_boot, IPCW_BOOTSTRAP)}, the first of the same resamples)" \
        if slow and n_boot > IPCW_BOOTSTRAP else ""
    return (f"95% CIs are percentile bootstraps over patients: {n_boot} resamples{fewer}, patients drawn with "
            "replacement within each reporting fold and the fold metrics averaged, clipped to the metric's range; "
            "the same resamples for every method, so comparison differences are paired")


def _keys(task: str | None) -> tuple[str, ...]:
    """Summary metrics of a task (the first one gets the bootstrap CI)."""
    if task == "response":
        return RESPONSE_KEYS
    return SURVIVAL_KEYS + (("auroc", "auprc") if task == "both" else ())
