"""A cross-validated study's results as pandas DataFrames (``multimodal cv``'s ``summary.json``, or what
:meth:`multimodal.study.Study.run` returns).

* :func:`fold_frame`: one row per method × fold × metric (``method, fold, metric, value``), every numeric metric of
  the fold records (``folds/fold_<k>.json``), including ``seconds`` and our model's ``best_epoch``;
* :func:`summary_frame`: one row per method × summary metric (``method, metric, mean, std, ci_low, ci_high,
  n_folds``), the 95 % CI being the summary's bootstrap over patients within folds;
* :func:`study_frame`: both from a run folder.

Example::

    folds, summary = study_frame("runs/demo")
    summary.pivot(index="method", columns="metric", values="mean")
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from numbers import Real
from pathlib import Path
from typing import Any

import pandas as pd

from multimodal.errors import InputError

FOLD_COLUMNS = ("method", "fold", "metric", "value")
SUMMARY_COLUMNS = ("method", "metric", "mean", "std", "ci_low", "ci_high", "n_folds")


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, Real):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def fold_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per method × fold × numeric metric of a study summary (metrics undefined in a fold are left out)."""
    rows = []
    for method, m in summary.get("methods", {}).items():
        for rec in m.get("folds", []):
            for key, v in rec.items():
                x = _number(v)
                if key != "fold" and x is not None:
                    rows.append((method, rec.get("fold"), key, x))
    return pd.DataFrame(rows, columns=list(FOLD_COLUMNS))


def summary_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per method × summary metric: mean and std over folds and the 95 % CI (None where undefined)."""
    from multimodal.study import method_ci

    rows = []
    for method, m in summary.get("methods", {}).items():
        n_folds = len(m.get("folds", []))
        for key, mean in m.get("mean", {}).items():
            ci = method_ci(m, key) or [None, None]
            rows.append((method, key, mean, m.get("std", {}).get(key), ci[0], ci[1], n_folds))
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    for c in ("mean", "std", "ci_low", "ci_high"):
        frame[c] = frame[c].astype(float)
    return frame


def study_frame(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(:func:`fold_frame`, :func:`summary_frame`) of the study in run folder ``run_dir`` (its ``summary.json``)."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise InputError("no summary.json: not a finished study run folder", file=Path(run_dir),
                         hint="give the --out folder of a finished `multimodal cv` run")
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"summary.json is not valid JSON ({exc})", file=path) from None
    return fold_frame(summary), summary_frame(summary)


class StudyResult(dict):
    """The summary :meth:`multimodal.study.Study.run` returns: the ``summary.json`` dict, plus its tables.

    ``result["methods"]`` etc. work as before; :meth:`to_frame` and :meth:`summary_frame` give DataFrames.
    """

    def to_frame(self) -> pd.DataFrame:
        """One row per method × fold × metric (:func:`fold_frame`)."""
        return fold_frame(self)

    def summary_frame(self) -> pd.DataFrame:
        """One row per method × summary metric with mean, std and 95 % CI (:func:`summary_frame`)."""
        return summary_frame(self)
