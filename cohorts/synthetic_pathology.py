"""Synthetic slides: spatially coherent tissue-phenotype maps and TRIDENT-layout patch-embedding files.

Each slide is a blob of tissue on a patch grid, cut into Voronoi regions; each region gets one phenotype so the
slide's phenotype fractions match its target mix. A patch embedding is its phenotype's cluster centre, plus a
per-slide shift (stain / scanner variation), plus isotropic noise.

With a planted TIL score (``signal="interaction"``) the immune patches are placed last: a share of them on the
non-tumour cells next to tumour (8-neighbourhood on the patch grid), the rest as far from tumour as the slide allows,
so only the patch coordinates tell tumour-infiltrating lymphocytes from the same immune fraction elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from multimodal.cohorts.synthetic_model import PHENOTYPES, sigmoid

#: Patches per Voronoi region (the size of the tissue "blobs").
PATCHES_PER_REGION = 40
#: Fraction of the bounding grid covered by tissue.
TISSUE_FILL = 0.7
#: Rows of features generated and written per step (bounds memory for 100k-patch bags).
FEATURE_CHUNK = 65_536
TARGET_MAGNIFICATION = 20
TUMOUR, IMMUNE = PHENOTYPES.index("tumour"), PHENOTYPES.index("immune")
#: Phenotypes whose cells may be relabelled immune when immune patches are placed (tumour and necrosis never are).
IMMUNE_POOL: tuple[int, ...] = tuple(PHENOTYPES.index(k) for k in ("stroma", "fat", "normal"))
#: SD of a slide's TIL logit around its patient's.
TIL_SLIDE_SD = 0.25
#: Extra RNG stream of a slide for the TIL placement (keeps the grid, regions and noise of the slide's seed).
_TIL_STREAM = 7


@dataclass(frozen=True)
class SlidePlan:
    patient_id: str
    slide_id: str
    n_patches: int
    level0_magnification: int  # 20 or 40
    patch_size_level0: int
    patch_size: int  # at the target magnification
    mix: np.ndarray  # (K,) target phenotype proportions of this slide
    seed: tuple[int, ...]  # RNG key of this slide
    til_logit: float | None = None  # patient's TIL logit (signal="interaction"); None = immune placed like the rest


@dataclass(frozen=True)
class SlideRecord:
    patient_id: str
    slide_id: str
    path: str  # relative to the cohort root
    labels_path: str  # relative to the cohort root
    n_patches: int
    patch_size_level0: int
    level0_magnification: int
    phenotype_fractions: list[float]
    til_target: float | None = None  # planted share of immune patches next to tumour on this slide
    til_score: float | None = None  # realised share (tumour_adjacent_share); None without immune patches or TILs


def cluster_centres(rng: np.random.Generator, k: int, dim: int, separation: float) -> np.ndarray:
    """(K, D) float32 centres whose pairwise distances are about ``separation`` noise SDs."""
    return (rng.standard_normal((k, dim)) * (separation / np.sqrt(2.0 * dim))).astype(np.float32)


def tissue_grid(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2) int64 (col, row) cells of one irregular tissue blob, in row-major order."""
    aspect = rng.uniform(0.6, 1.6)
    cells = int(np.ceil(n / TISSUE_FILL))
    w = max(1, int(np.ceil(np.sqrt(cells * aspect))))
    h = max(1, int(np.ceil(cells / w)))
    while w * h < n:
        h += 1
    rows, cols = np.divmod(np.arange(w * h), w)
    u = (cols + 0.5) / w - 0.5
    v = (rows + 0.5) / h - 0.5
    score = (2 * u) ** 2 + (2 * v) ** 2
    for _ in range(3):  # a few low-frequency waves make the outline irregular
        fx, fy, ph = rng.uniform(1.0, 3.0), rng.uniform(1.0, 3.0), rng.uniform(0, 2 * np.pi)
        score = score + 0.25 * np.sin(2 * np.pi * (fx * u + fy * v) + ph)
    keep = np.sort(np.argpartition(score, n - 1)[:n]) if n < w * h else np.arange(w * h)
    return np.stack([cols[keep], rows[keep]], axis=1).astype(np.int64)


def phenotype_map(rng: np.random.Generator, grid: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """(n,) int8 phenotype per cell: Voronoi regions assigned so cumulative region sizes follow ``mix``."""
    n = grid.shape[0]
    k = mix.shape[0]
    m = int(min(n, max(2 * k, round(n / PATCHES_PER_REGION))))
    seeds = grid[rng.choice(n, size=m, replace=False)].astype(float)
    seeds += rng.uniform(-0.5, 0.5, size=seeds.shape)
    _, region = cKDTree(seeds).query(grid.astype(float), k=1)
    sizes = np.bincount(region, minlength=m)
    order = rng.permutation(m)
    mids = (np.cumsum(sizes[order]) - sizes[order] / 2.0) / n
    cum = np.cumsum(mix / mix.sum())
    region_label = np.empty(m, dtype=np.int8)
    region_label[order] = np.minimum(np.searchsorted(cum, mids), k - 1)
    return region_label[region]


def dense_grid(grid: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(rows, cols) int array of the labels on the slide's bounding grid, -1 outside the tissue."""
    dense = np.full((int(grid[:, 1].max()) + 1, int(grid[:, 0].max()) + 1), -1, dtype=np.int64)
    dense[grid[:, 1], grid[:, 0]] = labels
    return dense


def tumour_adjacent(grid: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) bool: the cell has a tumour cell among its 8 grid neighbours (or is tumour itself)."""
    near = ndimage.binary_dilation(dense_grid(grid, labels) == TUMOUR, structure=np.ones((3, 3), dtype=bool))
    return near[grid[:, 1], grid[:, 0]]


def tumour_adjacent_share(grid: np.ndarray, labels: np.ndarray) -> float:
    """Share of immune cells with a tumour cell among their 8 grid neighbours (NaN without immune cells)."""
    immune = labels == IMMUNE
    if not immune.any():
        return float("nan")
    return float(np.mean(tumour_adjacent(grid, labels)[immune]))


def immune_to_pool(mix: np.ndarray) -> np.ndarray:
    """``mix`` with the immune mass moved onto the pool phenotypes in proportion (they give it back later)."""
    out = mix.astype(float).copy()
    pool = list(IMMUNE_POOL)
    weight = out[pool] / out[pool].sum() if out[pool].sum() > 0 else np.full(len(pool), 1.0 / len(pool))
    out[pool] += out[IMMUNE] * weight
    out[IMMUNE] = 0.0
    return out


def _tumour_distance(grid: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) Euclidean grid distance of each cell to the nearest tumour cell (inf without tumour)."""
    tumour = dense_grid(grid, labels) == TUMOUR
    if not tumour.any():
        return np.full(grid.shape[0], np.inf)
    return ndimage.distance_transform_edt(~tumour)[grid[:, 1], grid[:, 0]]


def place_immune(
    rng: np.random.Generator, grid: np.ndarray, labels: np.ndarray, n_immune: int, share: float
) -> np.ndarray:
    """Relabel ``n_immune`` pool cells as immune: ``share`` of them next to tumour, the rest far from it.

    The adjacent ones are drawn at random among the pool cells with a tumour 8-neighbour (then the nearest others
    if those run out); the far ones are the pool cells farthest from any tumour cell (coherent blobs).
    """
    out = labels.copy()
    pool = np.flatnonzero(np.isin(labels, IMMUNE_POOL))
    n_immune = int(min(n_immune, pool.size))
    if n_immune == 0:
        return out
    dist = _tumour_distance(grid, labels)[pool]
    jitter = rng.random(pool.size)
    adjacent = tumour_adjacent(grid, labels)[pool]
    near_key = np.where(adjacent, jitter, np.where(np.isfinite(dist), dist, 1e9) + jitter)
    n_adj = int(round(share * n_immune))
    near = np.argsort(near_key, kind="stable")[:n_adj]
    rest = np.setdiff1d(np.arange(pool.size), near)
    far_key = np.where(np.isfinite(dist[rest]), dist[rest], 1e9) + jitter[rest]
    far = rest[np.argsort(-far_key, kind="stable")[: n_immune - n_adj]]
    out[pool[near]] = IMMUNE
    out[pool[far]] = IMMUNE
    return out


def slide_labels(rng: np.random.Generator, grid: np.ndarray, plan: SlidePlan) -> tuple[np.ndarray, float | None]:
    """Phenotype per cell and the slide's planted TIL share (None without a TIL logit)."""
    if plan.til_logit is None:
        return phenotype_map(rng, grid, plan.mix), None
    labels = phenotype_map(rng, grid, immune_to_pool(plan.mix))
    til_rng = np.random.default_rng([*plan.seed, _TIL_STREAM])
    share = float(sigmoid(np.asarray(plan.til_logit + TIL_SLIDE_SD * til_rng.standard_normal())))
    n_immune = int(round(plan.mix[IMMUNE] / plan.mix.sum() * plan.n_patches))
    return place_immune(til_rng, grid, labels, n_immune, share), share


def write_slide(
    root: Path, plan: SlidePlan, centres: np.ndarray, *, encoder: str, noise: float, shift_sd: float
) -> SlideRecord:
    """Generate one slide and write ``slides/<slide_id>.h5`` and ``ground_truth/patch_labels/<slide_id>.npy``."""
    rng = np.random.default_rng(list(plan.seed))
    grid = tissue_grid(rng, plan.n_patches)
    labels, til_target = slide_labels(rng, grid, plan)
    coords = grid * plan.patch_size_level0  # level-0 top-left (x, y)
    dim = centres.shape[1]
    shift = (shift_sd * rng.standard_normal(dim)).astype(np.float32)
    rel = f"slides/{plan.slide_id}.h5"
    width = int((grid[:, 0].max() + 1) * plan.patch_size_level0) if plan.n_patches else 0
    height = int((grid[:, 1].max() + 1) * plan.patch_size_level0) if plan.n_patches else 0
    with h5py.File(root / rel, "w") as f:
        feats = f.create_dataset("features", shape=(plan.n_patches, dim), dtype="float32", track_times=False)
        for start in range(0, plan.n_patches, FEATURE_CHUNK):
            lab = labels[start : start + FEATURE_CHUNK]
            block = rng.standard_normal((lab.shape[0], dim), dtype=np.float32)
            block *= np.float32(noise)
            block += centres[lab]
            block += shift
            feats[start : start + lab.shape[0]] = block
        feats.attrs["encoder"] = encoder
        feats.attrs["name"] = plan.slide_id
        feats.attrs["savetodir"] = "slides"
        c = f.create_dataset("coords", data=coords, dtype="int64", track_times=False)
        c.attrs["patch_size"] = np.int64(plan.patch_size)
        c.attrs["patch_size_level0"] = np.int64(plan.patch_size_level0)
        c.attrs["level0_magnification"] = np.int64(plan.level0_magnification)
        c.attrs["target_magnification"] = np.int64(TARGET_MAGNIFICATION)
        c.attrs["overlap"] = np.int64(0)
        c.attrs["name"] = plan.slide_id
        c.attrs["savetodir"] = "slides"
        c.attrs["level0_width"] = np.int64(width)
        c.attrs["level0_height"] = np.int64(height)
    labels_rel = f"ground_truth/patch_labels/{plan.slide_id}.npy"
    np.save(root / labels_rel, labels)
    fractions = np.bincount(labels, minlength=centres.shape[0]) / max(1, plan.n_patches)
    return SlideRecord(
        patient_id=plan.patient_id, slide_id=plan.slide_id, path=rel, labels_path=labels_rel,
        n_patches=plan.n_patches, patch_size_level0=plan.patch_size_level0,
        level0_magnification=plan.level0_magnification, phenotype_fractions=[round(float(x), 6) for x in fractions],
        til_target=None if til_target is None else round(til_target, 6), til_score=_til_score(grid, labels, til_target),
    )


def _til_score(grid: np.ndarray, labels: np.ndarray, til_target: float | None) -> float | None:
    if til_target is None:
        return None
    share = tumour_adjacent_share(grid, labels)
    return None if np.isnan(share) else round(share, 6)


def plan_slides(
    rng: np.random.Generator,
    patients: list[tuple[int, str]],
    patient_mix: np.ndarray,
    *,
    seed: int,
    patches_per_slide: int,
    patches_sigma: float,
    min_patches: int,
    slides_per_patient: tuple[int, ...],
    patch_size_level0: int,
    vary_magnification: bool,
    high_risk_index: int,
    til_logit: np.ndarray | None = None,
) -> list[SlidePlan]:
    """Decide each slide's size, magnification and phenotype mix (the slide mix scatters around the patient's).

    Args:
        patients: (cohort index, patient id) of the patients that have slides; ``patient_mix`` rows are indexed by
            the cohort index.
        til_logit: per-patient TIL logit (cohort index), or None (no TIL placement; draws are the same either way).
    """
    plans: list[SlidePlan] = []
    patch_size = patch_size_level0 // 2  # 40x-native slides: patch_size_level0 = patch_size * 40 / 20
    k = patient_mix.shape[1]
    for pi, pid in patients:
        n_slides = int(rng.integers(slides_per_patient[0], slides_per_patient[1] + 1))
        for s in range(n_slides):
            n = patches_per_slide
            if patches_sigma > 0:
                n = int(round(patches_per_slide * rng.lognormal(-0.5 * patches_sigma**2, patches_sigma)))
            n = max(min_patches, n)
            mag = int(rng.choice([20, 40])) if vary_magnification else 40
            ps0 = patch_size * mag // TARGET_MAGNIFICATION
            mix = patient_mix[pi]
            hr = mix[high_risk_index]
            hr_logit = np.log(hr / (1 - hr)) + 0.25 * rng.standard_normal()
            hr_slide = 1.0 / (1.0 + np.exp(-hr_logit))
            rest = np.delete(mix, high_risk_index)
            rest = rng.dirichlet(30.0 * rest / rest.sum() + 1e-3) * (1.0 - hr_slide)
            slide_mix = np.insert(rest, high_risk_index, hr_slide)
            assert slide_mix.shape[0] == k
            plans.append(
                SlidePlan(
                    patient_id=pid, slide_id=f"{pid}_slide{s + 1}", n_patches=n, level0_magnification=mag,
                    patch_size_level0=ps0, patch_size=patch_size, mix=slide_mix, seed=(seed, 101, pi, s),
                    til_logit=None if til_logit is None else float(til_logit[pi]),
                )
            )
    return plans
