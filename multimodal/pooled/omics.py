"""Pooled omics and table features: the wide table as is, gene-set scores and (``interactions``) gene-set score x
mutation products."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import OmicsSource
from multimodal.pooled.config import SEP, PooledFeaturesConfig

__all__ = ["GeneSetScores", "Interactions", "Tabular", "has_expression"]


def has_expression(src: OmicsSource) -> bool:
    wide = src.wide is not None and any(str(c).endswith("_rnaseq") for c in src.wide.columns)
    return src.expression is not None or wide


class GeneSetScores:
    """Mean standardized expression of each gene set's members (the genomics adapter's train-fold standardization)."""

    def __init__(self, modality: str, config: PooledFeaturesConfig) -> None:
        self.modality = modality
        self.config = config

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> GeneSetScores:
        self.adapter_ = self._new_adapter().fit(cohort, list(train_ids))
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        tensors = self.adapter_.state_tensors()
        return ({"kind": "gene_sets", "adapter": self.adapter_.state_json()},
                {k: v.detach().cpu().numpy() for k, v in tensors.items()})

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> GeneSetScores:
        import torch

        self.adapter_ = self._new_adapter()
        self.adapter_.load_state({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}, dict(meta["adapter"]))
        return self

    def _new_adapter(self) -> Any:
        from multimodal.adapters.genomics import GenomicsAdapter, GenomicsAdapterConfig

        cfg = GenomicsAdapterConfig(modality=self.modality, tokens="pathways", gene_sets=self.config.gene_sets,
                                    datatypes=("rna",), min_genes_per_set=self.config.gene_set_min_genes)
        return GenomicsAdapter(cfg)

    def columns(self) -> list[str]:
        return [f"set:{n}" for n in self.adapter_.stream_spec().slot_names]

    def structure_columns(self) -> list[str]:
        return []

    def transform(self, cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
        self.adapter_.bind(cohort)
        out = np.full((len(ids), len(self.columns())), np.nan)
        for i, pid in enumerate(ids):
            s = self.adapter_.transform(pid)
            if s.num_tokens == 0:
                continue
            members = np.array([[bool(m) for m in row] for row in s.meta["members"]], dtype=np.float64)
            values = s.features[0].numpy().astype(np.float64)
            out[i] = (values * members).sum(axis=1) / np.maximum(members.sum(axis=1), 1.0)
        return pd.DataFrame(out, index=pd.Index(ids), columns=self.columns())


# ---- tables (omics wide table, clinical) -----------------------------------------------------------------------------
class Tabular:
    """A modality's table as :func:`multimodal.baselines.make_tabular` reads it, with the training patients' columns
    kept: a cohort scored later may lack a column (a gene none of its patients carries is absent from its MAF) or
    have extra ones. Scoring returns the training columns in the training order; a missing mutation column is 0
    ("not carried") for the patients whose other mutation columns say they were sequenced, and missing otherwise;
    any other missing column is missing (the preprocessor imputes the training median); extra columns are dropped."""

    def __init__(self, modality: str) -> None:
        self.modality = modality
        self.columns_: list[str] | None = None  # None: a state saved before the columns were kept

    def _read(self, cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
        from multimodal.baselines import make_tabular

        table = make_tabular(cohort, ids, modalities=(self.modality,))
        table.columns = [str(c)[len(self.modality) + len(SEP):] for c in table.columns]
        return table

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> Tabular:
        self.columns_ = list(self._read(cohort, train_ids).columns)
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"kind": "table", **({"columns": self.columns_} if self.columns_ is not None else {})}, {}

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Tabular:
        cols = meta.get("columns")
        self.columns_ = None if cols is None else [str(c) for c in cols]
        return self

    def structure_columns(self) -> list[str]:
        return []

    def transform(self, cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
        table = self._read(cohort, ids)
        if self.columns_ is None or list(table.columns) == self.columns_:
            return table
        missing = [c for c in self.columns_ if c not in table.columns]
        out = table.reindex(columns=self.columns_)
        muts = [c for c in table.columns if c.endswith("_mut")]
        if muts and any(c.endswith("_mut") for c in missing):
            sequenced = table[muts].apply(pd.to_numeric, errors="coerce").notna().any(axis=1)
            for c in missing:
                if c.endswith("_mut"):
                    out.loc[sequenced, c] = 0.0
        return out


# ---- cross-modal: gene-set score x mutation ---------------------------------------------------------------------------
class Interactions:
    """``set:<name>*<GENE>_mut`` = standardized gene-set score x (mutation - its training prevalence), for the
    mutation columns carried by at least ``interaction_min_prevalence`` of the training patients with omics."""

    def __init__(self, modality: str, config: PooledFeaturesConfig) -> None:
        self.modality = modality
        self.config = config

    def fit(self, table: pd.DataFrame) -> Interactions:
        sets = [c for c in table.columns if c.startswith("set:")]
        muts = [c for c in table.columns if c.endswith("_mut")]
        have = table.dropna(how="all")
        x_sets = have[sets].to_numpy(np.float64)
        x_muts = have[muts].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        prevalence = np.nanmean(x_muts, axis=0) if len(have) and muts else np.zeros(len(muts))
        keep = np.flatnonzero(np.nan_to_num(prevalence) >= self.config.interaction_min_prevalence)
        sd = np.nanstd(x_sets, axis=0) if len(have) and sets else np.zeros(len(sets))
        usable = np.flatnonzero(np.nan_to_num(sd) > 1e-12)
        self.sets_ = tuple(sets[i] for i in usable)
        self.set_mean_ = np.nanmean(x_sets[:, usable], axis=0) if len(usable) else np.zeros(0)
        self.set_sd_ = sd[usable]
        self.muts_ = tuple(muts[i] for i in keep)
        self.mut_mean_ = prevalence[keep]
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"kind": "interactions", "sets": list(self.sets_), "mutations": list(self.muts_)},
                {"set_mean": self.set_mean_, "set_sd": self.set_sd_, "mut_mean": self.mut_mean_})

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Interactions:
        self.sets_, self.muts_ = tuple(meta["sets"]), tuple(meta["mutations"])
        self.set_mean_, self.set_sd_, self.mut_mean_ = (np.asarray(arrays[k], dtype=np.float64)
                                                        for k in ("set_mean", "set_sd", "mut_mean"))
        if not (len(self.set_mean_) == len(self.set_sd_) == len(self.sets_) and len(self.mut_mean_) == len(self.muts_)):
            raise ValueError(f"pooled interactions state of {self.modality!r}: names and arrays differ in length")
        return self

    def columns(self) -> list[str]:
        return [f"{a}*{m}" for a in self.sets_ for m in self.muts_]

    def transform(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table``: the modality's own columns (tabular + gene-set parts, without the modality prefix)."""
        z = (table.reindex(columns=list(self.sets_)).to_numpy(np.float64) - self.set_mean_) / self.set_sd_
        m = table.reindex(columns=list(self.muts_)).apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        prod = (z[:, :, None] * (m - self.mut_mean_)[:, None, :]).reshape(len(table), -1)
        return pd.DataFrame(prod, index=table.index, columns=self.columns())
