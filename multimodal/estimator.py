"""A scikit-learn / scikit-survival style estimator around :class:`multimodal.pipeline.Pipeline`.

:class:`MultimodalSurvivalEstimator` trains the fusion model through ``Pipeline.fit`` (adapters fitted on the training
rows only, inner validation for early stopping) and follows the scikit-survival conventions, so it works with
``sklearn.base.clone``, ``GridSearchCV``, ``cross_val_score`` and ``sksurv.util.Surv``::

    from sksurv.util import Surv
    from sklearn.model_selection import GridSearchCV

    y = Surv.from_arrays(event=df["event"], time=df["time"])
    est = MultimodalSurvivalEstimator(d_model=32, depth=1, epochs=5)
    search = GridSearchCV(est, {"lr": [1e-3, 3e-3]}, cv=3).fit(df[features], y)
    risk = search.best_estimator_.predict(df_new[features])          # higher = worse

Two kinds of ``X`` are supported:

* **tabular features**: a pandas DataFrame, or a 2-d NumPy array (its columns are named ``x0``, ``x1``, ... and are
  numeric, so ``make_pipeline(StandardScaler(), MultimodalSurvivalEstimator())`` works), one row per patient; NaN
  marks a missing value (the clinical adapter's missing indicator), so NaN in ``X`` is allowed. Columns ending in ``_rnaseq`` / ``_mut`` / ``_cnv``
  (the TCGA wide-table convention) become an :class:`~multimodal.cohorts.sources.OmicsSource` read by the genomics
  adapter (one token per gene, ``top_k_genes`` genes); every other column becomes a
  :class:`~multimodal.cohorts.sources.ClinicalSource` read by the clinical adapter (numbers numeric, strings /
  categories / booleans categorical, unless ``categorical`` / ``numeric`` say otherwise). Rows are identified by
  position, so the index may be anything (duplicates included).
* **a sequence of patient ids of a bound cohort**: pass ``cohort=`` (a :class:`~multimodal.cohorts.Cohort` or the path
  of a manifest YAML) and give ``X`` as a list / 1-d array of patient ids. Every modality of the cohort is used
  (slides, genomics, EHR, clinical), each with its default adapter config or the one in ``adapters``. ``y`` may be
  ``None``: outcomes are then read from the cohort.

``y`` is a scikit-survival structured array: first field the event indicator (bool, True = event observed), second
field the time (float), e.g. ``Surv.from_arrays(event, time)``; field names do not matter.

Outputs: :meth:`~MultimodalSurvivalEstimator.predict` gives the risk score (higher = worse);
:meth:`~MultimodalSurvivalEstimator.predict_survival_function` and
:meth:`~MultimodalSurvivalEstimator.predict_cumulative_hazard_function` give, like scikit-survival, an array of
``sksurv.functions.StepFunction`` or, with ``return_array=True``, an ``(n_samples, n_times)`` array at
``unique_times_`` (the distinct event times of the training data); :meth:`~MultimodalSurvivalEstimator.score` is
Harrell's c-index (:func:`multimodal.metrics.harrell_c`). ``random_state`` seeds the inner split, the initialisation
and the data order (``seed`` is its deprecated former name).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from multimodal.errors import ConfigError, InputError
from multimodal.pipeline import ModelConfig
from multimodal.training import TrainingConfig

__all__ = ["MultimodalSurvivalEstimator", "OMICS_SUFFIXES"]

#: Column suffixes that mark genomics features in a DataFrame ``X`` (TCGA wide-table convention).
OMICS_SUFFIXES: tuple[str, ...] = ("_rnaseq", "_mut", "_cnv")
_MODEL_KEYS = tuple(f.name for f in fields(ModelConfig))
_TRAIN_KEYS = tuple(f.name for f in fields(TrainingConfig))


class MultimodalSurvivalEstimator(BaseEstimator):
    """The multimodal fusion survival model as a scikit-learn estimator (see the module docstring for ``X``/``y``).

    The defaults are sized for tabular inputs (a smaller model than ``ModelConfig``'s defaults, no modality dropout);
    for slide bags raise ``d_model`` / ``num_latents`` and set ``modality_dropout`` (e.g. 0.15, as configs/demo.yaml).

    Args:
        d_model, depth, num_heads, num_latents, dropout, modality_dropout, survival, num_bins, alpha, ensemble: model
            hyperparameters, mapped onto :class:`multimodal.pipeline.ModelConfig` (``survival``: ``"discrete"`` or
            ``"cox"``). ``ensemble``: members of a deep ensemble (predictions averaged; 1 = one model).
        epochs, lr, batch_size, weight_decay, val_fraction, patience, select_metric: training settings, mapped onto
            :class:`multimodal.training.TrainingConfig`. ``val_fraction`` of the training rows (stratified on the
            event) is held out for early stopping; 0 trains on every row and keeps the last epoch.
        random_state: seed of the inner split, the initialisation and the data order (an int; None draws one from
            NumPy's global generator at each ``fit``, as in scikit-learn).
        seed: deprecated alias of ``random_state`` (a FutureWarning; when set it wins).
        top_k_genes: gene tokens of the genomics adapter when ``X`` is a DataFrame with omics columns.
        categorical, numeric: clinical columns of a DataFrame ``X`` to treat as categorical / numeric (e.g. a 0/1
            or integer-coded column as categorical); every other column is typed by its dtype (numbers numeric;
            strings, categories and booleans categorical; dates left out).
        time_unit: unit of the times in ``y`` (recorded in the model; ``days``, ``weeks``, ``months`` or ``years``).
        cohort: a :class:`~multimodal.cohorts.Cohort` or a manifest path; set it to pass patient ids as ``X``.
        adapters: optional ``{modality: adapter config}`` (e.g. ``{"genomics": GenomicsAdapterConfig(...)}``)
            replacing the default config of that modality's adapter.
        verbose: show progress bars while training.

    Attributes (after ``fit``):
        pipeline_: the fitted :class:`~multimodal.pipeline.Pipeline` (``pipeline_.save_pretrained(dir)`` works).
        fit_result_: the :class:`~multimodal.training.FitResult` (selected epoch, history).
        unique_times_: sorted distinct event times of the training data (the grid of ``predict_survival_function``).
        n_features_in_: the number of columns of ``X`` seen in ``fit`` (tabular ``X``).
        feature_names_in_: the DataFrame columns seen in ``fit`` (a DataFrame ``X`` only, as in scikit-learn).
    """

    def __init__(
        self,
        *,
        d_model: int = 32,
        depth: int = 1,
        num_heads: int = 4,
        num_latents: int = 4,
        dropout: float = 0.1,
        modality_dropout: float = 0.0,
        survival: str = "discrete",
        num_bins: int = 4,
        alpha: float = 0.5,
        ensemble: int = 1,
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 16,
        weight_decay: float = 1e-2,
        val_fraction: float = 0.15,
        patience: int = 5,
        select_metric: str = "c_index",
        random_state: int | None = 0,
        seed: int | None = None,
        top_k_genes: int = 200,
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        time_unit: str = "days",
        cohort: Any = None,
        adapters: Mapping[str, Any] | None = None,
        verbose: bool = False,
    ) -> None:
        self.d_model = d_model
        self.depth = depth
        self.num_heads = num_heads
        self.num_latents = num_latents
        self.dropout = dropout
        self.modality_dropout = modality_dropout
        self.survival = survival
        self.num_bins = num_bins
        self.alpha = alpha
        self.ensemble = ensemble
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.select_metric = select_metric
        self.random_state = random_state
        self.seed = seed
        self.top_k_genes = top_k_genes
        self.categorical = categorical
        self.numeric = numeric
        self.time_unit = time_unit
        self.cohort = cohort
        self.adapters = adapters
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value takes the clinical adapter's missing indicator
        tags.input_tags.categorical = True  # DataFrame categorical / string columns are clinical categories
        tags.input_tags.string = True
        tags.target_tags.required = True  # y: a scikit-survival structured array (event, time)
        tags.target_tags.single_output = True
        return tags

    # ---- configuration ------------------------------------------------------------------------------------------
    def model_config(self) -> ModelConfig:
        """The :class:`ModelConfig` these hyperparameters describe."""
        return ModelConfig(**{k: getattr(self, k) for k in _MODEL_KEYS if hasattr(self, k)})

    def training_config(self) -> TrainingConfig:
        """The :class:`TrainingConfig` these hyperparameters describe (progress bars only with ``verbose``)."""
        kw = {k: getattr(self, k) for k in _TRAIN_KEYS if hasattr(self, k) and k != "progress"}
        return TrainingConfig(**kw, progress=bool(self.verbose), eval_batch_size=max(8, int(self.batch_size)))

    def check_params(self) -> None:
        """Reject invalid hyperparameters at once (a :class:`~multimodal.errors.ConfigError` listing every problem),
        with the same checks as ``multimodal train`` / ``cv``."""
        from multimodal.api import check_experiment
        from multimodal.experiment import EvaluationConfig, ExperimentConfig

        if self.survival not in ("discrete", "cox"):
            raise ConfigError(f"expected 'discrete' or 'cox', got {self.survival!r}", field="survival")
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ConfigError(f"expected a fraction in [0, 1), got {self.val_fraction!r}", field="val_fraction")
        training = replace(self.training_config(), val_fraction=float(self.val_fraction))
        check_experiment(ExperimentConfig(model=self.model_config(), training=training,
                                          evaluation=EvaluationConfig(baselines=())))

    # ---- scikit-learn API -----------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> MultimodalSurvivalEstimator:
        """Fit adapters and model on the rows of ``X`` (outcomes ``y``); returns ``self``."""
        from multimodal.pipeline import Pipeline

        self.check_params()
        if y is None and self.cohort is None:
            raise InputError(f"{type(self).__name__} requires y to be passed, but the target y is None", field="y",
                             hint="y = Surv.from_arrays(event=event, time=time), or bind a cohort holding outcomes")
        seed = self._fit_seed()
        cohort, ids = self._cohort_for(X, y, fitting=True)
        time, event = cohort.survival_arrays(ids)
        if not event.any():
            raise InputError("no event in the training data: a survival model cannot be fitted", field="y")
        train, val = self._inner_split(ids, event, seed)
        training = self.training_config()
        if val and training.select_metric == "c_index" and not _has_comparable_pair(*cohort.survival_arrays(val)):
            # a c-index is undefined on this (small) inner validation set: select on its loss instead
            training = replace(training, select_metric="loss")
        from multimodal.explain.reference import attribution_reference

        pipe, result = Pipeline.fit(
            cohort, train, val_ids=val or None, adapters=self._make_adapters(cohort), model_config=self.model_config(),
            training=training, task="survival", seed=seed, attribution_reference=attribution_reference,
        )
        self.random_state_ = seed
        self.pipeline_ = pipe
        self.fit_result_ = result
        self.unique_times_ = np.unique(time[event])
        self._train_time, self._train_event = time, event
        self._train_risk = self._risk(cohort, ids) if pipe.model.config.survival == "cox" else None
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Risk score per row of ``X`` (higher = worse outcome), shape ``(n_samples,)``."""
        self._check_fitted()
        cohort, ids = self._cohort_for(X, None, fitting=False)
        return self._risk(cohort, ids)

    def predict_survival_function(self, X: Any, return_array: bool = False) -> np.ndarray:
        """S(t | x) per row of ``X``.

        Returns:
            With ``return_array=False`` an object array of ``sksurv.functions.StepFunction`` (call ``fn(t)``; domain
            ``unique_times_``); with ``return_array=True`` a float array ``(n_samples, len(unique_times_))`` of S at
            ``unique_times_``. The discrete-time head's bin-end survival is interpolated linearly in time through
            S(0) = 1 (:func:`multimodal.study.discrete_survival_on_grid`); the Cox head uses the Breslow baseline of
            the training data.
        """
        from multimodal.survival_grid import breslow_survival_on_grid, discrete_survival_on_grid

        self._check_fitted()
        cohort, ids = self._cohort_for(X, None, fitting=False)
        pred = self.pipeline_.predict(cohort, ids, batch_size=self.training_config().eval_batch_size)
        pred = pred.set_index("patient_id").loc[ids]
        grid = self.unique_times_
        cfg = self.pipeline_.model.config
        if cfg.survival == "cox":
            surv = breslow_survival_on_grid(self._train_risk, self._train_time, self._train_event,
                                            pred["risk"].to_numpy(float), grid)
        else:
            cols = sorted((c for c in pred.columns if c.startswith("surv_")), key=lambda s: int(s[5:]))
            surv = discrete_survival_on_grid(pred[cols].to_numpy(float), cfg.bin_edges,
                                             float(self._train_time.max()), grid)
        surv = np.clip(surv, 0.0, 1.0)
        if return_array:
            return surv
        return _step_functions(grid, surv)

    def predict_cumulative_hazard_function(self, X: Any, return_array: bool = False) -> np.ndarray:
        """H(t | x) = −log S(t | x) per row of ``X`` (S as :meth:`predict_survival_function`, floored at 1e-12).

        Returns:
            With ``return_array=False`` an object array of ``sksurv.functions.StepFunction`` on ``unique_times_``;
            with ``return_array=True`` a float array ``(n_samples, len(unique_times_))``.
        """
        surv = self.predict_survival_function(X, return_array=True)
        hazard = -np.log(np.clip(surv, 1e-12, 1.0))
        if return_array:
            return hazard
        return _step_functions(self.unique_times_, hazard)

    def score(self, X: Any, y: Any = None) -> float:
        """Harrell's c-index of ``predict(X)`` against ``y`` (or the bound cohort's outcomes when ``y`` is None)."""
        from multimodal.metrics import harrell_c

        risk = self.predict(X)
        if y is None:
            cohort, ids = self._cohort_for(X, None, fitting=False)
            time, event = cohort.survival_arrays(ids)
        else:
            event, time = _survival_y(y, len(risk))
        return float(harrell_c(time, event, risk))

    # ---- internals --------------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        from sklearn.exceptions import NotFittedError

        if not hasattr(self, "pipeline_"):
            msg = f"this {type(self).__name__} is not fitted yet; call fit(X, y) first"
            raise NotFittedError(msg)

    def _risk(self, cohort: Any, ids: list[str]) -> np.ndarray:
        pred = self.pipeline_.predict(cohort, ids, batch_size=self.training_config().eval_batch_size)
        return pred.set_index("patient_id").loc[ids, "risk"].to_numpy(float)

    def _fit_seed(self) -> int:
        """The seed of this fit: ``seed`` (deprecated, with a FutureWarning) if set, else ``random_state`` (None:
        drawn from NumPy's global generator; a ``RandomState``: drawn from it)."""
        from sklearn.utils import check_random_state

        if self.seed is not None:
            warnings.warn("MultimodalSurvivalEstimator(seed=...) is deprecated; use random_state=...",
                          FutureWarning, stacklevel=3)
            return int(self.seed)
        if isinstance(self.random_state, (int, np.integer)):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _inner_split(self, ids: list[str], event: np.ndarray, seed: int) -> tuple[list[str], list[str]]:
        from multimodal.cohorts.splits import validation_split

        if len(ids) < 4:
            return list(ids), []
        tr, va = validation_split(ids, event.astype(int), float(self.val_fraction), seed)
        return list(tr), list(va)

    def _bound_cohort(self) -> Any:
        from multimodal.cohorts.cohort import Cohort

        if isinstance(self.cohort, Cohort):
            return self.cohort
        if isinstance(self.cohort, (str, Path)):
            cached = getattr(self, "_loaded_cohort", None)
            if cached is None or cached[0] != str(self.cohort):
                self._loaded_cohort = (str(self.cohort), Cohort.from_manifest(self.cohort))
            return self._loaded_cohort[1]
        msg = f"cohort must be a Cohort or a manifest path, got {type(self.cohort).__name__}"
        raise InputError(msg, field="cohort")

    def _cohort_for(self, X: Any, y: Any, *, fitting: bool) -> tuple[Any, list[str]]:
        """The cohort holding the rows of ``X`` and their ids, in row order."""
        if isinstance(X, pd.DataFrame):
            return self._frame_cohort(X, y, fitting=fitting)
        if self.cohort is None:
            return self._frame_cohort(self._array_frame(X, fitting=fitting), y, fitting=fitting, named=False)
        cohort = self._bound_cohort()
        ids = [str(p) for p in np.asarray(X, dtype=object).ravel()]
        unknown = [p for p in ids if p not in cohort.patients.index]
        if unknown:
            raise InputError(f"{len(unknown)} patient id(s) not in the bound cohort, e.g. {unknown[:3]}",
                             patient=unknown[0], field="X")
        if len(set(ids)) != len(ids):
            raise InputError("X repeats patient ids; each patient may appear once", field="X")
        if y is not None:
            event, time = _survival_y(y, len(ids))
            known_t, known_e = cohort.survival_arrays(ids)
            if not (np.allclose(time, known_t) and np.array_equal(event, known_e)):
                raise InputError("y differs from the bound cohort's outcomes for these patients", field="y",
                                 hint="pass y=None to use the cohort's outcomes")
        return cohort, ids

    def _array_frame(self, X: Any, *, fitting: bool) -> pd.DataFrame:
        """A 2-d array-like ``X`` as a DataFrame with columns ``x0``, ``x1``, ... (or the names seen in ``fit``)."""
        if hasattr(X, "toarray"):
            raise InputError("sparse X is not supported", field="X", hint="pass a dense array or a DataFrame")
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise InputError(f"X is not an array of features ({exc})", field="X") from None
        if arr.ndim != 2:
            raise InputError(f"expected a 2-d array of features (n_samples, n_features), got {arr.ndim} dimension(s); "
                             "Reshape your data with X.reshape(-1, 1) (one feature) or X.reshape(1, -1) (one sample)",
                             field="X", hint="to pass patient ids instead, bind a cohort: cohort=Cohort(...)")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise InputError(f"X has shape {arr.shape}: at least one sample and one feature are needed", field="X")
        if arr.dtype.kind == "c":
            raise InputError("Complex data not supported: X holds complex values", field="X")
        if not fitting:
            n = getattr(self, "n_features_in_", arr.shape[1])
            if arr.shape[1] != n:
                raise InputError(f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting {n} features "
                                 "as input", field="X")
            names = getattr(self, "feature_names_in_", None)
            if names is not None:  # fitted on a DataFrame, given an array: the same columns by position
                return pd.DataFrame(arr, columns=list(names))
        frame = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
        if arr.dtype.kind in "biuf":
            frame = frame.astype(float)
            if np.isinf(frame.to_numpy()).any():
                raise InputError("X contains infinity", field="X", hint="replace it, or mark missing values as NaN")
        return frame

    def _frame_cohort(self, X: pd.DataFrame, y: Any, *, fitting: bool, named: bool = True) -> tuple[Any, list[str]]:
        from multimodal.cohorts.cohort import Cohort
        from multimodal.cohorts.sources import ClinicalSource, OmicsSource

        cols = [str(c) for c in X.columns]
        if fitting:
            self.n_features_in_ = len(cols)
            if named:
                self.feature_names_in_ = np.asarray(cols, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif not named:
            pass  # an array: its column count was checked by _array_frame
        elif (expected := [str(c) for c in getattr(self, "feature_names_in_", [f"x{i}" for i in
                                                                             range(self.n_features_in_)])]) != cols:
            missing = sorted(set(expected) - set(cols))
            msg = "X has different columns than at fit time"
            raise InputError(msg, field="X", hint=f"missing: {missing[:5]}" if missing else "same columns, same order")
        n = len(X)
        ids = [f"row{i:06d}" for i in range(n)]
        if y is not None:
            event, time = _survival_y(y, n)
        else:  # prediction: outcomes are unknown; placeholders never reach a metric
            event, time = np.zeros(n, bool), np.ones(n, float)
        patients = pd.DataFrame({"time": time, "event": event}, index=pd.Index(ids, name="patient_id"))
        frame = X.copy()
        frame.columns = cols
        frame.index = patients.index
        omics_cols = [c for c in cols if c.endswith(OMICS_SUFFIXES)]
        clin_cols = [c for c in cols if c not in omics_cols]
        mods: dict[str, Any] = {}
        if omics_cols:
            wide = frame[omics_cols].apply(pd.to_numeric, errors="coerce").astype(float)
            mods["genomics"] = OmicsSource(wide=wide, available=frozenset(wide.index[wide.notna().any(axis=1)]))
        if clin_cols:
            table = frame[clin_cols]
            cat, num = _clinical_kinds(table, self.categorical, self.numeric)
            mods["clinical"] = ClinicalSource(table=table, categorical=cat, numeric=num)
        if not mods:
            raise InputError("X has no columns", field="X")
        cohort = Cohort(name="estimator", patients=patients, modalities=mods, time_unit=self.time_unit)
        return cohort, ids

    def _make_adapters(self, cohort: Any) -> dict[str, Any]:
        from multimodal import experiment
        from multimodal.registry import ADAPTERS, _load_builtin

        _load_builtin()
        given = dict(self.adapters or {})
        kinds = {"slides": "pathology", "omics": "genomics", "meds": "ehr", "clinical": "clinical"}
        config_cls = {"pathology": experiment.PathologyAdapterConfig, "genomics": experiment.GenomicsAdapterConfig,
                      "ehr": experiment.EHRAdapterConfig, "clinical": experiment.ClinicalAdapterConfig}
        defaults: dict[str, dict[str, Any]] = {"genomics": {"tokens": "genes", "top_k": int(self.top_k_genes)}}
        out = {}
        for modality, src in cohort.modalities.items():
            kind = kinds[src.kind]
            cfg = given.get(modality)
            if cfg is None:
                cfg = config_cls[kind](**{**defaults.get(kind, {}), "modality": modality})
            out[modality] = ADAPTERS.get(kind)(cfg)
        unknown = sorted(set(given) - set(out))
        if unknown:
            raise InputError(f"adapters given for modalities the data lack: {unknown}", field="adapters",
                             hint=f"modalities present: {sorted(out)}")
        return out


def _clinical_kinds(table: pd.DataFrame, categorical: Sequence[str], numeric: Sequence[str]
                    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(categorical, numeric) columns: the declared ones, the rest by dtype (numbers numeric, booleans, strings and
    categories categorical; dates left out)."""
    cat, num = [c for c in categorical if c in table.columns], [c for c in numeric if c in table.columns]
    for c in table.columns:
        if c in cat or c in num or pd.api.types.is_datetime64_any_dtype(table[c]):
            continue
        s = table[c]
        is_num = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        (num if is_num else cat).append(c)
    return tuple(cat), tuple(num)


def _has_comparable_pair(time: np.ndarray, event: np.ndarray) -> bool:
    """Harrell's c-index is defined: some patient with an event has a shorter time than another patient."""
    return bool(event.any()) and bool((time[event].min() < time).any())


def _survival_y(y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(event bool, time float) from a scikit-survival structured array (first field event, second time)."""
    arr = np.asarray(y)
    names = arr.dtype.names
    if names is None or len(names) < 2:
        msg = f"y must be a structured array (event, time), e.g. sksurv.util.Surv.from_arrays; got dtype {arr.dtype}"
        raise InputError(msg, field="y", hint="y = Surv.from_arrays(event=event, time=time)")
    if arr.shape != (n,):
        raise InputError(f"y has shape {arr.shape}, X has {n} rows", field="y")
    event = arr[names[0]]
    if event.dtype != bool:
        if not np.isin(event, (0, 1)).all():
            raise InputError(f"y field {names[0]!r} (event) must be bool or 0/1", field="y")
        event = event.astype(bool)
    time = arr[names[1]].astype(float)
    if not np.isfinite(time).all() or (time < 0).any():
        raise InputError(f"y field {names[1]!r} (time) must be finite and >= 0", field="y")
    return event, time


def _step_functions(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """An object array of ``sksurv.functions.StepFunction`` (one per row of ``values`` on ``grid``)."""
    from sksurv.functions import StepFunction

    out = np.empty(len(values), dtype=object)
    for i, row in enumerate(values):
        out[i] = StepFunction(grid, row)
    return out
