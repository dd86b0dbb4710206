"""Slide thumbnails for a synthetic cohort: an H&E-like picture of each slide's planted tissue map, so that reports
of the demo show their top patches as image crops (``multimodal synth --thumbnails``; ``make demo``).

Each patch cell is painted with its phenotype's stain colour (tumour dark purple, immune dark blue, stroma and
normal pink, fat white, necrosis pale) plus a little per-pixel noise; background is white. The thumbnail has
:data:`PIXELS_PER_PATCH` pixels per patch side, so its downsample is ``patch_size_level0 / PIXELS_PER_PATCH``. The
slide table gains the ``thumbnail`` and ``thumbnail_downsample`` columns (docs/data-formats.md). Written after the
cohort, from its files and ground truth: the cohort's features, outcomes and ground truth are unchanged.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from multimodal.cohorts.synthetic_model import PHENOTYPES

__all__ = ["PIXELS_PER_PATCH", "STAIN", "write_thumbnails"]

PIXELS_PER_PATCH = 4
#: phenotype -> RGB of its stain in an H&E thumbnail
STAIN: dict[str, tuple[int, int, int]] = {
    "tumour": (112, 54, 142), "stroma": (226, 140, 178), "immune": (52, 40, 118), "necrosis": (214, 190, 196),
    "fat": (248, 242, 244), "normal": (238, 180, 206),
}


def _paint(grid: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The picture of a slide whose patch ``grid`` cells (level-0 coordinates // patch size, >= 0) carry ``labels``;
    pixel (0, 0) is level-0 (0, 0)."""
    k = PIXELS_PER_PATCH
    g = grid
    w = int(g[:, 0].max()) + 1 if len(g) else 1
    h = int(g[:, 1].max()) + 1 if len(g) else 1
    img = np.full((h * k, w * k, 3), 255, dtype=np.uint8)
    colours = np.array([STAIN[p] for p in PHENOTYPES], dtype=np.int16)
    for (x, y), lab in zip(g.tolist(), labels.tolist(), strict=True):
        block = colours[lab][None, None, :] + rng.integers(-14, 15, size=(k, k, 1), dtype=np.int16)
        img[y * k : (y + 1) * k, x * k : (x + 1) * k] = np.clip(block, 0, 255).astype(np.uint8)
    return img


def write_thumbnails(cohort_dir: str | Path, *, seed: int = 0) -> int:
    """Paint ``thumbnails/<slide>.png`` for every slide of the synthetic cohort at ``cohort_dir`` and add the
    ``thumbnail`` / ``thumbnail_downsample`` columns to its ``slides.csv``. Returns the number of thumbnails."""
    from PIL import Image

    root = Path(cohort_dir)
    table = pd.read_csv(root / "slides.csv", dtype=str)
    (root / "thumbnails").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    thumbs, downsample = [], []
    for slide_id, rel in zip(table["slide_id"], table["path"], strict=True):
        with h5py.File(root / rel, "r") as f:
            coords = f["coords"][()]
            ps = float(f["coords"].attrs["patch_size_level0"])
        labels = np.load(root / "ground_truth" / "patch_labels" / f"{slide_id}.npy", allow_pickle=False)
        grid = np.floor(coords / ps).astype(np.int64)
        out = f"thumbnails/{slide_id}.png"
        img = _paint(grid, labels.astype(np.int64), rng)
        Image.fromarray(img, "RGB").save(root / out, optimize=True)
        thumbs.append(out)
        downsample.append(ps / PIXELS_PER_PATCH)
    table["thumbnail"] = thumbs
    table["thumbnail_downsample"] = downsample
    table.to_csv(root / "slides.csv", index=False, lineterminator="\n")
    return len(thumbs)
