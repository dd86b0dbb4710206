"""The prediction table of ``multimodal predict``: per-arm survival columns, survival / cumulative hazard at asked
times (docs/data-formats.md, "Predictions file")."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from multimodal.calibration import arm_surv_columns, surv_columns
from multimodal.errors import InputError

if TYPE_CHECKING:
    from multimodal.pipeline import Pipeline

__all__ = ["answer_columns", "check_times", "last_bin_time", "time_label"]


class WithArmSurvival(torch.nn.Module):
    """The model, with each arm's per-bin survival appended to ``survival`` so that
    :func:`~multimodal.training.predict_dataset` gathers it (``surv_<K + a K + k>``; :func:`split_arm_survival`
    names them ``surv_arm_<a>_<k>``)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch: Any, **kwargs: Any) -> Any:
        out = self.net(batch, **kwargs)
        if out.survival is None or out.survival_per_arm is None:
            return out
        return dataclasses.replace(out, survival=torch.cat([out.survival, out.survival_per_arm.flatten(1)], dim=1))


def split_arm_survival(raw: pd.DataFrame, n_bins: int, n_arms: int) -> pd.DataFrame:
    extra = {f"surv_{n_bins + a * n_bins + k}": f"surv_arm_{a}_{k}" for a in range(n_arms) for k in range(n_bins)}
    if not set(extra) <= set(raw.columns):
        return raw
    return raw.rename(columns=extra)


def last_bin_time(metadata: Mapping[str, Any]) -> float | None:
    """Where the last (open) bin's survival is read: the largest training time (``max_train_time``; for pipelines
    saved before it was recorded, the recalibration map's last bin end), None when unknown."""
    t = metadata.get("max_train_time")
    if t is None:
        ends = ((metadata.get("recalibration") or {}).get("survival") or {}).get("bin_ends")
        t = ends[-1] if isinstance(ends, list) and ends else None
    try:
        return None if t is None or not math.isfinite(float(t)) else float(t)
    except (TypeError, ValueError):
        return None


def check_times(times: Sequence[float] | None, pipe: Pipeline) -> list[float]:
    """``times`` as a sorted list of distinct finite times >= 0; InputError (field ``--times``) for bad values or a
    model without survival curves."""
    out: list[float] = []
    for t in times or ():
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise InputError(f"expected a time, got {t!r}", field="--times") from None
        if not math.isfinite(v) or v < 0:
            raise InputError(f"times must be finite and >= 0, got {t!r}", field="--times")
        out.append(v)
    if out and pipe.model.config.survival != "discrete":
        kind = "a Cox survival head (no baseline hazard is saved)" if pipe.model.config.survival == "cox" else \
            "no survival head"
        raise InputError(f"the pipeline's model has {kind}: it predicts no survival curve", field="--times",
                         hint="leave out --times; 'risk' ranks the patients")
    return sorted(set(out))


def time_label(t: float) -> str:
    """A time as it appears in a column name: ``365``, ``182.5``."""
    text = repr(float(t))
    return text[:-2] if text.endswith(".0") else text


def answer_columns(pred: pd.DataFrame, pipe: Pipeline, times: Sequence[float] = ()) -> pd.DataFrame:
    """:meth:`Pipeline.predict` output (with ``survival_per_arm`` when ``times``) turned into the answer table.

    Kept: every column of :meth:`Pipeline.predict` but ``surv_arm_<a>_<k>``. Added:

    * ``survival_t<T>`` / ``cumhaz_t<T>`` (= -log S) at each time T of ``times`` (:meth:`Pipeline.survival_at`);
    * per arm, named by the arm: ``risk_<arm>``, ``response_prob_<arm>``, ``survival_t<T>_<arm>``,
      ``cumhaz_t<T>_<arm>``;
    * with exactly two arms, arm 1 minus arm 0: ``risk_diff_<arm1>_vs_<arm0>``,
      ``response_prob_diff_<arm1>_vs_<arm0>``, ``survival_t<T>_diff_<arm1>_vs_<arm0>``.
    """
    out = pred.copy()
    arms = [str(a) for a in pipe.metadata.get("treatment_arms") or []]
    new: dict[str, np.ndarray] = {}
    if times:
        cols = surv_columns(out)
        labels = [time_label(t) for t in times]
        if cols:
            _survival_block(new, pipe.survival_at(out[cols].to_numpy(float), times), labels, "")
        for a, arm in enumerate(arms):
            acols = arm_surv_columns(out, a)
            if acols:
                _survival_block(new, pipe.survival_at(out[acols].to_numpy(float), times), labels, f"_{arm}")
    for a, arm in enumerate(arms):
        for what in ("risk", "response_prob"):
            if f"{what}_arm_{a}" in out.columns:
                new[f"{what}_{arm}"] = out[f"{what}_arm_{a}"].to_numpy(float)
    if len(arms) == 2:
        a0, a1 = arms
        stems = ["risk", "response_prob"] + [f"survival_t{time_label(t)}" for t in times]
        for stem in stems:
            if f"{stem}_{a0}" in new and f"{stem}_{a1}" in new:
                new[f"{stem}_diff_{a1}_vs_{a0}"] = new[f"{stem}_{a1}"] - new[f"{stem}_{a0}"]
    clash = [c for c in new if c in out.columns]
    if clash:
        raise InputError(f"an arm name makes column {clash[0]!r}, which the prediction table already has", field="arms",
                         hint=f"treatment arms {arms}: rename the arm in the training manifest")
    out = out.drop(columns=[c for c in out.columns if c.startswith("surv_arm_")])
    return pd.concat([out, pd.DataFrame(new, index=out.index)], axis=1)


def _survival_block(new: dict[str, np.ndarray], surv: np.ndarray, labels: Sequence[str], suffix: str) -> None:
    with np.errstate(divide="ignore"):
        cumhaz = -np.log(np.clip(surv, 0.0, 1.0))
    for j, lab in enumerate(labels):
        new[f"survival_t{lab}{suffix}"] = surv[:, j]
        new[f"cumhaz_t{lab}{suffix}"] = cumhaz[:, j] + 0.0  # -0.0 -> 0.0
