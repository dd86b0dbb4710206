"""Patch-grid geometry of one slide and the slides an adapter keeps in memory.

* :func:`neighbour_rows` / :func:`neighbour_mean`: each patch's up-to-8 neighbours on the patch grid (the pathology
  adapter's neighbour-context tokens, the pooled features' co-localisation shares);
* :class:`SlideContent` / :class:`SlideContentCache`: a slide's whole bag, grid and neighbour table kept between calls
  within a byte budget, so that training epochs do not re-read the file (same values as reading it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multimodal.cohorts.formats.slide_bag import SlideBag

__all__ = ["CONTENT_CACHE_BYTES", "SlideContent", "SlideContentCache", "neighbour_mean", "neighbour_rows"]

#: Bytes of slide content (features, coordinates, grid-neighbour table) an adapter keeps in memory between calls
#: (environment variable ``MULTIMODAL_SLIDE_CACHE_MB``, default 1024; 0 switches the cache off). With neighbour
#: context, a training epoch reads each sampled patch's neighbours; kept in memory, later epochs read no file. Slides
#: are kept first come, first served until the budget is spent (no eviction: in a shuffled epoch an LRU would only
#: churn), so a cohort larger than the budget has its first slides cached and reads the rest as before.
CONTENT_CACHE_BYTES = max(int(float(os.environ.get("MULTIMODAL_SLIDE_CACHE_MB", "1024")) * 2**20), 0)


@dataclass
class SlideContent:
    """One slide's whole bag in memory: features (N, D) float32 (checked finite when read), level-0 coordinates,
    grid positions and, computed on first use, the grid-neighbour table and the neighbour means."""

    features: np.ndarray
    coords: np.ndarray
    grid: np.ndarray
    _neighbours: np.ndarray | None = None
    _context: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes + self.coords.nbytes + self.grid.nbytes + 64 * len(self.grid)
                   + self.features.nbytes)  # neighbour table (8 int64 per patch) and neighbour means, when computed

    @property
    def neighbours(self) -> np.ndarray:
        if self._neighbours is None:
            self._neighbours = neighbour_rows(self.grid)
        return self._neighbours

    @property
    def context(self) -> np.ndarray:
        if self._context is None:
            self._context = neighbour_mean(self.features, self.grid)
        return self._context



@dataclass
class SlideContentCache:
    """Slides kept in memory by key (path, format, ids, file stat), first come first served within a budget."""

    entries: dict[tuple[Any, ...], SlideContent] = field(default_factory=dict)
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: tuple[Any, ...], bag: SlideBag, budget: int, chunk: int) -> SlideContent | None:
        """The slide's content, read whole (in ``chunk`` rows) and kept on first use while ``budget`` bytes allow;
        None without a key or when it does not fit (the caller reads the file)."""
        if not key:
            return None
        hit = self.entries.get(key)
        if hit is not None:
            return hit
        need = 2 * bag.num_patches * (bag.dim * 4 + 48)  # what SlideContent.nbytes will count, roughly
        if self.nbytes + need > budget:
            return None
        c = bag.coords()
        content = SlideContent(bag.read_all(chunk), c, bag.grid(c))
        self.entries[key] = content
        self.nbytes += content.nbytes
        return content


def neighbour_rows(grid: np.ndarray) -> np.ndarray:
    """(N, 8) row of each patch's grid neighbour in the 8 directions, -1 where there is none.

    ``grid`` (N, 2) holds integer-valued grid positions of one slide; a position is found by binary search over the
    sorted position keys, so the cost is O(N log N).
    """
    n = len(grid)
    out = np.full((n, 8), -1, dtype=np.int64)
    if n == 0:
        return out
    g = np.asarray(grid, dtype=np.int64)
    g = g - g.min(axis=0)
    width = int(g[:, 1].max()) + 3
    key = (g[:, 0] + 1) * width + (g[:, 1] + 1)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    offsets = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)]
    for k, (dx, dy) in enumerate(offsets):
        want = key + dx * width + dy
        j = np.minimum(np.searchsorted(skey, want), n - 1)
        hit = skey[j] == want
        out[hit, k] = order[j[hit]]
    return out


def neighbour_mean(features: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(N, D) mean embedding of each patch's up-to-8 neighbours on the patch grid (zeros where it has none)."""
    nb = neighbour_rows(grid)
    out = np.zeros_like(features, dtype=np.float32)
    count = np.zeros(len(features), dtype=np.float32)
    for k in range(nb.shape[1]):
        hit = nb[:, k] >= 0
        out[hit] += features[nb[hit, k]]
        count[hit] += 1.0
    return out / np.maximum(count, 1.0)[:, None]
