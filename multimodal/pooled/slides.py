"""Pooled slide features: PCA / k-means on training patches, per patient PC-score mean / std, cluster fractions and
(``spatial``) cluster co-localisation on the patch grid."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohorts.cohort import Cohort
from multimodal.errors import InputError
from multimodal.pooled.config import PooledFeaturesConfig

__all__ = ["SlidePool", "neighbour_shares"]


class SlidePool:
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

    def fit(self, cohort: Cohort, train_ids: Sequence[str]) -> SlidePool:
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

    def load(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SlidePool:
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
                scores, nearest = self._assign(x.astype(np.float64))  # PCA scores and k-means clusters, once
                row = self._row(scores, nearest)
                if self.spatial:
                    grid = None
                    if all(stream.meta.get("has_coords", [False])):
                        grid = (stream.positions[0].numpy(), stream.slide_index[0].numpy())
                    row = np.concatenate([row, self._neighbours(nearest, grid)])
                out[i] = row
        return pd.DataFrame(out, index=pd.Index(ids), columns=self.columns())

    def _assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = (x - self.mean_) @ self.components_.T  # PCA scores (no whitening)
        return s, (((s[:, None, :] - self.centres_[None]) ** 2).sum(-1)).argmin(axis=1)  # k-means assignment

    def _row(self, s: np.ndarray, nearest: np.ndarray) -> np.ndarray:
        frac = np.bincount(nearest, minlength=self.config.clusters) / len(s)
        return np.concatenate([s.mean(axis=0), s.std(axis=0), frac])

    def _neighbours(self, nearest: np.ndarray, grid: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        c = self.config.clusters
        if grid is None:
            return np.full(c * c, np.nan)
        return neighbour_shares(nearest, grid[0], grid[1], c).ravel()


def neighbour_shares(labels: np.ndarray, positions: np.ndarray, slide: np.ndarray, k: int) -> np.ndarray:
    """(k, k): entry (a, b) = share of the label-a patches with at least one label-b patch among their 8 neighbours on
    the patch grid of the same slide (0 where no patch has label a). The neighbours are the pathology adapter's
    (:func:`multimodal.adapters.slide_grid.neighbour_rows`, per slide)."""
    from multimodal.adapters.slide_grid import neighbour_rows

    out = np.zeros((k, k))
    lab = np.asarray(labels, dtype=np.int64)
    if len(lab) == 0:
        return out
    grid = np.rint(np.asarray(positions, dtype=np.float64)).astype(np.int64)
    slide = np.asarray(slide, dtype=np.int64)
    has = np.zeros((len(lab), k), dtype=bool)
    for s in np.unique(slide):
        rows = np.flatnonzero(slide == s)
        nb = neighbour_rows(grid[rows])
        for d in range(nb.shape[1]):
            hit = nb[:, d] >= 0
            has[rows[hit], lab[rows[nb[hit, d]]]] = True
    np.add.at(out, lab, has.astype(np.float64))
    return out / np.maximum(np.bincount(lab, minlength=k), 1)[:, None]
