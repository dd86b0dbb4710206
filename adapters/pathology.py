"""Pathology adapter: patch-embedding bags of a patient's slides → one ``patches`` :class:`TokenStream` (DESIGN §5).

Reads TRIDENT / CLAM / STAMP h5, ``.pt``, ``.npy`` and ``.safetensors`` bags through :mod:`.slide_io` (lazily: each
read opens the file, reads the wanted rows and closes it; no slide is ever held in memory by the adapter).

* ``fit(cohort, train_ids)`` reads only the training patients' metadata: it records the patch encoder and the
  embedding dimension and checks that all training slides agree (and agree with ``expected_encoder`` /
  ``feature_dim`` when configured). With ``prototypes=K > 0`` it also fits K k-means centroids (scikit-learn
  ``MiniBatchKMeans``, seeded) on a bounded, seeded sample of **training** patches.
* ``transform(pid, train=True, seed=s)`` samples at most ``max_patches`` patches per patient, uniformly without
  replacement over the concatenation of the patient's slides (so each slide contributes in proportion to its size),
  from ``(config.seed, s, patient id)``; only the sampled rows are read. ``train=False`` returns the whole bag, read
  in chunks of ``inference_chunk`` rows straight into one buffer.
* Tokens: ``features`` (1, N, D) float32; ``positions`` (1, N, 2) = ``coords // patch_size_level0`` per slide;
  ``slide_index`` (1, N) = the slide's index in the patient's slide list; ``names`` ``"<slide_id>@<x>,<y>"`` with
  level-0 coordinates; ``meta`` holds ``slide_ids``, ``coords_level0`` (N, 2), ``patch_size_level0`` (per slide),
  ``patch_rows`` (row of each token in its file), ``has_coords`` / ``coord_unit`` (per slide) and
  ``num_patches_total``.
* An empty bag (0 patches) contributes no tokens (with a warning); a patient without slides gets
  :func:`~multimodal.adapters.base.empty_stream`.

**Prototype compression** (``prototypes=K``): the patient's patches (the seeded sample when ``train``; the whole
bag, streamed chunk by chunk, at inference) are assigned to their nearest centroid and the stream holds exactly K
tokens, token k = ``[mean embedding of the patches assigned to prototype k (D values), fraction of the patient's
patches assigned to k]`` → feature dim D + 1. Prototypes with no patch have zero features and ``mask`` False. No
positions or slide index (they describe a set, not a place); ``meta`` keeps ``prototype_counts`` and, for heatmaps,
the per-patch ``assignment`` with ``coords_level0`` and ``patch_slide_index``.
"""

from __future__ import annotations

import warnings
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimodal.adapters.base import Adapter, StreamSpec, empty_stream
from multimodal.adapters.slide_grid import (  # noqa: F401 (neighbour_* re-exported)
    CONTENT_CACHE_BYTES,
    SlideContent,
    SlideContentCache,
    neighbour_mean,
    neighbour_rows,
)
from multimodal.adapters.slide_io import SlideBag, open_slide
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import SlideRef, SlideSource
from multimodal.errors import ConfigError, InputError, IntegrityError, Problem
from multimodal.registry import register_adapter
from multimodal.types import TokenStream

_STATE_VERSION = 1
_CACHE_LIMIT = 4096  # slide metadata kept (LRU): ~0.5 KB each; enough for a prediction chunk or a training batch
#: This adapter's slide-content budget (:data:`multimodal.adapters.slide_grid.CONTENT_CACHE_BYTES`).
_CONTENT_CACHE_BYTES = CONTENT_CACHE_BYTES
@dataclass(frozen=True)
class PathologyAdapterConfig:
    """Configuration of :class:`PathologyAdapter`.

    Attributes:
        modality: the cohort modality holding the slides.
        max_patches: train-time sample size per patient (over all of the patient's slides).
        inference_chunk: rows per read at inference (whole bag, chunked).
        expected_encoder: patch encoder name the slides must report (checked when a file records one).
        feature_dim: expected embedding dimension; learned at fit when None.
        default_patch_size_level0: level-0 patch side for files whose coords carry no patch size and have no
            ``patches`` h5 beside them (else 1, with a warning).
        patches_dir: folder of CLAM/TRIDENT ``patches/*.h5`` coordinate files (for CLAM ``h5_files`` bags).
        prototypes: K > 0 turns on prototype compression (K tokens per patient); 0 = off.
        prototype_sample_per_patient: training patches sampled per training patient to fit the prototypes.
        prototype_max_samples: cap on the total number of patches the prototypes are fitted on.
        seed: base seed for sampling and k-means.
        neighbour_context: append to every patch embedding the mean embedding of its (up to 8) grid neighbours on
            the same slide, computed on the whole bag before any sampling (zeros for a patch without neighbours).
            The token then says what surrounds it — e.g. an immune patch inside tumour vs one in stroma — which a
            set of independent patches (and any pooled summary) cannot; the feature dimension doubles (2 D).
            Off by default; not combined with prototypes.
    """

    modality: str = "pathology"
    max_patches: int = 4096
    inference_chunk: int = 16384
    expected_encoder: str | None = None
    feature_dim: int | None = None
    default_patch_size_level0: float | None = None
    patches_dir: str | None = None
    prototypes: int = 0
    prototype_sample_per_patient: int = 256
    prototype_max_samples: int = 32768
    seed: int = 0
    neighbour_context: bool = False

    def __post_init__(self) -> None:
        positive = ("max_patches", "inference_chunk", "prototype_sample_per_patient", "prototype_max_samples")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"expected an integer >= 1, got {getattr(self, name)}", field=name)
        if self.prototypes < 0:
            raise ConfigError(f"expected 0 (off) or K >= 1, got {self.prototypes}", field="prototypes")
        if self.feature_dim is not None and self.feature_dim < 1:
            raise ConfigError(f"expected an integer >= 1 or null, got {self.feature_dim}", field="feature_dim")
        if self.neighbour_context and self.prototypes > 0:
            raise ConfigError("neighbour_context is not available with prototypes (set one of them off)",
                              field="neighbour_context")
        if self.default_patch_size_level0 is not None and not self.default_patch_size_level0 > 0:
            raise ConfigError(f"expected a number > 0 or null, got {self.default_patch_size_level0}",
                              field="default_patch_size_level0")


@dataclass(frozen=True)
class SlideCheck:
    """What :meth:`PathologyAdapter.validate` found: errors (fatal) and warnings (e.g. empty bags)."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    slides: int = 0
    patches: int = 0


def _u64(v: int) -> int:
    return int(v) % (1 << 64)


def _patient_key(pid: str) -> int:
    return zlib.crc32(pid.encode("utf-8"))


def _split_rows(pick: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Sorted indices into the concatenated bag → per-slide row arrays."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cuts = np.searchsorted(pick, offsets)
    return [pick[cuts[i] : cuts[i + 1]] - offsets[i] for i in range(len(sizes))]


@register_adapter("pathology")
class PathologyAdapter(Adapter):
    """Slide patch-embedding bags → ``patches`` token stream (or K prototype tokens). See the module docstring."""

    registry_name = "pathology"
    config_cls = PathologyAdapterConfig

    def __init__(self, config: PathologyAdapterConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.config: PathologyAdapterConfig
        self._reset()
        self._bag_cache: OrderedDict[tuple[Any, ...], SlideBag] = OrderedDict()
        self._content_cache = SlideContentCache()

    def _reset(self) -> None:
        self.encoder: str | None = None
        self.feature_dim_: int | None = None
        self.centroids: torch.Tensor | None = None
        self.num_train_slides = 0
        self.num_train_patients = 0

    # ---- fitting -------------------------------------------------------------------------------------------------
    def fit(self, cohort: Cohort, patient_ids: Sequence[str]) -> PathologyAdapter:
        """Record encoder + dim from the training patients' slides (metadata only); fit prototypes if asked."""
        self.bind(cohort)
        self._reset()
        self.fitted = False
        cfg = self.config
        ids = sorted({str(p) for p in patient_ids})
        problems: list[Problem] = []
        bags: dict[str, list[SlideBag]] = {}
        for pid in ids:
            for ref in self._refs(pid):
                try:
                    bags.setdefault(pid, []).append(self._open(ref))
                except InputError as exc:
                    problems.extend(exc.problems)
        flat = [b for bs in bags.values() for b in bs]
        problems += self._agreement_problems(flat)
        if problems:
            raise InputError(problems=problems)
        dims = {b.dim for b in flat}
        dim = cfg.feature_dim if cfg.feature_dim is not None else (dims.pop() if dims else None)
        if dim is None:
            raise InputError(
                f"no training patient has {cfg.modality} slides, so the embedding dimension is unknown",
                field=f"modalities.{cfg.modality}", hint="set feature_dim in the adapter config, or check the split",
            )
        encoders = {b.encoder for b in flat if b.encoder is not None}
        self.encoder = cfg.expected_encoder or (encoders.pop() if encoders else None)
        self.feature_dim_ = int(dim)
        self.num_train_slides = len(flat)
        self.num_train_patients = len(bags)
        if cfg.prototypes > 0:
            self.centroids = self._fit_prototypes(bags)
        self.fitted = True
        return self

    def _agreement_problems(self, bags: list[SlideBag]) -> list[Problem]:
        """Training slides must share one dim and one encoder (and match the configured ones)."""
        cfg = self.config
        out: list[Problem] = []
        dims: dict[int, list[SlideBag]] = {}
        for b in bags:
            dims.setdefault(b.dim, []).append(b)
        ref_dim = cfg.feature_dim if cfg.feature_dim is not None else (
            max(dims, key=lambda d: len(dims[d])) if dims else None)
        for d, group in sorted(dims.items()):
            if d != ref_dim:
                why = "the configured feature_dim" if cfg.feature_dim is not None else "most training slides"
                for b in group[:5]:
                    out.append(Problem(f"slide {b.slide_id!r} has embedding dim {d}, {why} have {ref_dim}",
                                       file=str(b.path), patient=b.patient_id, field="features",
                                       hint="all slides must come from the same patch encoder"))
        encs: dict[str, list[SlideBag]] = {}
        for b in bags:
            if b.encoder is not None:
                encs.setdefault(b.encoder, []).append(b)
        ref_enc = cfg.expected_encoder or (max(encs, key=lambda e: (len(encs[e]), e)) if encs else None)
        for e, group in sorted(encs.items()):
            if e != ref_enc:
                why = "expected_encoder is" if cfg.expected_encoder else "most training slides are"
                for b in group[:5]:
                    out.append(Problem(f"slide {b.slide_id!r} was embedded with encoder {e!r}, {why} {ref_enc!r}",
                                       file=str(b.path), patient=b.patient_id, field="features.attrs.encoder",
                                       hint="re-extract with one encoder, or fix expected_encoder"))
        return out

    def _fit_prototypes(self, bags: dict[str, list[SlideBag]]) -> torch.Tensor:
        """K-means centroids (K, D) on a seeded sample of training patches (<= prototype_max_samples rows)."""
        from sklearn.cluster import MiniBatchKMeans

        cfg = self.config
        plans: list[tuple[list[SlideBag], list[np.ndarray]]] = []
        for pid, bs in bags.items():  # patients in sorted order; each patient's draw depends only on its own id
            sizes = [b.num_patches for b in bs]
            total = sum(sizes)
            k = min(cfg.prototype_sample_per_patient, total)
            rng = np.random.default_rng(np.random.SeedSequence([_u64(cfg.seed), _patient_key(pid), 7]))
            pick = np.sort(rng.choice(total, size=k, replace=False)) if k else np.empty(0, np.int64)
            plans.append((bs, _split_rows(pick, sizes)))
        n_all = sum(len(r) for _, rows in plans for r in rows)
        keep: np.ndarray | None = None
        if n_all > cfg.prototype_max_samples:  # decide what to drop before reading anything
            rng = np.random.default_rng(np.random.SeedSequence([_u64(cfg.seed), 11]))
            keep = np.zeros(n_all, dtype=bool)
            keep[rng.choice(n_all, size=cfg.prototype_max_samples, replace=False)] = True
        n = n_all if keep is None else int(keep.sum())
        if n < cfg.prototypes:
            raise ConfigError(f"prototypes={cfg.prototypes} needs at least that many training patches, got {n}",
                              field="prototypes", hint="lower prototypes or raise prototype_sample_per_patient")
        x = np.empty((n, self.feature_dim_ or 0), dtype=np.float32)
        pos = out = 0
        for bs, rows in plans:
            for b, r in zip(bs, rows, strict=True):
                m = len(r)
                if keep is not None:
                    r = r[keep[pos : pos + m]]
                pos += m
                if len(r):
                    x[out : out + len(r)] = b.read(r)
                    out += len(r)
        km = MiniBatchKMeans(n_clusters=cfg.prototypes, random_state=cfg.seed % (1 << 32), n_init=3,
                             batch_size=min(n, 2048), max_iter=100)
        km.fit(x)
        return torch.from_numpy(np.ascontiguousarray(km.cluster_centers_, dtype=np.float32))

    # ---- transform -----------------------------------------------------------------------------------------------
    def transform(self, patient_id: str, *, train: bool = False, seed: int | None = None) -> TokenStream:
        """This patient's tokens (batch size 1). ``train`` samples <= ``max_patches`` patches from ``seed``."""
        self._require_fitted()
        pid = str(patient_id)
        refs = self._refs(pid)
        if not refs:
            return self._empty()
        bags = [self._checked(ref) for ref in refs]
        self._warn_empty(pid, bags)
        plan = self._sample_plan(pid, bags, seed) if train else [None] * len(bags)
        if self.config.prototypes > 0:
            return self._prototype_stream(pid, refs, bags, plan)
        return self._patch_stream(refs, bags, plan)

    def _sample_plan(self, pid: str, bags: list[SlideBag], seed: int | None) -> list[np.ndarray | None]:
        sizes = [b.num_patches for b in bags]
        total = sum(sizes)
        if total <= self.config.max_patches:
            return [None] * len(bags)
        s = 0 if seed is None else int(seed)
        rng = np.random.default_rng(np.random.SeedSequence([_u64(self.config.seed), _u64(s), _patient_key(pid)]))
        pick = np.sort(rng.choice(total, size=self.config.max_patches, replace=False))
        return list(_split_rows(pick, sizes))

    def _patch_stream(
        self, refs: Sequence[SlideRef], bags: list[SlideBag], plan: list[np.ndarray | None],
    ) -> TokenStream:
        if self.config.neighbour_context:
            return self._context_stream(refs, bags, plan)
        d = self._dim()
        counts = [b.num_patches if r is None else len(r) for b, r in zip(bags, plan, strict=True)]
        total = sum(counts)
        feats = np.empty((total, d), dtype=np.float32)
        coords: list[np.ndarray] = []
        pos = np.empty((total, 2), dtype=np.float32)
        rows = np.empty(total, dtype=np.int64)
        sidx = np.empty(total, dtype=np.int64)
        off = 0
        for i, (b, r, n) in enumerate(zip(bags, plan, counts, strict=True)):
            if n == 0:
                coords.append(np.empty((0, 2), dtype=np.int64))
                continue
            if r is None:
                b.read_into(feats[off : off + n], self.config.inference_chunk)
                c = b.coords()
                rows[off : off + n] = np.arange(n)
            else:
                feats[off : off + n], c = b.read_with_coords(r)
                rows[off : off + n] = r
            coords.append(c)
            pos[off : off + n] = b.grid(c)
            sidx[off : off + n] = i
            off += n
        all_coords = np.concatenate(coords) if coords else np.empty((0, 2), dtype=np.int64)
        names = tuple(n for ref, c in zip(refs, coords, strict=True) for n in _names(ref.slide_id, c))
        return TokenStream(
            modality=self.modality,
            mask=torch.ones(1, total, dtype=torch.bool),
            features=torch.from_numpy(feats).unsqueeze(0),
            positions=torch.from_numpy(pos).unsqueeze(0),
            slide_index=torch.from_numpy(sidx).unsqueeze(0),
            names=(names,),
            meta=self._meta(refs, bags, coords_level0=all_coords, patch_rows=rows),
        )

    def _context_stream(
        self, refs: Sequence[SlideRef], bags: list[SlideBag], plan: list[np.ndarray | None],
    ) -> TokenStream:
        """Like :meth:`_patch_stream`, each token ``[embedding, mean embedding of its grid neighbours]`` (2 D).

        The neighbour means are computed on each slide's whole bag, then the sampled rows are kept, so a training
        sample sees the same context as inference."""
        feats, coords, pos, rows, sidx = [], [], [], [], []
        for i, (ref, b, r) in enumerate(zip(refs, bags, plan, strict=True)):
            if b.num_patches == 0:
                coords.append(np.empty((0, 2), dtype=np.int64))
                continue
            if r is not None and len(r) == 0:  # a slide the training sample left out
                coords.append(np.empty((0, 2), dtype=np.int64))
                continue
            mem = self._content(ref, b)  # the same values as the file's, without reading it again
            c = mem.coords if mem is not None else b.coords()
            g = mem.grid if mem is not None else b.grid(c)
            if r is None:
                keep = np.arange(b.num_patches)
                if mem is not None:
                    feats.append(np.concatenate([mem.features, mem.context], axis=1))
                else:
                    x = b.read_all(self.config.inference_chunk)
                    feats.append(np.concatenate([x, neighbour_mean(x, g)], axis=1))
            else:  # read only the sampled patches and their neighbours
                keep = np.asarray(r)
                nb = (mem.neighbours if mem is not None else neighbour_rows(g))[keep]  # (n, 8), -1 = no neighbour
                need = np.unique(np.concatenate([keep, nb[nb >= 0]]))
                x = mem.features[need] if mem is not None else b.read_with_coords(need, coords=False)[0]
                at = np.searchsorted(need, np.where(nb >= 0, nb, need[0]))
                valid = (nb >= 0)[..., None].astype(np.float32)
                ctx = (x[at] * valid).sum(1) / np.maximum(valid.sum(1), 1.0)
                feats.append(np.concatenate([x[np.searchsorted(need, keep)], ctx], axis=1))
            coords.append(c[keep])
            pos.append(g[keep])
            rows.append(keep)
            sidx.append(np.full(len(keep), i, dtype=np.int64))
        d2 = 2 * self._dim()
        f = np.concatenate(feats).astype(np.float32, copy=False) if feats else np.empty((0, d2), np.float32)
        all_coords = np.concatenate(coords) if coords else np.empty((0, 2), dtype=np.int64)
        total = len(f)
        names = tuple(n for ref, c in zip(refs, coords, strict=True) for n in _names(ref.slide_id, c))
        return TokenStream(
            modality=self.modality,
            mask=torch.ones(1, total, dtype=torch.bool),
            features=torch.from_numpy(np.ascontiguousarray(f)).unsqueeze(0),
            positions=torch.from_numpy(np.concatenate(pos) if pos else np.empty((0, 2), np.float32)).unsqueeze(0),
            slide_index=torch.from_numpy(np.concatenate(sidx) if sidx else np.empty(0, np.int64)).unsqueeze(0),
            names=(names,),
            meta=self._meta(refs, bags, coords_level0=all_coords,
                            patch_rows=np.concatenate(rows) if rows else np.empty(0, np.int64)),
        )

    def _prototype_stream(
        self, pid: str, refs: Sequence[SlideRef], bags: list[SlideBag], plan: list[np.ndarray | None],
    ) -> TokenStream:
        assert self.centroids is not None
        k, d = self.centroids.shape
        sums = torch.zeros(k, d, dtype=torch.float64)
        counts = torch.zeros(k, dtype=torch.float64)
        assign: list[np.ndarray] = []
        coords: list[np.ndarray] = []
        sidx: list[np.ndarray] = []

        def add(x: np.ndarray) -> None:
            a = self.assign_prototypes(x)
            onehot = torch.nn.functional.one_hot(a, k).to(torch.float32).T  # (K, n)
            sums.add_((onehot @ torch.from_numpy(x)).double())
            counts.add_(onehot.sum(1).double())
            assign.append(a.numpy().astype(np.int32))

        for i, (b, r) in enumerate(zip(bags, plan, strict=True)):
            if b.num_patches == 0 or (r is not None and len(r) == 0):
                continue
            if r is None:
                for _, x in b.iter_chunks(self.config.inference_chunk):
                    add(x)
                c = b.coords()
            else:
                x, c = b.read_with_coords(r)
                add(x)
            coords.append(c)
            sidx.append(np.full(len(c), i, dtype=np.int64))
        n = float(counts.sum())
        mean = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], torch.zeros_like(sums))
        frac = counts / n if n > 0 else counts
        feats = torch.cat([mean, frac[:, None]], dim=1).to(torch.float32).unsqueeze(0)
        meta = self._meta(refs, bags, coords_level0=np.concatenate(coords) if coords else np.empty((0, 2), np.int64))
        meta.update(
            prototype_counts=counts.numpy().astype(np.int64),
            assignment=np.concatenate(assign) if assign else np.empty(0, np.int32),
            patch_slide_index=np.concatenate(sidx) if sidx else np.empty(0, np.int64),
        )
        return TokenStream(
            modality=self.modality,
            mask=(counts > 0).unsqueeze(0),
            features=feats,
            names=(tuple(f"prototype_{j}" for j in range(k)),),
            meta=meta,
        )

    def assign_prototypes(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Index of the nearest centroid (squared Euclidean) for each row of ``x`` (n, D)."""
        if self.centroids is None:
            msg = "assign_prototypes: prototypes are off (config.prototypes == 0) or the adapter is not fitted"
            raise RuntimeError(msg)
        xt = torch.as_tensor(x, dtype=torch.float32)
        c = self.centroids
        dist = (c * c).sum(1)[None, :] - 2.0 * (xt @ c.T)  # ||x||^2 is the same for every centroid
        return dist.argmin(dim=1)

    def iter_patch_chunks(self, patient_id: str, chunk: int | None = None) -> Iterator[TokenStream]:
        """The whole bag as a sequence of raw-patch streams of at most ``chunk`` tokens (never crossing a slide).

        For models that stream over huge bags. Each chunk has ``features`` (1, n, D) (raw patch embeddings, also in
        prototype mode), ``positions``, ``slide_index``, ``names`` and ``meta`` with ``slide_id``, ``offset`` (the
        first token's index in the full bag), ``patch_rows`` and ``coords_level0``.
        """
        self._require_fitted()
        pid = str(patient_id)
        step = int(chunk or self.config.inference_chunk)
        offset = 0
        for i, ref in enumerate(self._refs(pid)):
            b = self._checked(ref)
            if b.num_patches == 0:
                continue
            coords = b.coords()
            grid = b.grid(coords)
            for start, x in b.iter_chunks(step):
                n = len(x)
                c = coords[start : start + n]
                yield TokenStream(
                    modality=self.modality,
                    mask=torch.ones(1, n, dtype=torch.bool),
                    features=torch.from_numpy(x).unsqueeze(0),
                    positions=torch.from_numpy(grid[start : start + n]).unsqueeze(0),
                    slide_index=torch.full((1, n), i, dtype=torch.long),
                    names=(tuple(_names(ref.slide_id, c)),),
                    meta={"slide_id": ref.slide_id, "slide_index": i, "offset": offset,
                          "patch_rows": np.arange(start, start + n), "coords_level0": c,
                          "patch_size_level0": b.patch_size_level0},
                )
                offset += n

    # ---- helpers ---------------------------------------------------------------------------------------------------
    def num_tokens_hint(self, patient_id: str) -> int:
        """Cheap token count (file metadata only): K with prototypes, else the whole bag's size."""
        if self.cohort is None or not self._refs(str(patient_id)):
            return 0
        if self.config.prototypes > 0:
            return self.config.prototypes
        return sum(self._open(r).num_patches for r in self._refs(str(patient_id)))

    def validate(self, cohort: Cohort | None = None, patient_ids: Sequence[str] | None = None, *,
                 check_values: bool = False) -> SlideCheck:
        """Open every slide of ``patient_ids`` (default all) and report problems without raising.

        Errors: unreadable files, missing keys, non-2-D features, dims/encoders that disagree (with each other, the
        config, or the fitted state), and with ``check_values`` NaN/inf features (reads every row). Warnings: empty
        bags (they yield no tokens) and slides whose patch size fell back to 1.
        """
        c = cohort if cohort is not None else self.cohort
        if c is None:
            msg = "validate: pass a cohort (the adapter is not bound to one)"
            raise RuntimeError(msg)
        src = self._source(c)
        ids = sorted(src.slides) if patient_ids is None else sorted({str(p) for p in patient_ids})
        errors: list[Problem] = []
        warns: list[Problem] = []
        bags: list[SlideBag] = []
        for pid in ids:
            for ref in src.slides.get(pid, ()):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        b = self._open(ref)
                    if self.fitted:
                        self._check_against_fit(b)
                    if check_values:
                        for _ in b.iter_chunks(self.config.inference_chunk):
                            pass
                except InputError as exc:
                    errors.extend(exc.problems)
                    continue
                bags.append(b)
                if b.num_patches == 0:
                    warns.append(Problem(f"slide {b.slide_id!r} has no patches; it yields no tokens",
                                         file=str(b.path), patient=pid, field="features"))
                if b.patch_size_source == "fallback":
                    warns.append(Problem(f"slide {b.slide_id!r}: patch_size_level0 unknown, using 1",
                                         file=str(b.path), patient=pid, field="coords.attrs.patch_size_level0",
                                         hint="set default_patch_size_level0 or patches_dir"))
        if not self.fitted:
            errors += self._agreement_problems(bags)
        return SlideCheck(errors, warns, len(bags), sum(b.num_patches for b in bags))

    def _source(self, cohort: Cohort) -> SlideSource:
        src = cohort.modalities.get(self.modality)
        if not isinstance(src, SlideSource):
            raise InputError(f"modality {self.modality!r} is not a slide source (got {type(src).__name__})",
                             field=f"modalities.{self.modality}")
        return src

    def _refs(self, pid: str) -> tuple[SlideRef, ...]:
        assert self.cohort is not None
        return tuple(self._source(self.cohort).slides.get(pid, ()))

    @staticmethod
    def _key(ref: SlideRef) -> tuple[Any, ...]:
        """Cache key of a slide: path, format, ids and file stat (a rewritten file is a new key); () when unstatable."""
        p = Path(ref.path)
        try:
            st = p.stat()
        except OSError:
            return ()
        return (str(p), ref.format, ref.patient_id, ref.slide_id, st.st_mtime_ns, st.st_size)

    def _content(self, ref: SlideRef, bag: SlideBag) -> SlideContent | None:
        """The slide's whole bag from memory, read and kept on first use while the budget
        (:data:`_CONTENT_CACHE_BYTES`) allows; None when it does not (the caller reads the file)."""
        return self._content_cache.get(self._key(ref), bag, _CONTENT_CACHE_BYTES, self.config.inference_chunk)

    def _open(self, ref: SlideRef) -> SlideBag:
        """Open (metadata only) with a cache keyed by path and file stat, so a rewritten file is reopened."""
        p = Path(ref.path)
        key = self._key(ref)
        if key and key in self._bag_cache:
            self._bag_cache.move_to_end(key)
            return self._bag_cache[key]
        cfg = self.config
        bag = open_slide(p, ref.format, patient_id=ref.patient_id, slide_id=ref.slide_id,
                         default_patch_size_level0=cfg.default_patch_size_level0, patches_dir=cfg.patches_dir)
        if key:
            while len(self._bag_cache) >= _CACHE_LIMIT:
                self._bag_cache.popitem(last=False)
            self._bag_cache[key] = bag
        return bag

    def _check_against_fit(self, b: SlideBag) -> None:
        if b.dim != self.feature_dim_:
            raise InputError(
                f"slide {b.slide_id!r} has embedding dim {b.dim}, the adapter was fitted on dim {self.feature_dim_}",
                file=b.path, patient=b.patient_id, field="features",
                hint=f"use features from the training encoder ({self.encoder or 'unrecorded'})",
            )
        if b.encoder is not None and self.encoder is not None and b.encoder != self.encoder:
            raise InputError(
                f"slide {b.slide_id!r} was embedded with encoder {b.encoder!r}, the adapter was fitted on "
                f"{self.encoder!r}", file=b.path, patient=b.patient_id, field="features.attrs.encoder",
                hint="re-extract the slide with the training encoder",
            )

    def _checked(self, ref: SlideRef) -> SlideBag:
        b = self._open(ref)
        self._check_against_fit(b)
        return b

    def _warn_empty(self, pid: str, bags: list[SlideBag]) -> None:
        for b in bags:
            if b.num_patches == 0:
                warnings.warn(f"{b.path}: slide {b.slide_id!r} of patient {pid!r} has no patches; no tokens from it",
                              stacklevel=3)

    def _meta(self, refs: Sequence[SlideRef], bags: list[SlideBag], **extra: Any) -> dict[str, Any]:
        return {
            "slide_ids": [r.slide_id for r in refs],
            "patch_size_level0": [b.patch_size_level0 for b in bags],
            "has_coords": [b.has_coords for b in bags],
            "coord_unit": [b.coord_unit for b in bags],
            "num_patches_total": sum(b.num_patches for b in bags),
            **extra,
        }

    def _dim(self) -> int:
        if self.feature_dim_ is None:
            msg = "PathologyAdapter is not fitted"
            raise RuntimeError(msg)
        return self.feature_dim_

    def _token_dim(self) -> int:
        """Width of a token's features: D, D + 1 with prototypes (the count), 2 D with neighbour context."""
        if self.config.prototypes > 0:
            return self._dim() + 1
        return 2 * self._dim() if self.config.neighbour_context else self._dim()

    def _empty(self) -> TokenStream:
        if self.config.prototypes > 0:
            return empty_stream(self.modality, feature_dim=self._token_dim())
        return empty_stream(self.modality, feature_dim=self._token_dim(), positions=True)

    # ---- state -----------------------------------------------------------------------------------------------------
    def stream_spec(self) -> StreamSpec:
        return StreamSpec(self.modality, "patches", feature_dim=self._token_dim(), max_tokens=self.config.prototypes)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.centroids is None else {"centroids": self.centroids}

    def state_json(self) -> dict[str, Any]:
        return {
            "version": _STATE_VERSION,
            "encoder": self.encoder,
            "feature_dim": self.feature_dim_,
            "num_train_slides": self.num_train_slides,
            "num_train_patients": self.num_train_patients,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._reset()
        self.encoder = meta.get("encoder")
        self.feature_dim_ = None if meta.get("feature_dim") is None else int(meta["feature_dim"])
        self.num_train_slides = int(meta.get("num_train_slides", 0))
        self.num_train_patients = int(meta.get("num_train_patients", 0))
        if self.config.prototypes > 0:
            c = tensors.get("centroids")
            if c is None or tuple(c.shape) != (self.config.prototypes, self.feature_dim_):
                got = None if c is None else tuple(c.shape)
                msg = f"pathology adapter state: centroids {got}, expected ({self.config.prototypes}, {self.feature_dim_})"
                raise IntegrityError(msg)
            self.centroids = c.to(torch.float32).contiguous()


def _names(slide_id: str, coords: np.ndarray) -> list[str]:
    """``"<slide_id>@<x>,<y>"`` per row of ``coords`` (integers as such, micrometres with ``%g``)."""
    xs, ys = coords[:, 0].tolist(), coords[:, 1].tolist()
    fmt = "{}@{},{}" if np.issubdtype(coords.dtype, np.integer) else "{}@{:g},{:g}"
    return list(map(fmt.format, [slide_id] * len(xs), xs, ys))
