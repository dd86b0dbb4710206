"""Neighbour context of patch tokens: each token carries the mean embedding of its grid neighbours."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from multimodal.adapters.pathology import PathologyAdapter, neighbour_mean
from multimodal.errors import ConfigError
from tests.adapters.test_pathology_adapter import TRAIN, make_cohort, read_source


def _brute_force(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for i, (gx, gy) in enumerate(grid):
        nb = [j for j, (hx, hy) in enumerate(grid) if (hx, hy) != (gx, gy) and abs(hx - gx) <= 1 and abs(hy - gy) <= 1]
        if nb:
            out[i] = x[nb].mean(0)
    return out


def test_neighbour_mean_matches_brute_force_on_a_sparse_grid() -> None:
    rng = np.random.default_rng(0)
    cells = rng.choice(12 * 12, size=60, replace=False)
    grid = np.stack([cells % 12, cells // 12], axis=1).astype(np.float32) + np.array([30.0, 5.0], np.float32)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    np.testing.assert_allclose(neighbour_mean(x, grid), _brute_force(x, grid), atol=1e-6)
    isolated = np.array([[0.0, 0.0], [5.0, 5.0]], np.float32)
    assert not neighbour_mean(np.ones((2, 3), np.float32), isolated).any()


def test_context_tokens_are_the_patch_and_its_whole_bag_neighbourhood(tmp_path: Path) -> None:
    cohort = make_cohort(tmp_path, {"P0": [300, 120], "P1": [80], "P2": [200, 50, 10]})
    a = PathologyAdapter(neighbour_context=True, max_patches=40).fit(cohort, TRAIN)
    assert a.stream_spec().feature_dim == 2 * 16
    full = a.transform("P0")
    x, coords = read_source(cohort.modalities["pathology"].slides["P0"][0].path)
    ctx = _brute_force(x, coords // 256)
    f = full.features[0].numpy()
    np.testing.assert_allclose(f[:300, :16], x, atol=1e-6)
    np.testing.assert_allclose(f[:300, 16:], ctx, atol=1e-5)
    # a training sample keeps each sampled patch's context from the whole bag, not from the sample
    s = a.transform("P0", train=True, seed=3)
    rows = s.meta["patch_rows"]
    first = s.slide_index[0].numpy() == 0
    np.testing.assert_allclose(s.features[0].numpy()[first, 16:], ctx[rows[first]], atol=1e-5)
    assert s.features.shape[1] == 40


def test_context_and_prototypes_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="neighbour_context"):
        PathologyAdapter(neighbour_context=True, prototypes=4)


def test_a_slide_left_out_of_the_training_sample_is_skipped(tmp_path: Path) -> None:
    cohort = make_cohort(tmp_path, {"P0": [400, 3], "P1": [80]})
    a = PathologyAdapter(neighbour_context=True, max_patches=8).fit(cohort, ["P0", "P1"])
    seen_small = 0
    for seed in range(40):
        s = a.transform("P0", train=True, seed=seed)
        assert s.features.shape == (1, 8, 32) and np.isfinite(s.features.numpy()).all()
        seen_small += int((s.slide_index[0] == 1).any())
    assert seen_small < 40  # most samples leave the 3-patch slide out: the case that must not fail


def test_slides_kept_in_memory_give_the_tokens_the_files_give(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter's slide-content cache (``MULTIMODAL_SLIDE_CACHE_MB``) changes where values come from, never the
    values: each stream equals the one read from the files, for inference and for training samples; a budget too
    small for a slide reads the file; a rewritten file is read again."""
    import multimodal.adapters.pathology as pathology

    cohort = make_cohort(tmp_path, {"P0": [300, 120], "P1": [80], "P2": [200, 50, 10]})

    def streams(budget: int) -> list:
        monkeypatch.setattr(pathology, "_CONTENT_CACHE_BYTES", budget)
        a = PathologyAdapter(neighbour_context=True, max_patches=40).fit(cohort, TRAIN)
        out = [a.transform(p, **kw) for _ in range(2) for p in ("P0", "P1", "P2")
               for kw in ({}, {"train": True, "seed": 3}, {"train": True, "seed": 4})]
        return out, a

    files, a0 = streams(0)
    memory, a1 = streams(1 << 30)
    partly, a2 = streams(300 * 16 * 4 * 2 * 2)  # room for some slides only
    assert not a0._content_cache and len(a1._content_cache) == 6 and 0 < len(a2._content_cache) < 6
    for f, m, p in zip(files, memory, partly, strict=True):
        for s in (m, p):
            assert np.array_equal(f.features.numpy(), s.features.numpy())
            assert np.array_equal(f.positions.numpy(), s.positions.numpy())
            assert np.array_equal(f.meta["patch_rows"], s.meta["patch_rows"]) and f.names == s.names
    path = cohort.modalities["pathology"].slides["P1"][0].path
    x, coords = read_source(path)
    import h5py

    with h5py.File(path, "r+") as h:
        h["features"][...] = x + 1.0
    st = path.stat()  # a later rewrite: the file system's clock may be coarser than this test
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    # new stat, new key, read again (stored as float16: compared at its precision)
    assert np.allclose(a1.transform("P1").features[0].numpy()[:, :16], x + 1.0, atol=1e-2)
