"""Pooled per-patient features of every modality, for the classical baselines (DESIGN §7).

:class:`PooledFeatures` is a fitted feature extractor: ``PooledFeatures(config).fit(cohort, train_ids)`` learns every
statistic from the training patients only, then ``.transform(cohort, ids)`` returns one row per patient with columns
``"<modality>:<feature>"`` (the convention of :func:`multimodal.baselines.make_tabular`, so a baseline's
``modalities`` selection keeps working). A patient lacking a modality gets missing values there; the baselines'
:class:`~multimodal.baselines.TabularPreprocessor`, fitted on the training rows, imputes them.

Per modality kind (the cohort's source type decides):

* **slides** (:class:`SlideSource`): patches are read with the pathology adapter (:mod:`multimodal.adapters.pathology`,
  which reads every supported bag format lazily). Fit: a seeded sample of at most ``fit_patches_per_patient``
  patches per *training* patient (all of a patient's slides pooled), at most ``fit_max_patches`` in all; a PCA with
  ``pca_components`` components and a k-means with ``clusters`` centres on the PC scores. Per patient (at most
  ``patches_per_patient`` patches, a seeded sample that depends only on the patient): the mean and the std of each
  PC score (``pc<j>_mean``, ``pc<j>_std``; the mean is the PCA projection of the slide-mean embedding) and the
  fraction of patches nearest to each centre (``cluster<k>_frac``: a tissue-phenotype mix).
* **omics** (:class:`OmicsSource`): the wide expression / mutation / CNV table of ``make_tabular`` (no statistic),
  plus, when ``gene_sets`` is given and the source has expression, one score per gene set (``set:<name>``): the mean
  standardized expression of its member genes, with the genomics adapter's training-fold winsorizing and
  standardization (:class:`~multimodal.adapters.genomics.GenomicsAdapter`, ``tokens="pathways"``).
* **MEDS events** (:class:`MedsSource`): read through :mod:`multimodal.adapters.meds_io` with the EHR adapter's
  leakage guard (only rows at or before each patient's prediction time, or static rows, are ever read). Vocabulary:
  codes seen in at least ``ehr_min_patients`` training patients, the ``ehr_max_codes`` most frequent (by training
  patients, ties by code). Per code: ``<code>:count`` (events up to the prediction time) and, for codes with numeric
  values in training, ``<code>:last`` (latest value) and ``<code>:slope`` (least-squares slope of the value over days,
  from two or more distinct times).
* **clinical** (:class:`ClinicalSource`): the table as is (categoricals as pandas categoricals).

``structure`` adds families of features that see structure a per-modality mean cannot (none by default: the
baselines of the study read the features above; the pooled stack of ``model.stack_features`` may add them):

* ``spatial`` (slides): for every ordered pair of k-means clusters (a, b), the share of a's patches with at least one
  b patch among their 8 grid neighbours on the same slide (``nbr<a>_<b>``; grid = ``coords // patch_size_level0``):
  a tissue co-localisation score, e.g. lymphocytes in contact with tumour (TILs) vs lymphocytes in distant stroma.
  A patient whose slides carry no coordinates gets missing values.
* ``kinetics`` (MEDS): per numeric code, the change of its latest value since the latest value at least
  ``kinetics_window_days`` before the prediction time (``<code>:change<W>d``): a log ratio for codes whose training
  values are all positive (marker kinetics: PSA doubling time, CEA velocity), else a difference.
* ``interactions`` (omics with gene-set scores): the product of each standardized gene-set score with each mutation
  column (``<GENE>_mut``) carried by at least ``interaction_min_prevalence`` of the training patients, centred at
  its training prevalence (``set:<name>*<GENE>_mut``): an expression programme whose effect depends on the genotype.

Example::

    pooled = PooledFeatures(PooledFeaturesConfig(gene_sets="omics/pathways.gmt")).fit(cohort, train_ids)
    X_train, X_test = pooled.transform(cohort, train_ids), pooled.transform(cohort, test_ids)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import ClinicalSource, MedsSource, OmicsSource, SlideSource
from multimodal.errors import InputError
from multimodal.pooled.config import SEP, STATE_VERSION, STRUCTURE, PooledFeaturesConfig, describe_column
from multimodal.pooled.ehr import EhrSummaries
from multimodal.pooled.omics import GeneSetScores, Interactions, Tabular, has_expression
from multimodal.pooled.slides import SlidePool, neighbour_shares

__all__ = ["SEP", "STRUCTURE", "PooledFeatures", "PooledFeaturesConfig", "describe_column", "neighbour_shares"]


# ---- the extractor ---------------------------------------------------------------------------------------------------
class PooledFeatures:
    """Fitted per-patient features of every modality (see the module docstring for each modality's features)."""

    def __init__(self, config: PooledFeaturesConfig | None = None) -> None:
        self.config = config or PooledFeaturesConfig()

    def _modalities(self, cohort: Cohort) -> list[str]:
        names = list(cohort.modalities) if self.config.modalities is None else list(self.config.modalities)
        absent = [m for m in names if m not in cohort.modalities]
        if absent:
            msg = f"cohort {cohort.name!r} has no modality {absent[0]!r}; it has {sorted(cohort.modalities)}"
            raise InputError(msg, field="modalities")
        return names

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> PooledFeatures:
        """Learn every statistic from ``train_ids`` only (their slides, expression and events)."""
        ids = _check_ids(cohort, train_ids)
        if not ids:
            raise InputError("no training patients to fit pooled features on", field="train_ids")
        self.parts_: dict[str, list[Any]] = {}
        self.interactions_: dict[str, Interactions] = {}
        for m in self._modalities(cohort):
            self.parts_[m] = [part.fit(cohort, ids) for part in self._parts(cohort, m)]
            if "interactions" in self.config.structure and any(isinstance(p, GeneSetScores) for p in self.parts_[m]):
                own = pd.concat([p.transform(cohort, ids).reindex(ids) for p in self.parts_[m]], axis=1)
                self.interactions_[m] = Interactions(m, self.config).fit(own)
        return self

    def structure_columns(self) -> list[str]:
        """The columns of the ``structure`` families (the pooled stack's item-1 candidate is fitted without them)."""
        cols = [f"{m}{SEP}{c}" for m, parts in self.parts_.items() for p in parts for c in p.structure_columns()]
        return cols + [f"{m}{SEP}{c}" for m, inter in self.interactions_.items() for c in inter.columns()]

    def _parts(self, cohort: Cohort, modality: str) -> list[Any]:
        src = cohort.modalities[modality]
        if isinstance(src, SlideSource):
            return [SlidePool(modality, self.config)]
        if isinstance(src, MedsSource):
            return [EhrSummaries(modality, self.config)]
        if isinstance(src, OmicsSource) and self.config.gene_sets and has_expression(src):
            return [Tabular(modality), GeneSetScores(modality, self.config)]
        if isinstance(src, (OmicsSource, ClinicalSource)):
            return [Tabular(modality)]
        msg = f"modality {modality!r} is a {type(src).__name__}, which has no pooled features"
        raise InputError(msg, field=f"modalities.{modality}")

    def transform(self, cohort: Cohort, patient_ids: Sequence[str]) -> pd.DataFrame:
        """One row per id (in order), columns ``"<modality>:<feature>"``; missing modality = missing values."""
        if not hasattr(self, "parts_"):
            msg = "PooledFeatures is not fitted; call fit(cohort, train_ids) first"
            raise RuntimeError(msg)
        ids = _check_ids(cohort, patient_ids)
        blocks = []
        for m, parts in self.parts_.items():
            if m not in cohort.modalities:
                msg = f"cohort {cohort.name!r} lacks modality {m!r} that the pooled features were fitted on"
                raise InputError(msg, field=f"modalities.{m}")
            own = [part.transform(cohort, ids).reindex(ids) for part in parts]
            if m in self.interactions_:
                own.append(self.interactions_[m].transform(pd.concat(own, axis=1)))
            blocks += [b.add_prefix(f"{m}{SEP}") for b in own]
        out = pd.concat(blocks, axis=1)
        out.index = pd.Index(ids, name=cohort.patients.index.name)
        return out

    def fit_transform(self, cohort: Cohort, train_ids: Sequence[str]) -> pd.DataFrame:
        return self.fit(cohort, train_ids).transform(cohort, train_ids)

    # ---- persistence (JSON + arrays: no pickle) ----------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted state as (JSON-able dict, arrays keyed ``"<modality>/<part>/<name>"``); :meth:`from_state`
        rebuilds an extractor whose :meth:`transform` gives the same table."""
        if not hasattr(self, "parts_"):
            raise RuntimeError("PooledFeatures is not fitted; call fit(cohort, train_ids) first")
        cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()}
        parts: dict[str, list[dict[str, Any]]] = {}
        arrays: dict[str, np.ndarray] = {}
        for m, plist in self.parts_.items():
            parts[m] = []
            for i, part in enumerate(plist):
                meta, arr = part.state()
                parts[m].append(meta)
                arrays.update({f"{m}/{i}/{k}": np.ascontiguousarray(v) for k, v in arr.items()})
        interactions: dict[str, dict[str, Any]] = {}
        for m, inter in self.interactions_.items():
            meta, arr = inter.state()
            interactions[m] = meta
            arrays.update({f"{m}/interactions/{k}": np.ascontiguousarray(v) for k, v in arr.items()})
        return {"version": STATE_VERSION, "config": cfg, "parts": parts, "interactions": interactions}, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> PooledFeatures:
        if meta.get("version") != STATE_VERSION:
            raise ValueError(f"pooled features state version {meta.get('version')!r}, expected {STATE_VERSION}")
        cfg = dict(meta["config"])
        for key in ("modalities", "structure"):
            if cfg.get(key) is not None:
                cfg[key] = tuple(cfg[key])
        out = cls(PooledFeaturesConfig(**cfg))
        kinds = {"slides": SlidePool, "gene_sets": GeneSetScores, "ehr": EhrSummaries}
        out.parts_ = {}
        for m, plist in dict(meta["parts"]).items():
            out.parts_[m] = []
            for i, pmeta in enumerate(plist):
                kind = pmeta.get("kind")
                if kind == "table":
                    part: Any = Tabular(m)
                elif kind in kinds:
                    part = kinds[kind](m, out.config)
                else:
                    raise ValueError(f"pooled features state: unknown part kind {kind!r} for modality {m!r}")
                prefix = f"{m}/{i}/"
                part.load(pmeta, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
                out.parts_[m].append(part)
        out.interactions_ = {}
        for m, imeta in dict(meta.get("interactions", {})).items():
            prefix = f"{m}/interactions/"
            out.interactions_[m] = Interactions(m, out.config).load(
                imeta, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        return out


def _check_ids(cohort: Cohort, patient_ids: Sequence[str]) -> list[str]:
    ids = [str(p) for p in patient_ids]
    unknown = [p for p in ids if p not in cohort.patients.index]
    if unknown:
        msg = f"{len(unknown)} patient id(s) not in cohort {cohort.name!r}, e.g. {unknown[:3]}"
        raise InputError(msg, patient=unknown[0], field="patient_ids")
    return ids
