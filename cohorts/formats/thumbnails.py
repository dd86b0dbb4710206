"""Slide thumbnails: the optional low-resolution image of a slide (PNG / JPEG / TIFF, read with Pillow) that the
slide table may name per slide (``thumbnail`` column, docs/data-formats.md), and the crops a report shows of its top
patches.

A thumbnail covers the whole level-0 slide; ``downsample`` is level-0 pixels per thumbnail pixel (the slide table's
``thumbnail_downsample`` column, else the level-0 width the feature file records over the thumbnail's width).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from multimodal.errors import InputError

__all__ = ["CROP_PIXELS", "MAX_THUMBNAIL_PIXELS", "crop_region", "level0_width", "png_data_uri", "read_thumbnail"]

#: Side of a crop as shown in a report, in screen pixels.
CROP_PIXELS = 96
#: A thumbnail larger than this many pixels is refused (a whole-slide image is not a thumbnail; it would be read whole).
MAX_THUMBNAIL_PIXELS = 64_000_000


def read_thumbnail(path: Path, *, patient: str | None = None) -> np.ndarray:
    """The thumbnail as an (H, W, 3) uint8 RGB array; an :class:`InputError` naming the file when it cannot be read
    as an image or is too large to be a thumbnail."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_THUMBNAIL_PIXELS:
                raise InputError(f"thumbnail is {im.width} x {im.height} pixels: too large for a thumbnail (at most "
                                 f"{MAX_THUMBNAIL_PIXELS:,} pixels)", file=path, patient=patient, field="thumbnail",
                                 hint="give a downsampled image of the slide (e.g. 1-4 micrometres per pixel or less)")
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except InputError:
        raise
    except FileNotFoundError as exc:
        raise InputError("thumbnail not found", file=path, patient=patient, field="thumbnail",
                         hint="paths are relative to the manifest folder") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # truncated / not an image
        raise InputError(f"thumbnail unreadable as an image ({type(exc).__name__})", file=path, patient=patient,
                         field="thumbnail", hint="give a PNG, JPEG or TIFF image of the slide") from exc


def crop_region(image: np.ndarray, x0: float, y0: float, patch_level0: float, downsample: float, *,
                context: float = 3.0, size: int = CROP_PIXELS) -> np.ndarray:
    """A ``size`` x ``size`` RGB crop of ``image`` centred on the patch whose level-0 top-left corner is ``(x0, y0)``
    and side ``patch_level0``, showing ``context`` patch sides across (white outside the image), with the patch
    outlined in black. Nearest-neighbour scaling: the thumbnail's own pixels, enlarged, nothing invented."""
    if downsample <= 0 or patch_level0 <= 0:
        raise ValueError(f"crop_region: downsample and patch size must be > 0, got {downsample}, {patch_level0}")
    h, w = image.shape[:2]
    side = context * patch_level0 / downsample  # thumbnail pixels across the crop
    cx, cy = (x0 + patch_level0 / 2) / downsample, (y0 + patch_level0 / 2) / downsample
    # each output pixel samples the thumbnail pixel under its centre
    grid = (np.arange(size) + 0.5) / size * side - side / 2
    xs = np.floor(cx + grid).astype(np.int64)
    ys = np.floor(cy + grid).astype(np.int64)
    out = np.full((size, size, 3), 255, dtype=np.uint8)
    inside_x, inside_y = (xs >= 0) & (xs < w), (ys >= 0) & (ys < h)
    out[np.ix_(inside_y, inside_x)] = image[np.ix_(ys[inside_y], xs[inside_x])]
    lo = int(round(size * (0.5 - 0.5 / context)))
    hi = int(round(size * (0.5 + 0.5 / context))) - 1
    for a, b in ((lo, lo + 1), (hi - 1, hi)):  # a 2-pixel outline of the patch itself
        out[a : b + 1, lo : hi + 1] = 0
        out[lo : hi + 1, a : b + 1] = 0
    return out


def png_data_uri(rgb: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an (H, W, 3) uint8 array (a self-contained image for HTML and JSON)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def level0_width(feature_file: Path) -> float | None:
    """The slide's level-0 width as TRIDENT records it (``coords`` attribute ``level0_width`` of an ``.h5``), or
    None (another format, or not recorded)."""
    if Path(feature_file).suffix.lower() not in (".h5", ".hdf5"):
        return None
    import h5py

    try:
        with h5py.File(feature_file, "r") as f:
            w = f["coords"].attrs.get("level0_width") if "coords" in f else None
    except OSError:
        return None
    try:
        return float(w) if w is not None and float(w) > 0 else None
    except (TypeError, ValueError):
        return None
