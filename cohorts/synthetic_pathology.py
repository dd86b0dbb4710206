"""Synthetic slides: spatially coherent tissue-phenotype maps and TRIDENT-layout patch-embedding files.

Each slide is a blob of tissue on a patch grid, cut into Voronoi regions; each region gets one phenotype so the
slide's phenotype fractions match its target mix. A patch embedding is its phenotype's cluster centre, plus a
per-slide shift (stain / scanner variation), plus isotropic noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from scipy.spatial import cKDTree

#: Patches per Voronoi region (the size of the tissue "blobs").
PATCHES_PER_REGION = 40
#: Fraction of the bounding grid covered by tissue.
TISSUE_FILL = 0.7
#: Rows of features generated and written per step (bounds memory for 100k-patch bags).
FEATURE_CHUNK = 65_536
TARGET_MAGNIFICATION = 20


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


def write_slide(
    root: Path, plan: SlidePlan, centres: np.ndarray, *, encoder: str, noise: float, shift_sd: float
) -> SlideRecord:
    """Generate one slide and write ``slides/<slide_id>.h5`` and ``ground_truth/patch_labels/<slide_id>.npy``."""
    rng = np.random.default_rng(list(plan.seed))
    grid = tissue_grid(rng, plan.n_patches)
    labels = phenotype_map(rng, grid, plan.mix)
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
    )


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
) -> list[SlidePlan]:
    """Decide each slide's size, magnification and phenotype mix (the slide mix scatters around the patient's).

    Args:
        patients: (cohort index, patient id) of the patients that have slides; ``patient_mix`` rows are indexed by
            the cohort index.
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
                )
            )
    return plans
