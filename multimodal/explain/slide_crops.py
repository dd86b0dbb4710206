"""Image crops of a patient's top patches, from the slide thumbnails the manifest names (``thumbnail`` column of the
slide table): what a pathologist looks at first. A slide without a thumbnail, or whose thumbnail's scale is unknown,
keeps the map alone.

The scale (level-0 pixels per thumbnail pixel) is the slide table's ``thumbnail_downsample``, else the level-0 width
the feature file records (TRIDENT) over the thumbnail's width. It is never guessed from the patches' extent: a crop
off by a few patches would show the wrong tissue.
"""

from __future__ import annotations

from typing import Any

from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.formats.thumbnails import crop_region, level0_width, png_data_uri, read_thumbnail
from multimodal.cohorts.sources import SlideRef

__all__ = ["add_crops", "slide_thumbnails"]


def slide_thumbnails(cohort: Cohort, modality: str, patient_id: str, slide_ids: list[str]) -> list[SlideRef | None]:
    """The patient's slide references in the stream's slide order (``meta["slide_ids"]``), None where unknown."""
    src = cohort.modalities.get(modality)
    refs = {r.slide_id: r for r in (getattr(src, "slides", {}) or {}).get(patient_id, ())}
    return [refs.get(s) for s in slide_ids]


def add_crops(top_patches: list[dict[str, Any]], slide_of: list[int], refs: list[SlideRef | None],
              patch_size_level0: list[float]) -> dict[str, Any]:
    """Add ``crop`` (a PNG data URI) to each top patch (``x_level0`` / ``y_level0``) whose slide has a usable
    thumbnail; ``slide_of[i]`` is top patch i's slide index. Returns a summary for the evidence record."""
    images: dict[int, tuple[Any, float] | None] = {}
    for si, ref in enumerate(refs):  # every thumbnail of the patient is read (as validate reads it), cropped or not
        if ref is None or ref.thumbnail is None:
            continue
        img = read_thumbnail(ref.thumbnail, patient=ref.patient_id)
        ds = ref.thumbnail_downsample
        if ds is None:
            w0 = level0_width(ref.path)
            ds = w0 / img.shape[1] if w0 else None
        images[si] = None if ds is None else (img, float(ds))
    n = 0
    for rec, si in zip(top_patches, slide_of, strict=True):
        entry = images.get(si)
        if "x_level0" not in rec or entry is None:
            continue
        img, ds = entry
        rec["crop"] = png_data_uri(crop_region(img, rec["x_level0"], rec["y_level0"],
                                               float(patch_size_level0[si]), ds))
        n += 1
    unscaled = sum(1 for v in images.values() if v is None)
    return {"crops": n, "crop_note": "each crop shows the patch (outlined) with one patch of tissue around it, from "
                                     "the slide's thumbnail" + (f"; {unscaled} thumbnail(s) without a known scale "
                                                                "were not cropped" if unscaled else "")}
