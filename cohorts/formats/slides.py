"""Slide patch-feature bags, read lazily: TRIDENT / CLAM / STAMP h5, ``.pt``, ``.npy`` and ``.safetensors``.

Every reader returns a :class:`SlideBag`: a small handle holding a slide's metadata (``num_patches``, ``dim``,
``encoder``, ``patch_size_level0``) and the path. Nothing is loaded until :meth:`SlideBag.read` (chosen rows),
:meth:`SlideBag.iter_chunks` or :meth:`SlideBag.read_all` is called; each of those opens the file, reads, and closes
it again, so a bag never holds an open file or its features in memory.

Conventions (formats-and-apis §1):

* ``coords`` are (x, y) top-left corners in level-0 pixels (STAMP: micrometres, ``coord_unit == "um"``).
* ``patch_size_level0`` is the patch side in the unit of ``coords``; the grid index is ``coords // patch_size_level0``.
  Where it comes from, in order: the coords' own attrs (TRIDENT ``patch_size_level0``; CLAM ``patch_size`` ×
  ``downsample``, or ``patch_size`` at ``patch_level`` 0; STAMP ``tile_size_um``), then a sibling CLAM/TRIDENT
  ``patches`` h5 (see :func:`find_patches_h5`), then the caller's default, and finally 1 with a warning.
* Files without coordinates (``.pt``, ``.npy``, ``.safetensors`` / STAMP without ``coords``) get a **synthetic grid**:
  row ``i`` sits at ``(i % side, i // side)`` with ``side = ceil(sqrt(N))`` and ``patch_size_level0 = 1``
  (``has_coords`` False, ``coord_unit == "grid"``). Positions are then only a stable order, not tissue geometry.
* Features of any float dtype are returned as float32; rows actually read are checked for NaN/inf.

Every problem is an :class:`~multimodal.errors.InputError` naming the file, the patient and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from multimodal.cohorts.formats.slide_backends import (
    _H5Backend,
    _load_pt,
    _NpyBackend,
    _PtBackend,
    _raw_index,
    _SafetensorsBackend,
    _Where,
)
from multimodal.cohorts.formats.slide_bag import (
    SlideBag,
    _check_matrix,
    _float_attr,
    _resolve_patch_size,
    _text,
    find_patches_h5,
    patch_size_from_attrs,
    synthetic_grid,
)
from multimodal.errors import InputError

__all__ = [
    "FORMATS", "SlideBag", "_raw_index", "detect_format", "find_patches_h5", "open_slide", "patch_size_from_attrs",
    "read_clam_h5", "read_npy", "read_pt", "read_safetensors", "read_stamp_h5", "read_trident_h5", "synthetic_grid",
]

#: Format names accepted in ``SlideRef.format`` (after aliases), besides ``"auto"``.
FORMATS = ("trident", "clam_h5", "stamp", "pt", "npy", "safetensors")
_ALIASES = {"clam": "clam_h5", "clam_pt": "pt", "trident_pt": "pt", "stamp_h5": "stamp", "h5": "auto", "auto": "auto"}
_SUFFIX = {".pt": "pt", ".pth": "pt", ".npy": "npy", ".safetensors": "safetensors", ".h5": "h5", ".hdf5": "h5"}


# ---- per-format readers ---------------------------------------------------------------------------------------------
def _open_h5(path: Path, where: _Where) -> h5py.File:
    if not path.is_file():
        raise where.error("feature file not found", "path", hint="check the manifest's slide paths")
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise where.error(f"not a readable HDF5 file ({exc})", "path", hint="the file may be truncated") from exc


def _read_h5(
    path: Path, flavour: str, where: _Where, *, default_patch_size_level0: float | None,
    patches_h5: Path | None, patches_dir: Path | None,
) -> SlideBag:
    feat_key = "feats" if flavour == "stamp" else "features"
    with _open_h5(path, where) as f:
        if feat_key not in f or not isinstance(f[feat_key], h5py.Dataset):
            coords_only = "(it holds only coords: give patch feature files, not patch-coordinate files)"
            raise where.error(f"no {feat_key!r} dataset (keys: {sorted(f.keys())})", feat_key,
                              hint=coords_only if set(f.keys()) <= {"coords"} else
                              f"is this a {flavour} feature file? set the slide's format explicitly")
        ds = f[feat_key]
        n, d = _check_matrix(ds.shape, ds.dtype, where, feat_key)
        dtype = str(ds.dtype)
        encoder = _text(ds.attrs.get("encoder")) or _text(f.attrs.get("encoder")) or _text(f.attrs.get("extractor"))
        has_coords = "coords" in f
        if flavour != "stamp" and not has_coords:
            raise where.error("no 'coords' dataset", "coords", hint=f"{flavour} feature files store coords (N, 2)")
        coord_attrs: dict[str, Any] = dict(f["coords"].attrs) if has_coords else {}
        if has_coords:
            cshape = f["coords"].shape
            if cshape != (n, 2):
                raise where.error(f"coords have shape {cshape}, expected ({n}, 2)", "coords")
        root_attrs = dict(f.attrs)
    if flavour == "stamp":
        if not has_coords:
            return SlideBag(path, "stamp", n, d, dtype, encoder, 1.0, "synthetic", False, "grid",
                            _H5Backend(path, feat_key, None), where.patient, where.slide)
        um = _float_attr(root_attrs.get("tile_size_um"))
        unit = "um" if um is not None else "px_level0"
        ps, src = _resolve_patch_size(um, where, patches_h5=None, default=default_patch_size_level0)
        return SlideBag(path, "stamp", n, d, dtype, encoder, ps, src, True, unit,
                        _H5Backend(path, feat_key, "coords"), where.patient, where.slide)
    sibling = patches_h5 if patches_h5 is not None else find_patches_h5(path, patches_dir=patches_dir)
    ps, src = _resolve_patch_size(patch_size_from_attrs(coord_attrs), where, patches_h5=sibling,
                                  default=default_patch_size_level0)
    return SlideBag(path, flavour, n, d, dtype, encoder, ps, src, True, "px_level0",
                    _H5Backend(path, feat_key, "coords"), where.patient, where.slide)


def read_trident_h5(path: str | Path, *, patient_id: str | None = None, slide_id: str | None = None,
                    default_patch_size_level0: float | None = None, patches_dir: str | Path | None = None) -> SlideBag:
    """A TRIDENT ``features_<enc>/<slide>.h5``: ``features`` (N, D), ``coords`` (N, 2) with TRIDENT attrs."""
    p = Path(path)
    return _read_h5(p, "trident", _Where(p, patient_id, slide_id), default_patch_size_level0=default_patch_size_level0,
                    patches_h5=None, patches_dir=None if patches_dir is None else Path(patches_dir))


def read_clam_h5(path: str | Path, *, patient_id: str | None = None, slide_id: str | None = None,
                 default_patch_size_level0: float | None = None, patches_h5: str | Path | None = None,
                 patches_dir: str | Path | None = None) -> SlideBag:
    """A CLAM ``h5_files/<slide>.h5``: ``features`` + ``coords`` (no attrs); the patch size from ``patches_h5``.

    ``patches_h5`` is CLAM's ``patches/<slide>.h5`` (coords attrs ``patch_size``, ``downsample``); without it a
    sibling is looked for (:func:`find_patches_h5`), then ``default_patch_size_level0``, then 1 with a warning.
    """
    p = Path(path)
    return _read_h5(p, "clam_h5", _Where(p, patient_id, slide_id),
                    default_patch_size_level0=default_patch_size_level0,
                    patches_h5=None if patches_h5 is None else Path(patches_h5),
                    patches_dir=None if patches_dir is None else Path(patches_dir))


def read_stamp_h5(path: str | Path, *, patient_id: str | None = None, slide_id: str | None = None,
                  default_patch_size_level0: float | None = None) -> SlideBag:
    """A STAMP h5: ``feats`` (N, D), optional ``coords`` (micrometres when attrs ``tile_size_um``), attrs
    ``encoder`` or ``extractor``."""
    p = Path(path)
    return _read_h5(p, "stamp", _Where(p, patient_id, slide_id), default_patch_size_level0=default_patch_size_level0,
                    patches_h5=None, patches_dir=None)


def read_pt(path: str | Path, *, patient_id: str | None = None, slide_id: str | None = None,
            default_patch_size_level0: float | None = None) -> SlideBag:
    """A CLAM/TRIDENT ``.pt``: a plain (N, D) tensor (no coordinates → the synthetic grid).

    A dict of tensors with ``features`` and optional ``coords`` (N, 2) is accepted too; its patch size comes from
    ``default_patch_size_level0`` (else 1, with a warning).
    """
    p = Path(path)
    where = _Where(p, patient_id, slide_id)
    if not p.is_file():
        raise where.error("feature file not found", "path", hint="check the manifest's slide paths")
    try:
        feats, coords = _load_pt(p)
    except Exception as exc:  # pickle.UnpicklingError (refused object), RuntimeError/EOFError (truncated), TypeError
        raise where.error(f"not a loadable tensor file ({type(exc).__name__}: {exc})", "features",
                          hint="expected torch.save of a plain (N, D) tensor; pickled objects are refused") from exc
    n, d = _check_matrix(tuple(feats.shape), str(feats.dtype).replace("torch.", ""), where, "features")
    dtype = str(feats.dtype).replace("torch.", "")
    if coords is None:
        return SlideBag(p, "pt", n, d, dtype, None, 1.0, "synthetic", False, "grid", _PtBackend(p), patient_id,
                        slide_id)
    if tuple(coords.shape) != (n, 2):
        raise where.error(f"coords have shape {tuple(coords.shape)}, expected ({n}, 2)", "coords")
    ps, src = _resolve_patch_size(None, where, patches_h5=None, default=default_patch_size_level0)
    return SlideBag(p, "pt", n, d, dtype, None, ps, src, True, "px_level0", _PtBackend(p), patient_id, slide_id)


def read_npy(path: str | Path, *, patient_id: str | None = None, slide_id: str | None = None) -> SlideBag:
    """A ``.npy`` (N, D) float array, memory-mapped (no coordinates → the synthetic grid)."""
    p = Path(path)
    where = _Where(p, patient_id, slide_id)
    if not p.is_file():
        raise where.error("feature file not found", "path", hint="check the manifest's slide paths")
    try:
        arr = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # ValueError (pickled / truncated), OSError
        raise where.error(f"not a readable .npy array ({type(exc).__name__}: {exc})", "features",
                          hint="the file may be truncated, or hold pickled objects (refused)") from exc
    if not isinstance(arr, np.ndarray):
        raise where.error("expected a single array, got an archive", "features")
    n, d = _check_matrix(arr.shape, arr.dtype, where, "features")
    return SlideBag(p, "npy", n, d, str(arr.dtype), None, 1.0, "synthetic", False, "grid", _NpyBackend(p),
                    patient_id, slide_id)


def read_safetensors(path: str | Path, *, patient_id: str | None = None, slide_id: str | None = None,
                     default_patch_size_level0: float | None = None) -> SlideBag:
    """A ``.safetensors`` with ``features`` (N, D), optional ``coords`` (N, 2); metadata ``encoder`` and
    ``patch_size_level0`` are used when present. Read lazily with ``safe_open``."""
    from safetensors import safe_open

    p = Path(path)
    where = _Where(p, patient_id, slide_id)
    if not p.is_file():
        raise where.error("feature file not found", "path", hint="check the manifest's slide paths")
    try:
        with safe_open(str(p), framework="pt") as f:
            keys = set(f.keys())
            meta = f.metadata() or {}
            if "features" not in keys:
                raise where.error(f"no 'features' tensor (keys: {sorted(keys)})", "features")
            sl = f.get_slice("features")
            shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
            cshape = tuple(f.get_slice("coords").get_shape()) if "coords" in keys else None
    except InputError:
        raise
    except Exception as exc:
        raise where.error(f"not a readable safetensors file ({type(exc).__name__}: {exc})", "path",
                          hint="the file may be truncated") from exc
    np_dtype = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}.get(dtype, dtype)
    if np_dtype == "bfloat16":
        n, d = _check_matrix(shape, np.float32, where, "features")
    else:
        try:
            n, d = _check_matrix(shape, np.dtype(np_dtype), where, "features")
        except TypeError:
            raise where.error(f"features have dtype {dtype}, expected a float dtype", "features") from None
    if cshape is not None and cshape != (n, 2):
        raise where.error(f"coords have shape {cshape}, expected ({n}, 2)", "coords")
    encoder = meta.get("encoder")
    if cshape is None:
        return SlideBag(p, "safetensors", n, d, np_dtype, encoder, 1.0, "synthetic", False, "grid",
                        _SafetensorsBackend(p, False), patient_id, slide_id)
    ps, src = _resolve_patch_size(_float_attr(meta.get("patch_size_level0")), where, patches_h5=None,
                                  default=default_patch_size_level0)
    return SlideBag(p, "safetensors", n, d, np_dtype, encoder, ps, src, True, "px_level0",
                    _SafetensorsBackend(p, True), patient_id, slide_id)


def detect_format(path: str | Path, fmt: str = "auto", *, patient_id: str | None = None) -> str:
    """The concrete format of ``path``: ``fmt`` itself, or (for ``auto``) by suffix and then by the h5 keys."""
    p = Path(path)
    where = _Where(p, patient_id)
    name = _ALIASES.get(fmt, fmt)
    if name in FORMATS:
        return name
    if name != "auto":
        raise where.error(f"unknown slide format {fmt!r}", "format",
                          hint=f"one of: auto, {', '.join(FORMATS)}")
    kind = _SUFFIX.get(p.suffix.lower())
    if kind is None:
        raise where.error(f"cannot tell the format from the suffix {p.suffix!r}", "format",
                          hint=f"use one of {', '.join(sorted(_SUFFIX))} or set the slide's format")
    if kind != "h5":
        return kind
    with _open_h5(p, where) as f:
        if "feats" in f:
            return "stamp"
        if "features" in f:
            tri = "patch_size_level0" in f["coords"].attrs if "coords" in f else False
            return "trident" if tri or "encoder" in f["features"].attrs else "clam_h5"
        raise where.error(f"no 'features' or 'feats' dataset (keys: {sorted(f.keys())})", "features",
                          hint="expected a TRIDENT/CLAM (features, coords) or STAMP (feats) file; give patch feature "
                               "files, not patch-coordinate files")


def open_slide(
    path: str | Path, fmt: str = "auto", *, patient_id: str | None = None, slide_id: str | None = None,
    default_patch_size_level0: float | None = None, patches_dir: str | Path | None = None,
) -> SlideBag:
    """Open any supported feature file as a :class:`SlideBag` (metadata only; nothing is read yet)."""
    p = Path(path)
    kind = detect_format(p, fmt, patient_id=patient_id)
    if kind == "trident":
        return read_trident_h5(p, patient_id=patient_id, slide_id=slide_id,
                               default_patch_size_level0=default_patch_size_level0, patches_dir=patches_dir)
    if kind == "clam_h5":
        return read_clam_h5(p, patient_id=patient_id, slide_id=slide_id,
                            default_patch_size_level0=default_patch_size_level0, patches_dir=patches_dir)
    if kind == "stamp":
        return read_stamp_h5(p, patient_id=patient_id, slide_id=slide_id,
                             default_patch_size_level0=default_patch_size_level0)
    if kind == "pt":
        return read_pt(p, patient_id=patient_id, slide_id=slide_id,
                       default_patch_size_level0=default_patch_size_level0)
    if kind == "npy":
        return read_npy(p, patient_id=patient_id, slide_id=slide_id)
    return read_safetensors(p, patient_id=patient_id, slide_id=slide_id,
                            default_patch_size_level0=default_patch_size_level0)
