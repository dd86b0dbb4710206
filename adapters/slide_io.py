"""Lazy readers for patch-embedding bags, for the pathology adapter (re-exported).

The readers live in :mod:`multimodal.cohorts.formats.slides`, the one place a slide feature file is read: loading,
``validate`` and the pathology adapter all open slides through it, so they accept and refuse the same files.
"""

from __future__ import annotations

from multimodal.cohorts.formats.slides import (
    FORMATS,
    SlideBag,
    _raw_index,
    detect_format,
    find_patches_h5,
    open_slide,
    patch_size_from_attrs,
    read_clam_h5,
    read_npy,
    read_pt,
    read_safetensors,
    read_stamp_h5,
    read_trident_h5,
    synthetic_grid,
)

__all__ = [
    "FORMATS", "SlideBag", "_raw_index", "detect_format", "find_patches_h5", "open_slide", "patch_size_from_attrs",
    "read_clam_h5", "read_npy", "read_pt", "read_safetensors", "read_stamp_h5", "read_trident_h5", "synthetic_grid",
]
