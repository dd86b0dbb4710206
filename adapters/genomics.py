"""Genomics adapter: expression, mutations and CNV → one token per pathway, gene family or gene (DESIGN §5).

Features are (gene, datatype) pairs, datatype ∈ {"rna", "mut", "cnv"}. Fitting on the training patients only:

1. **Universe.** A feature is *observed* when a training patient has a value for it (``mut``: when a training patient
   carries a non-silent mutation in the gene); it is *kept* when, moreover, it varies in training (``rna``/``cnv``:
   train std >= ``std_floor``). Features seen only in held-out patients never enter the state.
2. **Standardization.** ``rna``: values clipped to the train ``[winsorize, 1 - winsorize]`` quantiles (TCGA z-scores
   have outliers in the thousands), then ``(x - mean) / std`` with train mean/std (ddof 0); ``cnv``: the same without
   winsorizing; ``mut``: kept 0/1 (``mutation_encoding="binary"``: 0 = wild type = padding) or centered on the train
   mutation frequency (``"centered"``). Standardized values are clipped to ``±clip``. A missing value of a patient
   who has genomics becomes 0 (the train mean) and is counted in :meth:`GenomicsAdapter.report`.
3. **Tokens.** ``pathways`` / ``families``: one token per gene set (GMT or signature CSV); its members are the kept
   features of its genes (set order, then ``datatypes`` order), capped at ``max_members`` by gene rank, zero-padded
   to F = the largest member count; sets with fewer than ``min_genes_per_set`` genes present are dropped (reported).
   ``genes``: the ``top_k`` genes by rank, one token each, F = number of datatypes (a gene's absent datatype is a zero
   pad). **Gene rank** = train variance of the gene's first kept datatype in ``datatypes`` order (so expression
   variance when ``rna`` is used), ties by name.

The (patients × features) standardized matrix is computed once per bound cohort; :meth:`GenomicsAdapter.transform`
is one row index and one gather.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from multimodal.adapters.base import Adapter, StreamSpec, empty_stream
from multimodal.adapters.genesets import GeneSet, read_gene_sets, resolve_gene_set_path
from multimodal.adapters.omics_io import DATATYPES, load_omics_tables
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import OmicsSource
from multimodal.errors import ConfigError, InputError
from multimodal.io import sha256_file
from multimodal.registry import register_adapter
from multimodal.types import TokenStream

Datatype = Literal["rna", "mut", "cnv"]
log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclass(frozen=True)
class GenomicsAdapterConfig:
    """Configuration of :class:`GenomicsAdapter`.

    Attributes:
        modality: the cohort modality to read (an :class:`OmicsSource`).
        tokens: ``"pathways"`` / ``"families"`` (one token per gene set of ``gene_sets``) or ``"genes"`` (top-k genes).
        gene_sets: a ``.gmt`` file or a signature ``.csv`` (columns = set names, cells = gene symbols), relative to
            the cohort folder. Required for pathways/families; with ``genes`` it restricts the candidates to its genes.
        datatypes: which of ``rna``, ``mut``, ``cnv`` to use (those the source lacks are skipped and reported).
        top_k: number of gene tokens (``tokens="genes"``).
        min_genes_per_set: a set with fewer genes present in the cohort is dropped (and reported).
        max_members: cap on member features per set token (0 = no cap); the lowest-ranked genes go first.
        clip: standardized values are clipped to ``±clip`` (None = no clipping).
        winsorize: quantile q; ``rna`` values are clipped to the train [q, 1-q] quantiles before standardizing (0 = off).
        std_floor: ``rna``/``cnv`` features whose train std is below this are constant and left out.
        mutation_encoding: ``"binary"`` (0/1) or ``"centered"`` (0/1 minus the train mutation frequency).
        set_score: set tokens (pathways / families) carry one more member value, the set's expression score: the sum
            of its standardized ``rna`` members divided by the square root of their number (the z-score method of
            Lee et al. 2008), named ``set score:rna``. It hands the model each set's activity directly instead of
            leaving it to learn the direction from a few hundred patients. Needs ``rna`` and set tokens.
    """

    modality: str = "genomics"
    tokens: Literal["pathways", "families", "genes"] = "genes"
    gene_sets: str | None = None
    datatypes: tuple[Datatype, ...] = ("rna", "mut", "cnv")
    top_k: int = 200
    min_genes_per_set: int = 1
    max_members: int = 0
    clip: float | None = 5.0
    winsorize: float = 0.01
    std_floor: float = 1e-3
    mutation_encoding: Literal["binary", "centered"] = "binary"
    set_score: bool = False

    def __post_init__(self) -> None:
        if self.tokens in ("pathways", "families") and not self.gene_sets:
            msg = f"tokens={self.tokens!r} needs a gene-set file, got gene_sets=None"
            raise ConfigError(msg, field="gene_sets", hint="a .gmt file or a signature .csv (columns = set names)")
        if not self.datatypes or len(set(self.datatypes)) != len(self.datatypes):
            msg_0 = f"expected distinct datatypes from {list(DATATYPES)}, got {list(self.datatypes)}"
            raise ConfigError(msg_0,
                              field="datatypes")
        checks = (
            ("top_k", self.top_k >= 1, ">= 1"),
            ("min_genes_per_set", self.min_genes_per_set >= 1, ">= 1"),
            ("max_members", self.max_members >= 0, ">= 0 (0 = no cap)"),
            ("clip", self.clip is None or self.clip > 0, "> 0 or null"),
            ("winsorize", 0.0 <= self.winsorize < 0.5, "in [0, 0.5)"),
            ("std_floor", self.std_floor > 0, "> 0"),
        )
        if self.set_score and (self.tokens == "genes" or "rna" not in self.datatypes):
            msg = f"set_score needs set tokens and rna, got tokens={self.tokens!r}, datatypes={list(self.datatypes)}"
            raise ConfigError(msg, field="set_score", hint="use tokens: pathways or families with rna, or drop set_score")
        for name, ok, expected in checks:
            if not ok:
                msg_0 = f"expected {expected}, got {getattr(self, name)!r}"
                raise ConfigError(msg_0, field=name)


@dataclass
class _Stats:
    """Fitted per-feature state, aligned with ``features``."""

    features: list[tuple[str, str]] = field(default_factory=list)
    lo: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0))


#: Member name of a set token's expression score (``set_score``); ends in ``:rna`` like the values it sums.
SET_SCORE = "set score:rna"


def _label(feature: tuple[str, str]) -> str:
    return f"{feature[0]}:{feature[1]}"


def standardize(values: np.ndarray, dt: str, lo: np.ndarray, hi: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                clip: float | None) -> np.ndarray:
    """(n, f) raw values of one datatype → standardized float64 with NaN kept (the caller zero-fills)."""
    x = np.asarray(values, dtype=np.float64)
    if dt == "mut":
        x = np.where(np.isnan(x), np.nan, (x > 0).astype(np.float64))
    z = (np.clip(x, lo, hi) - mean) * scale
    if clip is not None:
        z = np.clip(z, -clip, clip)
    return z


def _fit_datatype(train: pd.DataFrame, dt: str, cfg: GenomicsAdapterConfig) -> dict[str, np.ndarray]:
    """Per-gene train statistics of one datatype: observed/kept masks, bounds, mean, scale, rank variance."""
    x = train.to_numpy(np.float64)
    n_obs = (~np.isnan(x)).sum(axis=0)
    g = x.shape[1]
    lo, hi = np.full(g, -np.inf), np.full(g, np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        if dt == "mut":
            xb = np.where(np.isnan(x), np.nan, (x > 0).astype(np.float64))
            freq = np.nan_to_num(np.nanmean(xb, axis=0)) if len(x) else np.zeros(g)
            observed = freq > 0
            kept = observed.copy()
            mean = freq if cfg.mutation_encoding == "centered" else np.zeros(g)
            scale, var = np.ones(g), freq * (1 - freq)
        else:
            if dt == "rna" and cfg.winsorize > 0 and len(x):
                lo, hi = np.nanquantile(x, [cfg.winsorize, 1 - cfg.winsorize], axis=0)
                lo, hi = np.nan_to_num(lo, nan=-np.inf), np.nan_to_num(hi, nan=np.inf)
            xc = np.clip(x, lo, hi)
            mean = np.nanmean(xc, axis=0) if len(x) else np.full(g, np.nan)
            std = np.nanstd(xc, axis=0) if len(x) else np.full(g, np.nan)
            observed = n_obs > 0
            kept = observed & (np.nan_to_num(std) >= cfg.std_floor)
            scale = np.where(kept, 1.0 / np.where(kept, std, 1.0), 0.0)
            mean, var = np.nan_to_num(mean), np.nan_to_num(std) ** 2
    return {"observed": observed, "kept": kept, "lo": lo, "hi": hi, "mean": mean, "scale": scale, "var": var}


@register_adapter("genomics")
class GenomicsAdapter(Adapter):
    """Expression / mutation / CNV tables → a ``slots`` stream of pathway, gene-family or gene tokens."""

    registry_name: ClassVar[str] = "genomics"
    config_cls: ClassVar[type] = GenomicsAdapterConfig
    config: GenomicsAdapterConfig

    def __init__(self, config: GenomicsAdapterConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self._stats = _Stats()
        self._gather = np.zeros((0, 0), dtype=np.int64)  # (P, F), -1 = zero pad
        self._token_names: tuple[str, ...] = ()
        self._members: tuple[tuple[str, ...], ...] = ()
        self._datatypes: tuple[str, ...] = ()
        self._report: dict[str, Any] = {}
        self._bound_report: dict[str, Any] = {}
        self._tables_for: tuple[OmicsSource, Path | None] | None = None
        self._tables: dict[str, pd.DataFrame] = {}
        self._origin: dict[str, str] = {}
        self._cache_for: Cohort | None = None
        self._mat = torch.zeros(0, 1)
        self._rows: dict[str, int] = {}
        self._gather_flat = torch.zeros(0, dtype=torch.long)
        self._score_weight: torch.Tensor | None = None

    # ---- reading --------------------------------------------------------------------------------------------------
    def _source(self, cohort: Cohort) -> OmicsSource:
        src = cohort.modalities.get(self.modality)
        if not isinstance(src, OmicsSource):
            msg = f"modality {self.modality!r} of cohort {cohort.name!r} is not an omics source ({type(src).__name__})"
            raise InputError(msg, field=f"modalities.{self.modality}")
        return src

    def _load_tables(self, cohort: Cohort) -> dict[str, pd.DataFrame]:
        src = self._source(cohort)
        key = (src, cohort.root)
        if self._tables_for is None or self._tables_for[0] is not src or self._tables_for[1] != cohort.root:
            self._tables, self._origin = load_omics_tables(src, self.config.datatypes, cohort.root)
            self._tables_for = key
        return self._tables

    # ---- fitting --------------------------------------------------------------------------------------------------
    def fit(self, cohort: Cohort, patient_ids: Sequence[str]) -> GenomicsAdapter:
        """Learn the gene universe, standardization and token layout from ``patient_ids`` only; bind ``cohort``."""
        cfg = self.config
        super().bind(cohort)
        ids = list(dict.fromkeys(str(p) for p in patient_ids))
        unknown = [p for p in ids if p not in cohort.patients.index]
        if unknown:
            msg = f"{len(unknown)} training id(s) are not patients of cohort {cohort.name!r}, e.g. {unknown[:3]}"
            raise InputError(msg, patient=unknown[0], field="patient_ids")
        tables = self._load_tables(cohort)
        dts = tuple(d for d in cfg.datatypes if d in tables)
        if not dts:
            msg = f"the {self.modality!r} source provides none of the datatypes {list(cfg.datatypes)}"
            raise InputError(msg, field="datatypes", hint="add expression / mutations / cnv inputs or change datatypes")
        idset = set(ids)
        train = {d: tables[d].loc[tables[d].index.isin(idset)] for d in dts}  # table order: independent of id order
        n_train = len(set().union(*(set(t.index) for t in train.values())))
        if n_train == 0:
            msg = f"none of the {len(ids)} training patients has {self.modality} data"
            raise InputError(msg, field=f"modalities.{self.modality}", hint="check the patient ids of the omics inputs")
        per_dt = {d: _fit_datatype(train[d], d, cfg) for d in dts}
        genes_of = {d: list(tables[d].columns) for d in dts}
        kept = {(g, d): i for d in dts for i, g in enumerate(genes_of[d]) if per_dt[d]["kept"][i]}
        observed = {g for d in dts for i, g in enumerate(genes_of[d]) if per_dt[d]["observed"][i]}
        rank = self._gene_rank(dts, genes_of, per_dt)
        report: dict[str, Any] = {
            "tokens": cfg.tokens, "datatypes_used": list(dts),
            "datatypes_unavailable": [d for d in cfg.datatypes if d not in dts],
            "sources": {d: self._origin.get(d) for d in dts},
            "train_patients": n_train, "train_patients_per_datatype": {d: len(train[d]) for d in dts},
            "genes_constant_total": len({g for g in observed if not any((g, d) in kept for d in dts)}),
        }
        if cfg.tokens == "genes":
            tokens = self._plan_genes(dts, kept, observed, rank, report, cohort)
        else:
            tokens = self._plan_sets(dts, kept, observed, rank, report, cohort)
        self._install(tokens, dts, kept, per_dt)
        # missing values among training patients (counted on train only so that the state stays train-determined)
        present = self._present(tables, dts)
        report["train_missing_values"] = self._count_missing(tables, dts, [p for p in ids if p in present])
        report["features_per_datatype"] = {d: sum(1 for f in self._stats.features if f[1] == d) for d in dts}
        report["n_tokens"], report["feature_dim"] = len(self._token_names), self._feature_dim()
        self._report = report
        self.fitted = True
        self._cache_for = None
        self._build_cache(cohort)
        return self

    @staticmethod
    def _gene_rank(dts: tuple[str, ...], genes_of: dict[str, list[str]],
                   per_dt: dict[str, dict[str, np.ndarray]]) -> dict[str, int]:
        """Rank of every gene with a kept feature: first kept datatype in ``dts`` order, then train variance, name."""
        key: dict[str, tuple[int, float, str]] = {}
        for j, d in enumerate(dts):
            for i, g in enumerate(genes_of[d]):
                if per_dt[d]["kept"][i] and g not in key:
                    key[g] = (j, -float(per_dt[d]["var"][i]), g)
        return {g: r for r, g in enumerate(sorted(key, key=key.__getitem__))}

    def _read_sets(self, cohort: Cohort) -> list[GeneSet]:
        assert self.config.gene_sets is not None
        return read_gene_sets(resolve_gene_set_path(self.config.gene_sets, cohort.root))

    def _plan_genes(self, dts: tuple[str, ...], kept: dict[tuple[str, str], int], observed: set[str],
                    rank: dict[str, int], report: dict[str, Any], cohort: Cohort,
                    ) -> list[tuple[str, list[tuple[str, str] | None]]]:
        candidates = list(rank)
        if self.config.gene_sets:
            sets = self._read_sets(cohort)
            wanted = {g for s in sets for g in s.genes}
            candidates = [g for g in candidates if g in wanted]
            report["genes_requested_total"] = len(wanted)
            report["genes_missing_total"] = len(wanted - observed)
        if not candidates:
            msg = "no gene varies among the training patients"
            raise InputError(msg, field="datatypes")
        top = sorted(candidates, key=rank.__getitem__)[: self.config.top_k]
        report.update(n_sets=0, n_sets_dropped=0, genes_candidates=len(candidates))
        return [(g, [(g, d) if (g, d) in kept else None for d in dts]) for g in top]

    def _plan_sets(self, dts: tuple[str, ...], kept: dict[tuple[str, str], int], observed: set[str],
                   rank: dict[str, int], report: dict[str, Any], cohort: Cohort,
                   ) -> list[tuple[str, list[tuple[str, str] | None]]]:
        cfg = self.config
        sets = self._read_sets(cohort)
        tokens: list[tuple[str, list[tuple[str, str] | None]]] = []
        requested: dict[str, int] = {}
        missing: dict[str, list[str]] = {}
        dropped: dict[str, int] = {}
        truncated: dict[str, int] = {}
        for s in sets:
            requested[s.name] = len(s.genes)
            missing[s.name] = [g for g in s.genes if g not in observed]
            present = [g for g in s.genes if g in rank]
            if len(present) < cfg.min_genes_per_set:
                dropped[s.name] = len(present)
                continue
            members = [(g, d) for g in present for d in dts if (g, d) in kept]
            if cfg.max_members and len(members) > cfg.max_members:
                order = sorted(range(len(members)), key=lambda i: (rank[members[i][0]], i))
                keep = sorted(order[: cfg.max_members])
                truncated[s.name] = len(members) - len(keep)
                members = [members[i] for i in keep]
            tokens.append((s.name, list(members)))
        all_requested = {g for s in sets for g in s.genes}
        path = resolve_gene_set_path(cfg.gene_sets or "", cohort.root)
        report.update(
            gene_sets=cfg.gene_sets, gene_sets_sha256=sha256_file(path),
            n_sets=len(sets), n_sets_kept=len(tokens), n_sets_dropped=len(dropped), sets_dropped=dropped,
            genes_requested=requested, genes_requested_total=len(all_requested),
            genes_missing={k: v for k, v in missing.items()},
            genes_missing_count={k: len(v) for k, v in missing.items()},
            genes_missing_total=len(all_requested - observed),
            memberships_requested=sum(requested.values()),
            memberships_missing=sum(len(v) for v in missing.values()),
            members_truncated=truncated,
        )
        if not tokens:
            msg = (f"no gene set keeps >= {cfg.min_genes_per_set} gene(s) present in the training data "
                   f"({len(sets)} sets read)")
            raise InputError(msg, file=path, field="gene_sets",
                             hint="do the set's gene symbols match the cohort's (e.g. HGNC symbols)?")
        return tokens

    def _install(self, tokens: list[tuple[str, list[tuple[str, str] | None]]], dts: tuple[str, ...],
                 kept: dict[tuple[str, str], int], per_dt: dict[str, dict[str, np.ndarray]]) -> None:
        """Turn the token plan into the feature list, per-feature statistics and the (P, F) gather index."""
        features: dict[tuple[str, str], int] = {}
        for _, members in tokens:
            for f in members:
                if f is not None and f not in features:
                    features[f] = len(features)
        width = max(len(m) for _, m in tokens)
        gather = np.full((len(tokens), width), -1, dtype=np.int64)
        for p, (_, members) in enumerate(tokens):
            for j, f in enumerate(members):
                if f is not None:
                    gather[p, j] = features[f]
        flist = list(features)
        idx = [kept[f] for f in flist]

        def col(name: str) -> np.ndarray:
            return np.array([per_dt[f[1]][name][i] for f, i in zip(flist, idx, strict=True)], dtype=np.float64)

        self._stats = _Stats(flist, col("lo"), col("hi"), col("mean"), col("scale"))
        self._set_layout(gather, tuple(n for n, _ in tokens), dts)

    def _set_layout(self, gather: np.ndarray, names: tuple[str, ...], dts: tuple[str, ...]) -> None:
        labels = [_label(f) for f in self._stats.features]
        self._gather = gather
        self._token_names = names
        self._datatypes = dts
        self._members = tuple(tuple(labels[i] if i >= 0 else "" for i in row) for row in gather.tolist())
        if self.config.set_score:
            rna = torch.tensor([[lab.endswith(":rna") for lab in row] for row in self._members], dtype=torch.float32)
            self._score_weight = rna / rna.sum(-1, keepdim=True).clamp(min=1.0).sqrt()  # (P, F)
            self._members = tuple((*row, SET_SCORE) for row in self._members)
        pad = len(labels)  # index of the all-zero column of the cached matrix
        self._gather_flat = torch.from_numpy(np.where(gather >= 0, gather, pad).reshape(-1).copy())

    # ---- cache ----------------------------------------------------------------------------------------------------
    @staticmethod
    def _present(tables: dict[str, pd.DataFrame], dts: Sequence[str]) -> set[str]:
        return set().union(*(set(tables[d].index) for d in dts if d in tables))

    def _dt_block(self, tables: dict[str, pd.DataFrame], dt: str, patients: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Raw (patients × features of ``dt``) values, NaN where absent, and the feature columns they fill."""
        cols = np.array([i for i, f in enumerate(self._stats.features) if f[1] == dt], dtype=np.int64)
        genes = [self._stats.features[i][0] for i in cols]
        t = tables.get(dt)
        if t is None:
            return np.full((len(patients), len(cols)), np.nan), cols
        return t.reindex(index=patients, columns=genes).to_numpy(np.float64), cols

    def _count_missing(self, tables: dict[str, pd.DataFrame], dts: Sequence[str], patients: list[str]) -> dict[str, int]:
        return {d: int(np.isnan(self._dt_block(tables, d, patients)[0]).sum()) for d in dts}

    def _build_cache(self, cohort: Cohort) -> None:
        """Standardize every bound patient's features once: a (patients, features + 1) float32 matrix."""
        tables = self._load_tables(cohort)
        present = self._present(tables, self._datatypes)
        patients = [p for p in cohort.patients.index if p in present]
        s = self._stats
        mat = np.zeros((len(patients), len(s.features) + 1), dtype=np.float32)
        missing: dict[str, int] = {}
        for d in self._datatypes:
            raw, cols = self._dt_block(tables, d, patients)
            z = standardize(raw, d, s.lo[cols], s.hi[cols], s.mean[cols], s.scale[cols], self.config.clip)
            missing[d] = int(np.isnan(z).sum())
            mat[:, cols] = np.nan_to_num(z, nan=0.0)
        absent = [_label(f) for f in s.features if f[1] not in tables or f[0] not in tables[f[1]].columns]
        if absent and patients:
            src = self._source(cohort)
            where = {"rna": src.expression, "mut": src.mutations, "cnv": src.cnv}
            files = sorted({str(where.get(f[1]) or self._origin.get(f[1])) for f in s.features
                            if f[1] not in tables or f[0] not in tables[f[1]].columns})
            log.warning("genomics: %d of the %d features the adapter was fitted on are absent from cohort %r "
                        "(file %s; e.g. %s): every patient gets the training mean for them. Check that the cohort "
                        "uses the training gene identifiers.", len(absent), len(s.features), cohort.name,
                        ", ".join(files), ", ".join(absent[:5]))
        self._mat = torch.from_numpy(mat)
        self._rows = {p: i for i, p in enumerate(patients)}
        self._cache_for = cohort
        self._bound_report = {
            "cohort": cohort.name, "patients": len(cohort), "patients_with_genomics": len(patients),
            "missing_values": missing, "features_absent": len(absent), "features_absent_examples": absent[:10],
        }
        # the matrix holds all that transform needs: release the raw tables (a 20k-gene expression matrix is large)
        self._tables, self._origin, self._tables_for = {}, {}, None

    def bind(self, cohort: Cohort) -> GenomicsAdapter:
        """Point the fitted adapter at ``cohort`` and precompute its standardized matrix."""
        super().bind(cohort)
        if self.fitted and self._cache_for is not cohort:
            self._build_cache(cohort)
        return self

    # ---- the contract ---------------------------------------------------------------------------------------------
    def transform(self, patient_id: str, *, train: bool = False, seed: int | None = None) -> TokenStream:
        """(1, P, F) tokens; zero tokens when the patient has no genomics. ``train``/``seed`` are unused."""
        cohort = self._require_fitted()
        if self._cache_for is not cohort:
            self._build_cache(cohort)
        row = self._rows.get(str(patient_id))
        p, f = self._gather.shape
        if row is None:
            return empty_stream(self.modality, feature_dim=self._feature_dim())
        feats = self._mat[row].index_select(0, self._gather_flat).view(1, p, f)
        if self._score_weight is not None:
            feats = torch.cat([feats, (feats * self._score_weight).sum(-1, keepdim=True)], dim=-1)
        return TokenStream(modality=self.modality, mask=torch.ones(1, p, dtype=torch.bool), features=feats,
                           names=(self._token_names,), meta={"members": self._members})

    def num_tokens_hint(self, patient_id: str) -> int:
        """P for a patient with genomics, else 0 (cheap; for bucketing)."""
        if self._cache_for is not self.cohort and self.cohort is not None:
            self._build_cache(self.cohort)
        return int(self._gather.shape[0]) if str(patient_id) in self._rows else 0

    def _feature_dim(self) -> int:
        return int(self._gather.shape[1]) + (self._score_weight is not None)

    def stream_spec(self) -> StreamSpec:
        p = self._gather.shape[0]
        return StreamSpec(modality=self.modality, kind="slots", feature_dim=self._feature_dim(), num_slots=int(p),
                          max_tokens=int(p), slot_names=self._token_names)

    def report(self) -> dict[str, Any]:
        """What fitting found (train-derived; saved in the state) plus ``bound``: counts for the bound cohort."""
        return {**self._report, "bound": dict(self._bound_report)}

    # ---- state ----------------------------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        s = self._stats
        return {
            "lo": torch.from_numpy(s.lo.copy()), "hi": torch.from_numpy(s.hi.copy()),
            "mean": torch.from_numpy(s.mean.copy()), "scale": torch.from_numpy(s.scale.copy()),
            "gather": torch.from_numpy(self._gather.copy()),
        }

    def state_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "features": [list(f) for f in self._stats.features],
            "token_names": list(self._token_names),
            "datatypes": list(self._datatypes),
            "report": self._report,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        if meta.get("version") != STATE_VERSION:
            msg = f"genomics adapter state version {meta.get('version')!r}, expected {STATE_VERSION}"
            raise InputError(msg, field="state.version", hint="re-fit the adapter with this version")
        feats = [(str(g), str(d)) for g, d in meta["features"]]
        arr = {k: tensors[k].numpy().astype(np.float64) for k in ("lo", "hi", "mean", "scale")}
        self._stats = _Stats(feats, arr["lo"], arr["hi"], arr["mean"], arr["scale"])
        self._set_layout(tensors["gather"].numpy().astype(np.int64), tuple(meta["token_names"]),
                         tuple(meta["datatypes"]))
        self._report = dict(meta["report"])
        self._cache_for = None
        self.fitted = True
