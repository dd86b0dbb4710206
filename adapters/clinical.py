"""Clinical adapter: a wide clinical table (age, sex, stage, grade, ...) -> static ``events`` tokens (DESIGN §5).

One token per variable, every patient the same number of tokens, ``times`` 0, in the same representation as the EHR
stream (``codes`` / ``values`` / ``value_mask``):

* categorical ``stage`` -> code ``stage=III`` (levels fitted on the training patients, sorted); a level not seen in
  training (or seen in fewer than ``min_category_count`` training patients) -> ``stage=<UNK>``; missing ->
  ``stage=<missing>`` (an explicit missing indicator). No value.
* numeric ``age`` -> code ``age`` with the value standardized by the training mean/std (population, float64) and
  clipped to ``±value_clip``; missing -> code ``age=<missing>`` with ``value_mask`` False.
* names: ``"age = 63"``, ``"stage = III"``, ``"stage = <missing>"``, ``"stage = IV-B [UNK]"``.

Columns: those declared in the adapter config, plus those declared by the :class:`ClinicalSource` (manifest); when
neither declares any and ``infer`` is on, numbers are numeric and everything else (strings, booleans, categories)
categorical; date/time columns are skipped. **Leakage**: the cohort loaders already took the declared outcome and
patient-table columns, the excluded, outcome-like and identifier-like columns out of the table
(:mod:`multimodal.cohorts.clinical_columns`, which also holds :data:`DEFAULT_LEAKAGE_PATTERNS`, re-exported here); this
adapter checks again for tables built in memory: ``exclude`` columns never reach a token, and neither do undeclared or
source-declared columns whose name matches ``exclude_patterns`` (outcome and follow-up fields such as
``vital_status``, ``survival_months``, ``censorship``, ``days_to_last_follow_up``), unless the source lists them in
``allowed`` (declared explicitly in the manifest). Naming a column both in the config's ``categorical``/``numeric``
and in ``exclude`` (or one matching ``exclude_patterns``) is a ConfigError. An identifier-like column the loader
withheld (an MRN, a date) is used only when this config's ``categorical``/``numeric`` names it; a config naming a
column the loader removed for any other reason gets an InputError saying why it was removed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from multimodal.adapters.base import Adapter, StreamSpec, empty_stream
from multimodal.cohorts.clinical_columns import DEFAULT_LEAKAGE_PATTERNS, DEFAULT_MISSING_VALUES
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import ClinicalSource
from multimodal.errors import ConfigError, InputError, IntegrityError, Problem
from multimodal.registry import register_adapter
from multimodal.types import TokenStream

__all__ = ["ClinicalAdapter", "ClinicalAdapterConfig", "DEFAULT_LEAKAGE_PATTERNS"]

PAD, UNK = 0, 1
MISSING, UNSEEN = "<missing>", "<UNK>"
_STATE_VERSION = 1

@dataclass(frozen=True)
class ClinicalAdapterConfig:
    """Configuration of :class:`ClinicalAdapter`.

    Attributes:
        modality: cohort modality name (its source must be a :class:`ClinicalSource`).
        categorical / numeric: columns to use, in addition to those the ClinicalSource declares.
        exclude: columns never used (leakage: vital status, follow-up, outcomes).
        exclude_patterns: regexes (case-insensitive full match) of column names never used unless declared here.
        infer: when no column is declared anywhere, infer types from dtypes (numbers numeric, the rest categorical).
        min_category_count: a level seen in fewer training patients becomes ``<UNK>``.
        missing_values: strings read as missing (besides NaN/None).
        value_clip: standardized numerics are clipped to ``[-value_clip, value_clip]``.
    """

    modality: str = "clinical"
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = DEFAULT_LEAKAGE_PATTERNS
    infer: bool = True
    min_category_count: int = 1
    missing_values: tuple[str, ...] = DEFAULT_MISSING_VALUES
    value_clip: float = 5.0

    def __post_init__(self) -> None:
        both = sorted(set(self.categorical) & set(self.numeric))
        excluded = sorted((set(self.categorical) | set(self.numeric)) & set(self.exclude))
        if both:
            raise ConfigError(f"column(s) {both} declared both categorical and numeric", field="categorical")
        if excluded:
            raise ConfigError(f"column(s) {excluded} are both declared and excluded", field="exclude")
        if self.min_category_count < 1 or self.value_clip <= 0:
            raise ConfigError("min_category_count must be >= 1 and value_clip > 0", field="min_category_count")
        for pat in self.exclude_patterns:
            try:
                re.compile(pat)
            except re.error as exc:
                raise ConfigError(f"invalid regex {pat!r}: {exc}", field="exclude_patterns") from exc


@dataclass(frozen=True)
class Variable:
    """One fitted variable: its kind and training levels (categorical) or mean/std (numeric)."""

    name: str
    kind: Literal["categorical", "numeric"]
    levels: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    def codes(self) -> list[str]:
        """Its vocabulary entries, in index order."""
        if self.kind == "numeric":
            return [self.name, f"{self.name}={MISSING}"]
        return [f"{self.name}={MISSING}", f"{self.name}={UNSEEN}", *(f"{self.name}={lvl}" for lvl in self.levels)]


def _level(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _missing(series: pd.Series, missing_values: frozenset[str]) -> np.ndarray:
    na = series.isna().to_numpy()
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype | pd.CategoricalDtype):
        text = series.astype(object).map(lambda v: isinstance(v, str) and v.strip() in missing_values).to_numpy()
        na = na | text.astype(bool)
    return na


def numeric_values(series: pd.Series, missing: np.ndarray, *, file: object, field: str) -> np.ndarray:
    """float64 values (NaN where missing); InputError naming each patient whose value is not a number."""
    num = pd.to_numeric(series.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~missing & ~np.isfinite(num)
    if bad.any():
        probs = [Problem(f"numeric column has non-numeric value {series.iloc[i]!r}", file=None if file is None else
                         str(file), patient=str(series.index[i]), field=field) for i in np.flatnonzero(bad)[:20]]
        raise InputError(problems=probs)
    return num


def _absent_column(src: ClinicalSource, column: str) -> Problem:
    """The problem for a declared column the table lacks, saying why when the loader removed it."""
    file = None if src.path is None else str(src.path)
    if column not in src.removed:
        return Problem(f"clinical table has no column {column!r}", file=file, field=column)
    return Problem(f"clinical column {column!r} was removed from the features when the cohort was loaded: "
                   f"{src.removed[column]}", file=file, field=column,
                   hint="declare it in the manifest's clinical categorical/numeric if it is truly a baseline feature")


@register_adapter("clinical")
class ClinicalAdapter(Adapter):
    """Wide clinical table -> one static token per variable (see the module docstring)."""

    registry_name = "clinical"
    config_cls = ClinicalAdapterConfig
    config: ClinicalAdapterConfig

    def __init__(self, config: ClinicalAdapterConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.variables: tuple[Variable, ...] = ()
        self.excluded: tuple[str, ...] = ()
        self._index: dict[str, int] = {}
        self._codes = np.zeros((0, 0), dtype=np.int64)
        self._values = np.zeros((0, 0), dtype=np.float32)
        self._value_mask = np.zeros((0, 0), dtype=bool)
        self._names: list[tuple[str, ...]] = []

    # ---- columns -----------------------------------------------------------------------------------------------
    def _source(self, cohort: Cohort) -> ClinicalSource:
        src = cohort.modalities.get(self.modality)
        if not isinstance(src, ClinicalSource):
            raise InputError(
                f"modality {self.modality!r} is {type(src).__name__}, the 'clinical' adapter reads a wide table",
                file=cohort.manifest_path, field=f"modalities.{self.modality}.type",
            )
        return src

    def _leaky(self, column: str) -> bool:
        return any(re.fullmatch(p, column, flags=re.IGNORECASE) for p in self.config.exclude_patterns)

    def _table(self, src: ClinicalSource) -> pd.DataFrame:
        """The source's table (index as str), plus the withheld identifier-like columns this config declares."""
        table = src.table
        wanted = [c for c in (*self.config.categorical, *self.config.numeric) if c not in table.columns]
        if src.withheld is not None and any(c in src.withheld.columns for c in wanted):
            table = table.join(src.withheld[[c for c in wanted if c in src.withheld.columns]])
        return table.set_axis(table.index.map(str), axis=0)

    def _columns(self, src: ClinicalSource, table: pd.DataFrame) -> tuple[list[tuple[str, str]], list[str]]:
        """([(column, kind)] in table order, excluded columns)."""
        cfg = self.config
        leaky_declared = [c for c in (*cfg.categorical, *cfg.numeric) if self._leaky(c)]
        if leaky_declared:
            raise ConfigError(
                f"column(s) {leaky_declared} are declared but match exclude_patterns (outcome/follow-up fields)",
                field="exclude_patterns", hint="remove them, or set exclude_patterns to [] if they are truly baseline",
            )
        kinds = {c: "categorical" for c in src.categorical} | {c: "numeric" for c in src.numeric}
        kinds |= {c: "categorical" for c in cfg.categorical} | {c: "numeric" for c in cfg.numeric}
        absent = [c for c in kinds if c not in table.columns]
        if absent:
            raise InputError(problems=[_absent_column(src, c) for c in absent])
        if not kinds and cfg.infer:
            for c in table.columns:
                s = table[c]
                if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
                    continue
                numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
                kinds[str(c)] = "numeric" if numeric else "categorical"
        declared = (*cfg.categorical, *cfg.numeric, *src.allowed)
        excluded = [c for c in kinds if c in cfg.exclude or (self._leaky(c) and c not in declared)]
        chosen = [(str(c), kinds[str(c)]) for c in table.columns if str(c) in kinds and str(c) not in excluded]
        return chosen, sorted(excluded)

    # ---- fit / bind --------------------------------------------------------------------------------------------
    def fit(self, cohort: Cohort, patient_ids: Sequence[str]) -> ClinicalAdapter:
        """Fit levels and numeric statistics on ``patient_ids`` (those with a row in the table)."""
        super().bind(cohort)
        src = self._source(cohort)
        table = self._table(src)
        columns, excluded = self._columns(src, table)
        self.excluded = tuple(excluded)
        train = table.loc[[p for p in dict.fromkeys(map(str, patient_ids)) if p in table.index]]
        missing_values = frozenset(self.config.missing_values)
        variables = []
        for col, kind in columns:
            miss = _missing(train[col], missing_values)
            if kind == "numeric":
                num = numeric_values(train[col], miss, file=src.path, field=col)
                x = num[np.isfinite(num)]
                mean = float(x.mean()) if len(x) else 0.0
                std = float(np.sqrt(((x - mean) ** 2).mean())) if len(x) >= 2 else 1.0
                variables.append(Variable(col, "numeric", mean=mean, std=std if std > 1e-12 else 1.0))
            else:
                counts = pd.Series([_level(v) for v in train[col][~miss]], dtype=object).value_counts()
                levels = tuple(sorted(str(k) for k, n in counts.items() if n >= self.config.min_category_count))
                variables.append(Variable(col, "categorical", levels=levels))
        self.variables = tuple(variables)
        self.fitted = True
        self._encode(cohort)
        return self

    def bind(self, cohort: Cohort) -> ClinicalAdapter:
        super().bind(cohort)
        if self.fitted:
            self._encode(cohort)
        return self

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Index -> code: ``<PAD>``, ``<UNK>``, then each variable's entries in order."""
        return ("<PAD>", "<UNK>", *(c for v in self.variables for c in v.codes()))

    def _encode(self, cohort: Cohort) -> None:
        """Tokens for every cohort patient with a table row: (P, V) codes/values/masks and names."""
        src = self._source(cohort)
        table = self._table(src)
        table = table.loc[[p for p in cohort.patients.index if p in table.index]]
        index = {c: i for i, c in enumerate(self.vocabulary)}
        missing_values = frozenset(self.config.missing_values)
        n, v = len(table), len(self.variables)
        codes = np.zeros((n, v), dtype=np.int64)
        values = np.zeros((n, v), dtype=np.float32)
        vmask = np.zeros((n, v), dtype=bool)
        labels = np.empty((n, v), dtype=object)
        for j, var in enumerate(self.variables):
            if var.name not in table.columns:
                raise InputError(f"clinical table lacks fitted column {var.name!r}", field=var.name,
                                 file=None if src.path is None else str(src.path))
            miss = _missing(table[var.name], missing_values)
            miss_code = index[f"{var.name}={MISSING}"]
            if var.kind == "numeric":
                num = numeric_values(table[var.name], miss, file=src.path, field=var.name)
                ok = np.isfinite(num)
                codes[:, j] = np.where(ok, index[var.name], miss_code)
                z = np.clip((np.where(ok, num, var.mean) - var.mean) / var.std, -self.config.value_clip,
                            self.config.value_clip)
                values[:, j] = np.where(ok, z, 0.0)
                vmask[:, j] = ok
                labels[:, j] = [
                    f"{var.name} = {x:g}" if k else f"{var.name} = {MISSING}" for x, k in zip(num, ok, strict=True)
                ]
            else:
                unk_code = index[f"{var.name}={UNSEEN}"]
                for i, (raw, m) in enumerate(zip(table[var.name].tolist(), miss, strict=True)):
                    lvl = None if m else _level(raw)
                    code = miss_code if lvl is None else index.get(f"{var.name}={lvl}", unk_code)
                    codes[i, j] = code
                    suffix = " [UNK]" if code == unk_code else ""
                    labels[i, j] = f"{var.name} = {MISSING if lvl is None else lvl}{suffix}"
        self._index = {p: i for i, p in enumerate(table.index)}
        self._codes, self._values, self._value_mask = codes, values, vmask
        self._names = [tuple(row) for row in labels.tolist()]

    # ---- outputs ----------------------------------------------------------------------------------------------------
    def transform(self, patient_id: str, *, train: bool = False, seed: int | None = None) -> TokenStream:
        """One token per fitted variable (batch size 1); zero tokens when the patient has no table row."""
        self._require_fitted()
        i = self._index.get(str(patient_id))
        if i is None:
            return empty_stream(self.modality, events=True)
        v = len(self.variables)
        return TokenStream(
            modality=self.modality,
            mask=torch.ones(1, v, dtype=torch.bool),
            codes=torch.from_numpy(self._codes[i].copy()).view(1, v),
            values=torch.from_numpy(self._values[i].copy()).view(1, v),
            value_mask=torch.from_numpy(self._value_mask[i].copy()).view(1, v),
            times=torch.zeros(1, v),
            names=(self._names[i],),
        )

    def stream_spec(self) -> StreamSpec:
        if not self.fitted:
            msg = "ClinicalAdapter is not fitted; call fit(cohort, train_ids) first"
            raise RuntimeError(msg)
        return StreamSpec(modality=self.modality, kind="events", vocab_size=len(self.vocabulary),
                          max_tokens=len(self.variables))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def state_json(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "variables": [{"name": v.name, "kind": v.kind, "levels": list(v.levels), "mean": v.mean, "std": v.std}
                          for v in self.variables],
            "excluded": list(self.excluded),
            "vocab": list(self.vocabulary),
        }

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        try:
            variables = tuple(
                Variable(d["name"], d["kind"], tuple(d["levels"]), float(d["mean"]), float(d["std"]))
                for d in meta["variables"]
            )
        except (KeyError, TypeError) as exc:
            raise IntegrityError(f"clinical adapter state is malformed ({exc!r})") from exc
        self.variables, self.excluded = variables, tuple(meta.get("excluded", ()))
        if meta.get("version") != _STATE_VERSION or list(self.vocabulary) != list(meta.get("vocab", [])):
            raise IntegrityError("clinical adapter state is inconsistent (version or vocabulary mismatch)")
        self.fitted = True
