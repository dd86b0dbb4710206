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

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import ClinicalSource, MedsSource, OmicsSource, SlideSource
from multimodal.errors import ConfigError, InputError

__all__ = ["SEP", "STRUCTURE", "PooledFeatures", "PooledFeaturesConfig", "neighbour_shares"]

#: Version of :meth:`PooledFeatures.state`.
STATE_VERSION = 1
#: Separator between the modality and the feature name in column names.
SEP = ":"
_US_PER_DAY = 86_400e6
#: The ``structure`` feature families (module docstring).
STRUCTURE = ("spatial", "kinetics", "interactions")


@dataclass(frozen=True)
class PooledFeaturesConfig:
    """Configuration of :class:`PooledFeatures` (defaults suit cohorts of a few hundred patients).

    Attributes:
        modalities: cohort modalities to pool (None = all of the cohort's).
        pca_components: principal components of the patch embeddings (capped by the embedding dim).
        clusters: k-means centres on the PC scores (tissue-phenotype fractions per patient).
        fit_patches_per_patient: patches sampled per training patient to fit the PCA and the k-means.
        fit_max_patches: cap on all patches the PCA / k-means are fitted on (a seeded subsample beyond it).
        patches_per_patient: patches per patient the features are computed from (a seeded sample beyond it).
        gene_sets: a ``.gmt`` or signature ``.csv`` (relative to the cohort folder) for the gene-set scores; None =
            no scores (the study passes ``adapters.genomics.gene_sets``).
        gene_set_min_genes: a gene set with fewer expressed genes in the training fold gets no score.
        ehr_min_patients: an EHR code enters the vocabulary when at least this many training patients have it.
        ehr_max_codes: vocabulary cap: the codes of the most training patients.
        seed: seed of the patch samples, the PCA and the k-means.
        structure: extra feature families, any of :data:`STRUCTURE` (see the module docstring).
        kinetics_window_days: the look-back of the ``kinetics`` change (days before the prediction time).
        interaction_min_prevalence: a mutation column enters ``interactions`` when at least this share of the
            training patients with omics carry it.
    """

    modalities: tuple[str, ...] | None = None
    pca_components: int = 16
    clusters: int = 8
    fit_patches_per_patient: int = 256
    fit_max_patches: int = 65536
    patches_per_patient: int = 8192
    gene_sets: str | None = None
    gene_set_min_genes: int = 3
    ehr_min_patients: int = 5
    ehr_max_codes: int = 64
    seed: int = 0
    structure: tuple[str, ...] = ()
    kinetics_window_days: float = 90.0
    interaction_min_prevalence: float = 0.05

    def __post_init__(self) -> None:
        unknown = [f for f in self.structure if f not in STRUCTURE]
        if unknown:
            raise ConfigError(f"unknown structure feature family {unknown[0]!r}; expected any of {list(STRUCTURE)}",
                              field="structure")
        if not self.kinetics_window_days > 0:
            raise ConfigError(f"expected a positive number of days, got {self.kinetics_window_days!r}",
                              field="kinetics_window_days")
        if not 0 < self.interaction_min_prevalence < 1:
            raise ConfigError(f"expected a share in (0, 1), got {self.interaction_min_prevalence!r}",
                              field="interaction_min_prevalence")
        for name in ("pca_components", "clusters", "fit_patches_per_patient", "fit_max_patches",
                     "patches_per_patient", "gene_set_min_genes", "ehr_min_patients", "ehr_max_codes"):
            if getattr(self, name) < 1:
                msg = f"expected an integer >= 1, got {getattr(self, name)!r}"
                raise ConfigError(msg, field=name)


# ---- slides ----------------------------------------------------------------------------------------------------------
class _SlidePool:
    """PCA + k-means on training patches; per patient PC-score mean/std and cluster fractions."""

    def __init__(self, modality: str, config: PooledFeaturesConfig) -> None:
        self.modality = modality
        self.config = config

    def _adapter(self, cohort: Cohort, max_patches: int, state: dict[str, Any] | None = None) -> Any:
        from multimodal.adapters.pathology import PathologyAdapter, PathologyAdapterConfig

        cfg = PathologyAdapterConfig(modality=self.modality, max_patches=max_patches, seed=self.config.seed)
        adapter = PathologyAdapter(cfg)
        if state is None:
            return adapter
        adapter.load_state({}, state)  # the fitted metadata (dim, encoder); no statistic is involved
        adapter.fitted = True
        return adapter.bind(cohort)

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> _SlidePool:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA

        cfg = self.config
        sampler = self._adapter(cohort, cfg.fit_patches_per_patient).fit(cohort, train_ids)
        self.state_ = sampler.state_json()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty bags: a warning per patient, they simply give no patches
            parts = [sampler.transform(p, train=True, seed=0).features[0].numpy() for p in sorted(set(train_ids))]
        x = np.concatenate([np.zeros((0, sampler.feature_dim_), np.float32), *parts]).astype(np.float64)
        if len(x) > cfg.fit_max_patches:
            rng = np.random.default_rng([cfg.seed, 17])
            x = x[np.sort(rng.choice(len(x), size=cfg.fit_max_patches, replace=False))]
        k = min(cfg.pca_components, x.shape[1], len(x) - 1)
        if k < 1 or len(x) < cfg.clusters:
            msg = f"{len(x)} training patch(es) cannot fit {cfg.pca_components} components and {cfg.clusters} clusters"
            raise InputError(msg, field=f"modalities.{self.modality}",
                             hint="lower pca_components / clusters, or check the slides of the training patients")
        pca = PCA(n_components=k, random_state=cfg.seed).fit(x)
        scores = pca.transform(x)
        kmeans = KMeans(n_clusters=cfg.clusters, n_init=4, random_state=cfg.seed).fit(scores)
        # kept as plain arrays: the features of a fitted and of a reloaded extractor come from the same arithmetic
        self.mean_ = np.asarray(pca.mean_, dtype=np.float64)
        self.components_ = np.asarray(pca.components_, dtype=np.float64)
        self.centres_ = np.asarray(kmeans.cluster_centers_, dtype=np.float64)
        self.n_fit_patches_ = len(x)
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"kind": "slides", "sampler": self.state_, "n_fit_patches": self.n_fit_patches_},
                {"mean": self.mean_, "components": self.components_, "centres": self.centres_})

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> _SlidePool:
        self.state_, self.n_fit_patches_ = dict(meta["sampler"]), int(meta["n_fit_patches"])
        self.mean_, self.components_, self.centres_ = (np.asarray(arrays[k], dtype=np.float64)
                                                       for k in ("mean", "components", "centres"))
        return self

    @property
    def spatial(self) -> bool:
        return "spatial" in self.config.structure

    def columns(self) -> list[str]:
        k, c = self.components_.shape[0], self.config.clusters
        names = [f"pc{j}_mean" for j in range(k)] + [f"pc{j}_std" for j in range(k)]
        names += [f"cluster{j}_frac" for j in range(c)]
        return names + self.structure_columns()

    def structure_columns(self) -> list[str]:
        c = self.config.clusters
        return [f"nbr{a}_{b}" for a in range(c) for b in range(c)] if self.spatial else []

    def transform(self, cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
        reader = self._adapter(cohort, self.config.patches_per_patient, self.state_)
        out = np.full((len(ids), len(self.columns())), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, pid in enumerate(ids):
                stream = reader.transform(pid, train=True, seed=0)
                x = stream.features[0].numpy()
                if not len(x):
                    continue
                row = self._row(x.astype(np.float64))
                if self.spatial:
                    grid = None
                    if all(stream.meta.get("has_coords", [False])):
                        grid = (stream.positions[0].numpy(), stream.slide_index[0].numpy())
                    row = np.concatenate([row, self._neighbours(x.astype(np.float64), grid)])
                out[i] = row
        return pd.DataFrame(out, index=pd.Index(ids), columns=self.columns())

    def _assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = (x - self.mean_) @ self.components_.T  # PCA scores (no whitening)
        return s, (((s[:, None, :] - self.centres_[None]) ** 2).sum(-1)).argmin(axis=1)  # k-means assignment

    def _row(self, x: np.ndarray) -> np.ndarray:
        s, nearest = self._assign(x)
        frac = np.bincount(nearest, minlength=self.config.clusters) / len(s)
        return np.concatenate([s.mean(axis=0), s.std(axis=0), frac])

    def _neighbours(self, x: np.ndarray, grid: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        c = self.config.clusters
        if grid is None:
            return np.full(c * c, np.nan)
        return neighbour_shares(self._assign(x)[1], grid[0], grid[1], c).ravel()


def neighbour_shares(labels: np.ndarray, positions: np.ndarray, slide: np.ndarray, k: int) -> np.ndarray:
    """(k, k): entry (a, b) = share of the label-a patches with at least one label-b patch among their 8 neighbours on
    the patch grid of the same slide (0 where no patch has label a)."""
    n = len(labels)
    out = np.zeros((k, k))
    if n == 0:
        return out
    lab = np.asarray(labels, dtype=np.int64)
    px, py = (np.rint(positions[:, j]).astype(np.int64) for j in (0, 1))
    px, py = px - px.min() + 1, py - py.min() + 1  # a one-cell margin: neighbour offsets never wrap a row
    w, h = int(px.max()) + 2, int(py.max()) + 2
    key = (np.asarray(slide, dtype=np.int64) * h + py) * w + px
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    has = np.zeros((n, k), dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx == dy == 0:
                continue
            q = key + dy * w + dx
            i = np.minimum(np.searchsorted(sorted_key, q), n - 1)
            hit = np.flatnonzero(sorted_key[i] == q)
            has[hit, lab[order[i[hit]]]] = True
    np.add.at(out, lab, has.astype(np.float64))
    return out / np.maximum(np.bincount(lab, minlength=k), 1)[:, None]


# ---- omics -----------------------------------------------------------------------------------------------------------
def _has_expression(src: OmicsSource) -> bool:
    wide = src.wide is not None and any(str(c).endswith("_rnaseq") for c in src.wide.columns)
    return src.expression is not None or wide


class _GeneSetScores:
    """Mean standardized expression of each gene set's members (the genomics adapter's train-fold standardization)."""

    def __init__(self, modality: str, config: PooledFeaturesConfig) -> None:
        self.modality = modality
        self.config = config

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> _GeneSetScores:
        self.adapter_ = self._new_adapter().fit(cohort, list(train_ids))
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        tensors = self.adapter_.state_tensors()
        return ({"kind": "gene_sets", "adapter": self.adapter_.state_json()},
                {k: v.detach().cpu().numpy() for k, v in tensors.items()})

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> _GeneSetScores:
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


# ---- EHR -------------------------------------------------------------------------------------------------------------
def _meds_events(cohort: Cohort, modality: str, ids: Sequence[str]) -> tuple[list[str], Any]:
    """(patients of ``ids`` with MEDS data, their events at or before the prediction time) via the EHR reading path."""
    import polars as pl

    from multimodal.adapters.ehr import prediction_times
    from multimodal.adapters.meds_io import collect_events, scan_meds

    src = cohort.modalities[modality]
    assert isinstance(src, MedsSource)
    pids = [p for p in dict.fromkeys(map(str, ids)) if p in src.subject_ids]
    pt = prediction_times(cohort, pids, modality=modality)
    subjects = pl.DataFrame({
        "subject_id": pl.Series([src.subject_ids[p] for p in pids], dtype=pl.Int64),
        "pidx": pl.Series(np.arange(len(pids), dtype=np.int32)),
        "pt": pl.Series(pt, dtype=pl.Int64).cast(pl.Datetime("us")),
    })
    return pids, collect_events(scan_meds(src.root), subjects, code_prefix_depth=None, root=src.root)


class _EhrSummaries:
    """Per vocabulary code: count, last value and slope over days, from events up to the prediction time."""

    def __init__(self, modality: str, config: PooledFeaturesConfig) -> None:
        self.modality = modality
        self.config = config

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> _EhrSummaries:
        pids, ev = _meds_events(cohort, self.modality, train_ids)
        _, patients = ev.code_counts(np.ones(len(ev.pidx), dtype=bool))
        has_value = np.bincount(ev.raw[np.isfinite(ev.value)], minlength=len(ev.codes)) > 0
        order = sorted((i for i in range(len(ev.codes)) if patients[i] >= self.config.ehr_min_patients),
                       key=lambda i: (-int(patients[i]), ev.codes[i]))[: self.config.ehr_max_codes]
        self.codes_ = tuple(ev.codes[i] for i in order)
        self.numeric_ = tuple(bool(has_value[i]) for i in order)
        finite = np.isfinite(ev.value)
        nonpositive = np.bincount(ev.raw[finite & (ev.value <= 0)], minlength=len(ev.codes)) > 0
        self.positive_ = tuple(bool(has_value[i] and not nonpositive[i]) for i in order)  # kinetics on the log scale
        self.n_train_patients_ = len(pids)
        return self

    @property
    def kinetics(self) -> bool:
        return "kinetics" in self.config.structure

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"kind": "ehr", "codes": list(self.codes_), "numeric": list(self.numeric_),
                 "positive": list(self.positive_), "n_train_patients": self.n_train_patients_}, {})

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> _EhrSummaries:
        self.codes_ = tuple(str(c) for c in meta["codes"])
        self.numeric_ = tuple(bool(v) for v in meta["numeric"])
        self.positive_ = tuple(bool(v) for v in meta.get("positive", [False] * len(self.codes_)))
        self.n_train_patients_ = int(meta["n_train_patients"])
        if not len(self.codes_) == len(self.numeric_) == len(self.positive_):
            raise ValueError("pooled EHR state: 'codes', 'numeric' and 'positive' differ in length")
        return self

    def _change_name(self, code: str) -> str:
        return f"{code}:change{self.config.kinetics_window_days:g}d"

    def columns(self) -> list[str]:
        cols = []
        for code, numeric in zip(self.codes_, self.numeric_, strict=True):
            cols += [f"{code}:count"] + ([f"{code}:last", f"{code}:slope"] if numeric else [])
        return cols + self.structure_columns()

    def structure_columns(self) -> list[str]:
        if not self.kinetics:
            return []
        return [self._change_name(c) for c, numeric in zip(self.codes_, self.numeric_, strict=True) if numeric]

    def transform(self, cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
        from multimodal.adapters.ehr import code_trends

        pids, ev = _meds_events(cohort, self.modality, ids)
        v = len(self.codes_)
        index = {c: j for j, c in enumerate(self.codes_)}
        raw_to_j = np.array([index.get(c, -1) for c in ev.codes], dtype=np.int64)
        j = raw_to_j[ev.raw] if len(ev.raw) else np.zeros(0, dtype=np.int64)
        known = j >= 0
        count = np.zeros((len(pids), v))
        np.add.at(count, (ev.pidx[known], j[known]), 1.0)
        ok = known & np.isfinite(ev.value)
        last = _latest(ev.pidx, j, ev.value, ok, (len(pids), v))
        slope = np.full((len(pids), v), np.nan)
        timed = ok & ~ev.static
        p, c, s, _ = code_trends(ev.pidx[timed], j[timed].astype(np.int32), ev.dt_us[timed] / _US_PER_DAY,
                                 ev.value[timed].astype(np.float64), 2)
        slope[p, c] = s
        blocks = []
        for jj, numeric in enumerate(self.numeric_):
            blocks += [count[:, jj]] + ([last[:, jj], slope[:, jj]] if numeric else [])
        if self.kinetics:
            before = _latest(ev.pidx, j, ev.value, timed & (ev.dt_us <= -self.config.kinetics_window_days * _US_PER_DAY),
                             (len(pids), v))
            for jj, numeric in enumerate(self.numeric_):
                if numeric:
                    a, b = last[:, jj], before[:, jj]
                    if self.positive_[jj]:
                        with np.errstate(divide="ignore", invalid="ignore"):
                            blocks.append(np.where((a > 0) & (b > 0), np.log(a / b), np.nan))
                    else:
                        blocks.append(a - b)
        mat = np.column_stack(blocks) if blocks else np.zeros((len(pids), 0))
        table = pd.DataFrame(mat, index=pd.Index(pids), columns=self.columns())
        return table.reindex([str(i) for i in ids])


def _latest(pidx: np.ndarray, j: np.ndarray, value: np.ndarray, ok: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(patients, codes): the latest value of each code among the rows ``ok`` (rows sorted by patient, then time)."""
    out = np.full(shape, np.nan)
    rows = np.flatnonzero(ok)[::-1]  # the first seen backwards is the latest
    key = pidx[rows].astype(np.int64) * max(shape[1], 1) + j[rows]
    _, first = np.unique(key, return_index=True)
    out[pidx[rows[first]], j[rows[first]]] = value[rows[first]]
    return out


# ---- tables (omics wide table, clinical) -----------------------------------------------------------------------------
class _Tabular:
    """A modality's table as :func:`multimodal.baselines.make_tabular` reads it (no fitted statistic)."""

    def __init__(self, modality: str) -> None:
        self.modality = modality

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> _Tabular:
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"kind": "table"}, {}

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> _Tabular:
        return self

    def structure_columns(self) -> list[str]:
        return []

    def transform(self, cohort: Cohort, ids: Sequence[str]) -> pd.DataFrame:
        from multimodal.baselines import make_tabular

        table = make_tabular(cohort, ids, modalities=(self.modality,))
        table.columns = [str(c)[len(self.modality) + len(SEP):] for c in table.columns]
        return table


# ---- cross-modal: gene-set score x mutation ---------------------------------------------------------------------------
class _Interactions:
    """``set:<name>*<GENE>_mut`` = standardized gene-set score x (mutation - its training prevalence), for the
    mutation columns carried by at least ``interaction_min_prevalence`` of the training patients with omics."""

    def __init__(self, modality: str, config: PooledFeaturesConfig) -> None:
        self.modality = modality
        self.config = config

    def fit(self, table: pd.DataFrame) -> _Interactions:
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

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> _Interactions:
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
        self.interactions_: dict[str, _Interactions] = {}
        for m in self._modalities(cohort):
            self.parts_[m] = [part.fit(cohort, ids) for part in self._parts(cohort, m)]
            if "interactions" in self.config.structure and any(isinstance(p, _GeneSetScores) for p in self.parts_[m]):
                own = pd.concat([p.transform(cohort, ids).reindex(ids) for p in self.parts_[m]], axis=1)
                self.interactions_[m] = _Interactions(m, self.config).fit(own)
        return self

    def structure_columns(self) -> list[str]:
        """The columns of the ``structure`` families (the pooled stack's item-1 candidate is fitted without them)."""
        cols = [f"{m}{SEP}{c}" for m, parts in self.parts_.items() for p in parts for c in p.structure_columns()]
        return cols + [f"{m}{SEP}{c}" for m, inter in self.interactions_.items() for c in inter.columns()]

    def _parts(self, cohort: Cohort, modality: str) -> list[Any]:
        src = cohort.modalities[modality]
        if isinstance(src, SlideSource):
            return [_SlidePool(modality, self.config)]
        if isinstance(src, MedsSource):
            return [_EhrSummaries(modality, self.config)]
        if isinstance(src, OmicsSource) and self.config.gene_sets and _has_expression(src):
            return [_Tabular(modality), _GeneSetScores(modality, self.config)]
        if isinstance(src, (OmicsSource, ClinicalSource)):
            return [_Tabular(modality)]
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
        kinds = {"slides": _SlidePool, "gene_sets": _GeneSetScores, "ehr": _EhrSummaries}
        out.parts_ = {}
        for m, plist in dict(meta["parts"]).items():
            out.parts_[m] = []
            for i, pmeta in enumerate(plist):
                kind = pmeta.get("kind")
                if kind == "table":
                    part: Any = _Tabular(m)
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
            out.interactions_[m] = _Interactions(m, out.config).load(
                imeta, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        return out


def _check_ids(cohort: Cohort, patient_ids: Sequence[str]) -> list[str]:
    ids = [str(p) for p in patient_ids]
    unknown = [p for p in ids if p not in cohort.patients.index]
    if unknown:
        msg = f"{len(unknown)} patient id(s) not in cohort {cohort.name!r}, e.g. {unknown[:3]}"
        raise InputError(msg, patient=unknown[0], field="patient_ids")
    return ids
