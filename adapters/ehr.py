"""EHR adapter: MEDS 0.4 event streams -> ``events`` token streams (DESIGN §5).

Per patient, a token is one MEDS row: ``codes`` (vocabulary index; PAD=0, UNK=1), ``values`` (the numeric value
standardized per code with training statistics and clipped to ``±value_clip``; 0 where none), ``value_mask`` (True
where a standardized value exists), ``times`` (event time minus prediction time, in ``time_scale`` units, <= 0; 0 for
static rows) and a name ``"CODE = value @ -12.0d"`` (raw value; ``"CODE @ static"`` for static rows).

Decisions (documented here and in the config):

* **Leakage guard.** Only rows with ``time <= prediction_time`` (inclusive, MEDS LabelSchema) or a null ``time``
  (static) are ever read; the filter runs inside the polars plan before anything is counted, so a later event
  reaches neither a token nor the vocabulary nor the value statistics. ``prediction_time`` comes from
  ``cohort.patients["prediction_time"]``; a patient with EHR data but no prediction time is an :class:`InputError`.
* **Vocabulary.** Fitted on the training patients: a code enters when it occurs in at least ``min_count`` distinct
  training *patients* (``min_count_unit="subjects"``, the default: a code repeated 500 times in one record would
  otherwise enter and act as a fingerprint of that patient) or, with ``min_count_unit="events"``, in at least
  ``min_count`` training events. Codes are indexed in lexicographic order from 2 (MEDS-transforms
  ``fit_vocabulary_indices`` order); unseen or rare codes map to UNK (never an error); UNK tokens carry no value.
* **Values.** Per code mean/std (population) over the training patients' usable events with a finite value
  (float64, summed in a fixed order so the fit is bit-reproducible); std 1 where fewer than 2 values or zero spread.
  A code with no training value gets ``value_mask`` False.
* **Truncation.** The ``max_events`` most recent timed events are kept. Static rows are kept *in addition*, up to
  ``max_static`` of them (in code order), so ``max_tokens = max_events + max_static`` (static first, then events in
  time order). Ties at one instant are ordered by code and value, so the cut is deterministic.
* **Trends.** With ``trends`` on, each numeric code that a patient has measured at least ``trend_min_points`` times
  (among the kept events, at two or more distinct times) adds one derived token ``"CODE [trend]"`` after the patient's
  events: its value is the least-squares slope of the code's standardized values per year, standardized again with
  the training patients' slopes; its time is the code's last measurement. A lab's trajectory (a rising LDH) is then
  one token rather than a relation the model has to learn between many. Trend codes enter the vocabulary (after the
  codes, in code order) when at least ``min_count`` training patients have one.
* **Speed.** ``fit``/``bind`` tokenize every bound patient in one polars plan (scan -> join prediction times ->
  filter -> sort -> collect into flat numpy arrays + per-patient offsets) and cache them; :meth:`transform` slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import polars as pl
import torch

from multimodal.adapters.base import Adapter, StreamSpec, empty_stream
from multimodal.adapters.clinical import ClinicalAdapter, ClinicalAdapterConfig
from multimodal.adapters.meds_io import CollectedEvents, collect_events, scan_meds
from multimodal.cohorts.cohort import PREDICTION_TIME, Cohort
from multimodal.cohorts.sources import MedsSource
from multimodal.errors import ConfigError, InputError, IntegrityError, Problem
from multimodal.registry import register_adapter
from multimodal.types import TokenStream

__all__ = ["EHRAdapter", "EHRAdapterConfig", "ClinicalAdapter", "ClinicalAdapterConfig", "PAD", "UNK"]

PAD, UNK = 0, 1
TimeScale = Literal["days", "hours", "weeks", "years"]
_US_PER = {"days": 86_400e6, "hours": 3_600e6, "weeks": 7 * 86_400e6, "years": 365.25 * 86_400e6}
_SUFFIX = {"days": "d", "hours": "h", "weeks": "w", "years": "y"}
_STATE_VERSION = 2


@dataclass(frozen=True)
class EHRAdapterConfig:
    """Configuration of :class:`EHRAdapter`.

    Attributes:
        modality: cohort modality name (its source must be a :class:`MedsSource`).
        max_events: most recent timed events kept per patient.
        min_count: vocabulary threshold, counted per ``min_count_unit`` over training patients.
        min_count_unit: ``"subjects"`` (distinct training patients having the code; default) or ``"events"``.
        include_static: keep static (null-time) rows as tokens.
        max_static: static tokens kept per patient, in addition to ``max_events`` (first in code order).
        code_prefix_depth: keep only the first k ``//``-separated parts of each code (None = whole code).
        time_scale: unit of ``times`` (the TokenStream contract and the model assume ``"days"``).
        value_clip: standardized values are clipped to ``[-value_clip, value_clip]``.
        trends: add one ``"CODE [trend]"`` token per measured numeric code (slope per year; see the module docstring).
        trend_min_points: measurements of a code a patient needs for its trend token (>= 2).
    """

    modality: str = "ehr"
    max_events: int = 256
    min_count: int = 5
    min_count_unit: Literal["subjects", "events"] = "subjects"
    include_static: bool = True
    max_static: int = 64
    code_prefix_depth: int | None = None
    time_scale: TimeScale = "days"
    value_clip: float = 5.0
    trends: bool = True
    trend_min_points: int = 3

    def __post_init__(self) -> None:
        bad = [
            (name, expected, getattr(self, name))
            for name, ok, expected in (
                ("max_events", self.max_events >= 1, ">= 1"),
                ("min_count", self.min_count >= 1, ">= 1"),
                ("max_static", self.max_static >= 0, ">= 0"),
                ("code_prefix_depth", self.code_prefix_depth is None or self.code_prefix_depth >= 1, "None or >= 1"),
                ("value_clip", self.value_clip > 0, "> 0"),
                ("trend_min_points", self.trend_min_points >= 2, ">= 2"),
            )
            if not ok
        ]
        if bad:
            name, expected, actual = bad[0]
            raise ConfigError(f"EHRAdapterConfig.{name}: expected {expected}, got {actual!r}", field=name)


@dataclass(frozen=True)
class EHRState:
    """Fitted state: vocabulary (index ``i + 2`` = ``vocab[i]``) and per-index value statistics (length V).

    Trend entries (``"CODE [trend]"``) follow the codes; ``trend_of[j]`` is the vocabulary index of the code whose
    trend is entry ``n_codes + 2 + j``; their mean/std are those of the training patients' slopes.
    """

    vocab: tuple[str, ...]
    mean: np.ndarray  # float64 (V,)
    std: np.ndarray  # float64 (V,)
    n_values: np.ndarray  # int64 (V,) training values per code (0 => value_mask False)
    n_events: np.ndarray  # int64 (V,) training events per code
    n_patients: np.ndarray  # int64 (V,) distinct training patients per code
    n_train_patients: int
    trend_of: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return len(self.vocab) + 2

    @property
    def n_codes(self) -> int:
        return len(self.vocab) - len(self.trend_of)


@dataclass(frozen=True)
class EHRTokens:
    """The bound cohort's tokens, flat: patient ``p`` owns rows ``offsets[p]:offsets[p + 1]``."""

    patient_index: dict[str, int]
    offsets: np.ndarray  # int64 (P + 1,)
    n_usable: np.ndarray  # int64 (P,) usable rows before truncation
    codes: np.ndarray  # int32 vocabulary index
    raw: np.ndarray  # int32 index into code_names
    code_names: list[str]
    unk: np.ndarray  # bool
    static: np.ndarray  # bool
    times: np.ndarray  # float32
    raw_values: np.ndarray  # float32, NaN = none
    values: np.ndarray  # float32 standardized, 0 where value_mask is False
    value_mask: np.ndarray  # bool
    trend: np.ndarray  # bool: derived trend token (raw_values = slope in raw units per year)


# ---- building blocks (pure functions over arrays) -------------------------------------------------------------------
def prediction_times(cohort: Cohort, patient_ids: Sequence[str], *, modality: str) -> np.ndarray:
    """Prediction times of ``patient_ids`` as int64 microseconds; InputError naming every patient lacking one."""
    if not patient_ids:
        return np.zeros(0, dtype=np.int64)
    where = cohort.manifest_path
    if PREDICTION_TIME not in cohort.patients.columns:
        raise InputError(
            f"cohort has {modality!r} (MEDS) data but no prediction_time column",
            file=where, patient=patient_ids[0], field=PREDICTION_TIME,
            hint="set patients.prediction_time in the manifest: EHR events are only used up to that time",
        )
    raw = cohort.patients.loc[list(patient_ids), PREDICTION_TIME]
    parsed = pd.to_datetime(raw, errors="coerce")
    if parsed.dt.tz is not None:  # aware -> UTC wall time (MEDS times are naive)
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    missing = parsed.index[parsed.isna().to_numpy()]
    if len(missing):
        file = None if where is None else str(where)
        msg = f"patient has {modality!r} (MEDS) data but no valid prediction_time"
        probs = [Problem(f"{msg} (got {raw[p]!r})", file=file, patient=str(p), field=PREDICTION_TIME,
                         hint="EHR events are only used up to the prediction time") for p in missing]
        raise InputError(problems=probs)
    return parsed.to_numpy(dtype="datetime64[us]").view(np.int64)


def fit_state(ev: CollectedEvents, train: np.ndarray, cfg: EHRAdapterConfig) -> EHRState:
    """Vocabulary and value statistics from the rows of training patients (``train`` is per patient row)."""
    rows = train[ev.pidx] if len(ev.pidx) else np.zeros(0, dtype=bool)
    train_events, train_patients = ev.code_counts(rows)
    counts = train_patients if cfg.min_count_unit == "subjects" else train_events
    keep = (counts >= cfg.min_count) & (train_events > 0)
    vocab = tuple(c for c, k in zip(ev.codes, keep, strict=True) if k)  # ev.codes is sorted
    size = len(vocab) + 2
    raw_to_vocab = np.full(len(ev.codes), UNK, dtype=np.int32)
    raw_to_vocab[keep] = np.arange(2, size, dtype=np.int32)
    voc = raw_to_vocab[ev.raw[rows]]
    val = ev.value[rows].astype(np.float64)
    ok = np.isfinite(val) & (voc >= 2)
    voc, val = voc[ok], val[ok]
    n_values = np.bincount(voc, minlength=size).astype(np.int64)
    total = np.bincount(voc, weights=val, minlength=size)
    mean = np.divide(total, n_values, out=np.zeros(size), where=n_values > 0)
    sq = np.bincount(voc, weights=(val - mean[voc]) ** 2, minlength=size)
    std = np.sqrt(np.divide(sq, n_values, out=np.zeros(size), where=n_values > 0))
    std[(n_values < 2) | ~(std > 1e-12)] = 1.0
    n_events = np.zeros(size, dtype=np.int64)
    n_patients = np.zeros(size, dtype=np.int64)
    n_events[2:] = train_events[keep]
    n_patients[2:] = train_patients[keep]
    state = EHRState(vocab, mean, std, n_values, n_events, n_patients, int(train.sum()))
    return _fit_trends(ev, train, state, cfg) if cfg.trends else state


def code_trends(pidx: np.ndarray, codes: np.ndarray, years: np.ndarray, z: np.ndarray, min_points: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares slope of ``z`` over ``years`` per (patient, code) group with >= ``min_points`` rows and a time
    spread; returns (patient, code, slope, last_time) sorted by patient then code. Inputs are the candidate rows."""
    if len(pidx) == 0:
        e = np.zeros(0)
        return e.astype(np.int64), e.astype(np.int32), e, e
    key = pidx.astype(np.int64) * (int(codes.max()) + 1) + codes
    uniq, inv = np.unique(key, return_inverse=True)
    n = np.bincount(inv).astype(np.float64)
    t_mean = np.bincount(inv, weights=years) / n
    z_mean = np.bincount(inv, weights=z) / n
    dt = years - t_mean[inv]
    sxx = np.bincount(inv, weights=dt * dt)
    sxy = np.bincount(inv, weights=dt * (z - z_mean[inv]))
    last = np.full(len(uniq), -np.inf)
    np.maximum.at(last, inv, years)
    ok = (n >= min_points) & (sxx > 1e-8 * np.maximum(n, 1))
    slope = np.divide(sxy, sxx, out=np.zeros_like(sxy), where=ok)
    width = int(codes.max()) + 1
    return (uniq[ok] // width).astype(np.int64), (uniq[ok] % width).astype(np.int32), slope[ok], last[ok]


def _trend_rows(ev: CollectedEvents, rows: np.ndarray, raw_to_vocab: np.ndarray, state: EHRState,
                cfg: EHRAdapterConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trend groups over the selected ``rows``: (patient, vocab code, slope in SD/year, last time in years)."""
    voc = raw_to_vocab[ev.raw[rows]]
    val = ev.value[rows].astype(np.float64)
    cand = ~ev.static[rows] & np.isfinite(val) & (voc >= 2) & (state.n_values[voc] > 0)
    z = (val[cand] - state.mean[voc[cand]]) / state.std[voc[cand]]
    years = ev.dt_us[rows][cand] / _US_PER["years"]
    return code_trends(ev.pidx[rows][cand], voc[cand], years, z, cfg.trend_min_points)


def _fit_trends(ev: CollectedEvents, train: np.ndarray, state: EHRState, cfg: EHRAdapterConfig) -> EHRState:
    """Add ``"CODE [trend]"`` entries (training patients' slopes give their counts, mean and std)."""
    keep, _ = _truncation_mask(ev, len(train), cfg)
    rows = np.flatnonzero(keep & train[ev.pidx]) if len(ev.pidx) else np.zeros(0, dtype=np.int64)
    index = {c: i + 2 for i, c in enumerate(state.vocab)}
    raw_to_vocab = np.array([index.get(c, UNK) for c in ev.codes], dtype=np.int32)
    _, code, slope, _ = _trend_rows(ev, rows, raw_to_vocab, state, cfg)
    size = state.size
    n_pat = np.bincount(code, minlength=size) if len(code) else np.zeros(size, dtype=np.int64)
    trend_of = tuple(int(c) for c in np.flatnonzero(n_pat >= cfg.min_count) if c >= 2)
    if not trend_of:
        return state
    t_mean = np.array([slope[code == c].mean() for c in trend_of])
    t_std = np.array([slope[code == c].std() for c in trend_of])
    t_std[~(t_std > 1e-12)] = 1.0
    k = np.array([n_pat[c] for c in trend_of], dtype=np.int64)
    return EHRState(
        vocab=state.vocab + tuple(f"{state.vocab[c - 2]} [trend]" for c in trend_of),
        mean=np.concatenate([state.mean, t_mean]), std=np.concatenate([state.std, t_std]),
        n_values=np.concatenate([state.n_values, k]), n_events=np.concatenate([state.n_events, k]),
        n_patients=np.concatenate([state.n_patients, k]), n_train_patients=state.n_train_patients, trend_of=trend_of,
    )


def _truncation_mask(ev: CollectedEvents, n_patients: int, cfg: EHRAdapterConfig) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask over rows, usable rows per patient). Rows are sorted by patient with static rows first."""
    n_usable = np.bincount(ev.pidx, minlength=n_patients).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(n_usable)])
    row = np.arange(len(ev.pidx), dtype=np.int64)
    first = starts[:-1][ev.pidx]
    last = starts[1:][ev.pidx]
    max_static = cfg.max_static if cfg.include_static else 0
    keep_static = ev.static & (row - first < max_static)
    keep_timed = ~ev.static & (last - 1 - row < cfg.max_events)
    return keep_static | keep_timed, n_usable


def build_tokens(ev: CollectedEvents, patient_ids: Sequence[str], state: EHRState, cfg: EHRAdapterConfig) -> EHRTokens:
    """Map codes to the vocabulary, standardize values, keep the most recent events; flat arrays + offsets."""
    index = {c: i + 2 for i, c in enumerate(state.vocab[: state.n_codes])}
    raw_to_vocab = np.array([index.get(c, UNK) for c in ev.codes], dtype=np.int32)
    keep, n_usable = _truncation_mask(ev, len(patient_ids), cfg)
    pidx = ev.pidx[keep]
    raw = ev.raw[keep]
    codes = raw_to_vocab[raw] if len(raw) else np.zeros(0, dtype=np.int32)
    raw_values = ev.value[keep]
    value_mask = np.isfinite(raw_values) & (state.n_values[codes] > 0)
    z = (raw_values.astype(np.float64) - state.mean[codes]) / state.std[codes]
    values = np.where(value_mask, np.clip(z, -cfg.value_clip, cfg.value_clip), 0.0).astype(np.float32)
    static = ev.static[keep]
    times = np.where(static, 0.0, ev.dt_us[keep] / _US_PER[cfg.time_scale]).astype(np.float32)
    trend = np.zeros(len(pidx), dtype=bool)
    if state.trend_of and len(pidx):
        # derived "[trend]" rows, appended after each patient's events (stable sort by patient below)
        slot = {c: state.n_codes + 2 + j for j, c in enumerate(state.trend_of)}
        tp, tc, slope, last = _trend_rows(ev, np.flatnonzero(keep), raw_to_vocab, state, cfg)
        has = np.array([int(c) in slot for c in tc], dtype=bool)
        tp, tc, slope, last = tp[has], tc[has], slope[has], last[has]
        t_codes = np.array([slot[int(c)] for c in tc], dtype=np.int32)
        vocab_to_raw = {int(v): r for r, v in enumerate(raw_to_vocab) if v >= 2}
        t_raw = np.array([vocab_to_raw[int(c)] for c in tc], dtype=raw.dtype)
        t_z = (slope - state.mean[t_codes]) / state.std[t_codes]
        pidx = np.concatenate([pidx, tp.astype(pidx.dtype)])
        raw = np.concatenate([raw, t_raw])
        codes = np.concatenate([codes, t_codes])
        raw_values = np.concatenate([raw_values, (slope * state.std[tc]).astype(raw_values.dtype)])
        value_mask = np.concatenate([value_mask, np.ones(len(tp), dtype=bool)])
        values = np.concatenate([values, np.clip(t_z, -cfg.value_clip, cfg.value_clip).astype(np.float32)])
        static = np.concatenate([static, np.zeros(len(tp), dtype=bool)])
        times = np.concatenate([times, (last * _US_PER["years"] / _US_PER[cfg.time_scale]).astype(np.float32)])
        trend = np.concatenate([trend, np.ones(len(tp), dtype=bool)])
        order = np.argsort(pidx, kind="stable")
        pidx, raw, codes, raw_values, value_mask, values, static, times, trend = (
            a[order] for a in (pidx, raw, codes, raw_values, value_mask, values, static, times, trend))
    offsets = np.concatenate([[0], np.cumsum(np.bincount(pidx, minlength=len(patient_ids)))]).astype(np.int64)
    return EHRTokens(
        patient_index={p: i for i, p in enumerate(patient_ids)}, offsets=offsets, n_usable=n_usable, codes=codes,
        raw=raw, code_names=ev.codes, unk=codes == UNK, static=static, times=times, raw_values=raw_values,
        values=values, value_mask=value_mask, trend=trend,
    )


def token_names(tok: EHRTokens, lo: int, hi: int, suffix: str) -> tuple[str, ...]:
    """``"CODE = 102.6 @ -3.2d"`` per token of rows ``lo:hi`` (raw value; ``[UNK]`` marks out-of-vocabulary codes;
    ``"CODE [trend] = +12.5/y @ -3.2d"`` for a trend token, at the code's last measurement)."""
    names = tok.code_names
    out = []
    for r, u, s, v, t, tr in zip(
        tok.raw[lo:hi].tolist(), tok.unk[lo:hi].tolist(), tok.static[lo:hi].tolist(),
        tok.raw_values[lo:hi].tolist(), tok.times[lo:hi].tolist(), tok.trend[lo:hi].tolist(), strict=True,
    ):
        label = f"{names[r]} [UNK]" if u else names[r]
        if tr:
            label = f"{label} [trend] = {v:+.4g}/y"
        elif v == v and abs(v) != float("inf"):  # finite
            label = f"{label} = {v:.6g}"
        out.append(f"{label} @ static" if s else f"{label} @ {t:.1f}{suffix}")
    return tuple(out)


# ---- the adapter ----------------------------------------------------------------------------------------------------
@register_adapter("ehr")
class EHRAdapter(Adapter):
    """MEDS 0.4 directory -> ``events`` tokens (see the module docstring for every rule)."""

    registry_name = "ehr"
    config_cls = EHRAdapterConfig
    config: EHRAdapterConfig

    def __init__(self, config: EHRAdapterConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.state: EHRState | None = None
        self.tokens: EHRTokens | None = None

    # ---- binding and fitting ---------------------------------------------------------------------------------------
    def _source(self, cohort: Cohort) -> MedsSource:
        src = cohort.modalities.get(self.modality)
        if not isinstance(src, MedsSource):
            raise InputError(
                f"modality {self.modality!r} is {type(src).__name__}, the 'ehr' adapter reads a MEDS directory",
                file=cohort.manifest_path, field=f"modalities.{self.modality}.type",
                hint="use the 'clinical' adapter for a wide clinical table",
            )
        return src

    def _collect(self, cohort: Cohort, train_ids: set[str]) -> tuple[list[str], CollectedEvents, np.ndarray]:
        src = self._source(cohort)
        pids = [p for p in cohort.patients.index if p in src.subject_ids]
        pt = prediction_times(cohort, pids, modality=self.modality)
        train = np.array([p in train_ids for p in pids], dtype=bool)
        subjects = pl.DataFrame(
            {
                "subject_id": pl.Series([src.subject_ids[p] for p in pids], dtype=pl.Int64),
                "pidx": pl.Series(np.arange(len(pids), dtype=np.int32)),
                "pt": pl.Series(pt, dtype=pl.Int64).cast(pl.Datetime("us")),
            }
        )
        meds = scan_meds(src.root)  # validates every shard's footer first
        ev = collect_events(meds, subjects, code_prefix_depth=self.config.code_prefix_depth, root=src.root)
        return pids, ev, train

    def bind(self, cohort: Cohort) -> EHRAdapter:
        """Point at ``cohort`` and, when fitted, tokenize all its EHR patients at once (state unchanged)."""
        super().bind(cohort)
        if self.state is not None:
            pids, ev, _ = self._collect(cohort, set())
            self.tokens = build_tokens(ev, pids, self.state, self.config)
        return self

    def fit(self, cohort: Cohort, patient_ids: Sequence[str]) -> EHRAdapter:
        """Fit vocabulary and value statistics on ``patient_ids`` (their events up to their prediction times)."""
        super().bind(cohort)
        unknown = [p for p in patient_ids if p not in cohort.patients.index]
        if unknown:
            raise InputError(f"{len(unknown)} training patient(s) not in the cohort, e.g. {unknown[:3]}",
                             patient=unknown[0], field="patient_ids")
        pids, ev, train = self._collect(cohort, set(map(str, patient_ids)))
        self.state = fit_state(ev, train, self.config)
        self.tokens = build_tokens(ev, pids, self.state, self.config)
        self.fitted = True
        return self

    # ---- outputs ----------------------------------------------------------------------------------------------------
    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Index -> code, with ``<PAD>`` and ``<UNK>`` at 0 and 1."""
        return ("<PAD>", "<UNK>", *self._require_state().vocab)

    def _require_state(self) -> EHRState:
        if self.state is None:
            msg = f"EHRAdapter for {self.modality!r} is not fitted; call fit(cohort, train_ids) first"
            raise RuntimeError(msg)
        return self.state

    def _require_tokens(self) -> EHRTokens:
        self._require_fitted()
        assert self.tokens is not None
        return self.tokens

    def transform(self, patient_id: str, *, train: bool = False, seed: int | None = None) -> TokenStream:
        """This patient's tokens (batch size 1); deterministic, ``train``/``seed`` do not subsample EHR."""
        tok = self._require_tokens()
        p = tok.patient_index.get(str(patient_id))
        if p is None:
            return empty_stream(self.modality, events=True)
        lo, hi = int(tok.offsets[p]), int(tok.offsets[p + 1])
        n = hi - lo
        return TokenStream(
            modality=self.modality,
            mask=torch.ones(1, n, dtype=torch.bool),
            codes=torch.from_numpy(tok.codes[lo:hi].astype(np.int64)).view(1, n),
            values=torch.from_numpy(tok.values[lo:hi].copy()).view(1, n),
            value_mask=torch.from_numpy(tok.value_mask[lo:hi].copy()).view(1, n),
            times=torch.from_numpy(tok.times[lo:hi].copy()).view(1, n),
            names=(token_names(tok, lo, hi, _SUFFIX[self.config.time_scale]),),
            meta={"n_usable_events": int(tok.n_usable[p]), "n_dropped": int(tok.n_usable[p]) - n},
        )

    def transform_batch(self, patient_ids: Sequence[str], *, names: bool = False) -> TokenStream:
        """Several patients at once, padded to the longest (the bulk equivalent of transform + collate_streams).

        Tensors equal ``collate_streams([transform(p) for p in patient_ids])``; names only when ``names=True``.
        """
        tok = self._require_tokens()
        rows = np.array([tok.patient_index.get(str(p), -1) for p in patient_ids], dtype=np.int64)
        known = rows >= 0
        lo = np.where(known, tok.offsets[np.maximum(rows, 0)], 0)
        length = np.where(known, tok.offsets[np.maximum(rows, 0) + 1] - lo, 0)
        n = max(int(length.max(initial=0)), 1)
        col = np.arange(n, dtype=np.int64)
        mask = col[None, :] < length[:, None]
        idx = np.where(mask, lo[:, None] + col[None, :], 0)

        def take(a: np.ndarray, dtype: Any) -> torch.Tensor:
            if len(a) == 0:
                return torch.from_numpy(np.zeros(mask.shape, dtype=dtype))
            return torch.from_numpy(np.where(mask, a[idx], 0).astype(dtype))

        name_rows = None
        if names:
            suffix = _SUFFIX[self.config.time_scale]
            name_rows = tuple(
                token_names(tok, int(a), int(a + k), suffix) + ("",) * (n - int(k))
                for a, k in zip(lo, length, strict=True)
            )
        return TokenStream(
            modality=self.modality, mask=torch.from_numpy(mask), codes=take(tok.codes, np.int64),
            values=take(tok.values, np.float32), value_mask=take(tok.value_mask, bool),
            times=take(tok.times, np.float32), names=name_rows,
        )

    def stream_spec(self) -> StreamSpec:
        state = self._require_state()
        max_static = self.config.max_static if self.config.include_static else 0
        return StreamSpec(modality=self.modality, kind="events", vocab_size=state.size,
                          max_tokens=self.config.max_events + max_static + len(state.trend_of))

    # ---- state -------------------------------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        s = self._require_state()
        return {
            "value_mean": torch.from_numpy(s.mean.copy()), "value_std": torch.from_numpy(s.std.copy()),
            "value_count": torch.from_numpy(s.n_values.copy()), "code_events": torch.from_numpy(s.n_events.copy()),
            "code_patients": torch.from_numpy(s.n_patients.copy()),
        }

    def state_json(self) -> dict[str, Any]:
        s = self._require_state()
        return {"version": _STATE_VERSION, "vocab": list(s.vocab), "n_train_patients": s.n_train_patients,
                "special_tokens": {"<PAD>": PAD, "<UNK>": UNK}, "trend_of": list(s.trend_of)}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        vocab = tuple(meta.get("vocab", ()))
        arrays = {k: tensors[k].numpy() for k in ("value_mean", "value_std", "value_count", "code_events",
                                                   "code_patients") if k in tensors}
        bad = [k for k in ("value_mean", "value_std", "value_count", "code_events", "code_patients")
               if k not in arrays or arrays[k].shape != (len(vocab) + 2,)]
        if meta.get("version") != _STATE_VERSION or bad:
            msg = f"EHR adapter state is inconsistent (version {meta.get('version')!r}, bad tensors {bad})"
            raise IntegrityError(msg)
        self.state = EHRState(
            vocab, arrays["value_mean"].astype(np.float64), arrays["value_std"].astype(np.float64),
            arrays["value_count"].astype(np.int64), arrays["code_events"].astype(np.int64),
            arrays["code_patients"].astype(np.int64), int(meta.get("n_train_patients", 0)),
            tuple(int(i) for i in meta.get("trend_of", ())),
        )
        self.tokens = None
        self.fitted = True
