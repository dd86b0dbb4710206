"""The lazy slide handle (:class:`SlideBag`) and the metadata helpers the readers share (patch size, finite and
shape checks); see :mod:`multimodal.cohorts.formats.slides`."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from multimodal.cohorts.formats.slide_backends import _Backend, _Session, _Where
from multimodal.errors import InputError


# ---- the bag handle ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlideBag:
    """A lazy handle on one slide's patch embeddings.

    Attributes:
        path: the feature file.
        format: the resolved format (one of :data:`FORMATS`).
        num_patches: N (may be 0: an empty bag).
        dim: D, the embedding dimension.
        dtype: the stored feature dtype (read as float32).
        encoder: the patch encoder's name when the file records it, else None.
        patch_size_level0: the patch side in the unit of the coordinates (see the module docstring).
        patch_size_source: where ``patch_size_level0`` came from: ``attrs``, ``patches_file``, ``default``,
            ``fallback`` (1, with a warning) or ``synthetic`` (no coordinates).
        has_coords: False when positions come from the synthetic row-index grid.
        coord_unit: ``px_level0``, ``um`` (STAMP) or ``grid`` (synthetic).
        patient_id / slide_id: for error messages.
    """

    path: Path
    format: str
    num_patches: int
    dim: int
    dtype: str
    encoder: str | None
    patch_size_level0: float
    patch_size_source: str
    has_coords: bool
    coord_unit: str
    backend: _Backend = field(repr=False, compare=False)
    patient_id: str | None = None
    slide_id: str | None = None

    @property
    def _where(self) -> _Where:
        return _Where(self.path, self.patient_id, self.slide_id)

    @contextlib.contextmanager
    def _session(self) -> Iterator[_Session]:
        try:
            with self.backend.session() as s:
                yield s
        except InputError:
            raise
        except Exception as exc:  # truncated / corrupt files surface here (OSError, RuntimeError, SafetensorError)
            raise self._where.error(f"features unreadable ({type(exc).__name__}: {exc})", "features",
                                    hint="the file may be truncated or corrupt; re-extract it") from exc

    def read(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """Features of the given rows (sorted, unique, in ``[0, N)``) as a (len(rows), D) float32 array."""
        return self.read_with_coords(rows, coords=False)[0]

    def read_with_coords(self, rows: np.ndarray | list[int], *, coords: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(features (n, D) float32, coords (n, 2))`` of the given sorted unique rows, in one file session."""
        idx = self._check_rows(rows)
        if len(idx) == 0:
            return np.empty((0, self.dim), dtype=np.float32), self._coords_of(None, idx)
        with self._session() as s:
            try:
                x = s.read_rows(idx)
                c = self._coords_of(s, idx) if coords else np.empty((0, 2), dtype=np.int64)
            except InputError:
                raise
            except Exception as exc:
                raise self._read_failed(exc) from exc
        _check_finite(x, self._where, rows=idx)
        return x, c

    def iter_chunks(self, chunk: int = 16384) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_row, features)`` over the whole bag in contiguous chunks of at most ``chunk`` rows."""
        yield from self._chunks(chunk, None)

    def read_into(self, out: np.ndarray, chunk: int = 16384) -> None:
        """Fill ``out`` ((N, D) float32 C-contiguous, e.g. rows of a larger buffer) with the whole bag, reading each
        chunk straight into it (no temporary copy)."""
        if out.shape != (self.num_patches, self.dim) or out.dtype != np.float32 or not out.flags.c_contiguous:
            msg = f"read_into: expected a C-contiguous float32 array of shape {(self.num_patches, self.dim)}"
            raise ValueError(msg)
        for _ in self._chunks(chunk, out):
            pass

    def read_all(self, chunk: int = 16384) -> np.ndarray:
        """The whole bag as an (N, D) float32 array, read in chunks into one preallocated buffer."""
        out = np.empty((self.num_patches, self.dim), dtype=np.float32)
        self.read_into(out, chunk)
        return out

    def coords(self, rows: np.ndarray | list[int] | None = None) -> np.ndarray:
        """(n, 2) coordinates of ``rows`` (default all): int64 for pixels, float64 for micrometres; the synthetic
        grid when the file has none."""
        idx = None if rows is None else self._check_rows(rows)
        if not self.has_coords:
            return self._coords_of(None, idx)
        with self._session() as s:
            try:
                return self._coords_of(s, idx)
            except InputError:
                raise
            except Exception as exc:
                raise self._read_failed(exc, field="coords") from exc

    # ---- internals ---------------------------------------------------------------------------------------------
    def _chunks(self, chunk: int, out: np.ndarray | None) -> Iterator[tuple[int, np.ndarray]]:
        if self.num_patches == 0:
            return
        step = max(int(chunk), 1)
        with self._session() as s:
            for start in range(0, self.num_patches, step):
                stop = min(start + step, self.num_patches)
                try:
                    x = s.read_range(start, stop, None if out is None else out[start:stop])
                except Exception as exc:
                    raise self._read_failed(exc) from exc
                _check_finite(x, self._where, first_row=start)
                yield start, x

    def _check_rows(self, rows: np.ndarray | list[int]) -> np.ndarray:
        idx = np.asarray(rows, dtype=np.int64)
        if idx.ndim != 1 or (len(idx) and (idx[0] < 0 or idx[-1] >= self.num_patches or np.any(np.diff(idx) <= 0))):
            msg = f"SlideBag: rows must be sorted unique indices in [0, {self.num_patches})"
            raise ValueError(msg)
        return idx

    def _coords_of(self, s: _Session | None, rows: np.ndarray | None) -> np.ndarray:
        if not self.has_coords or s is None:
            g = synthetic_grid(self.num_patches)
            return g if rows is None else g[rows]
        c = s.coords(rows)
        assert c is not None
        c = np.asarray(c)
        n = self.num_patches if rows is None else len(rows)
        if c.shape != (n, 2):
            raise self._where.error(f"coords have shape {c.shape}, expected ({n}, 2)", "coords")
        if np.issubdtype(c.dtype, np.integer):
            return c.astype(np.int64, copy=False)
        c = c.astype(np.float64, copy=False)
        if not np.isfinite(c).all():
            raise self._where.error("coords contain NaN/inf", "coords")
        if self.coord_unit == "px_level0" and np.all(c == np.floor(c)):
            c = c.astype(np.int64)
        return c

    def grid(self, coords: np.ndarray) -> np.ndarray:
        """Grid positions ``coords // patch_size_level0`` as float32."""
        return np.floor_divide(coords.astype(np.float64), self.patch_size_level0).astype(np.float32)

    def _read_failed(self, exc: Exception, field: str = "features") -> InputError:
        return self._where.error(f"{field} unreadable ({type(exc).__name__}: {exc})", field,
                                 hint="the file may be truncated or corrupt; re-extract it")


def synthetic_grid(n: int) -> np.ndarray:
    """Row ``i`` → ``(i % side, i // side)`` with ``side = ceil(sqrt(n))``: positions for bags without coordinates."""
    side = max(1, math.ceil(math.sqrt(n)))
    i = np.arange(n, dtype=np.int64)
    return np.stack([i % side, i // side], axis=1)


def _check_finite(x: np.ndarray, where: _Where, *, first_row: int = 0, rows: np.ndarray | None = None) -> None:
    """Raise if ``x`` holds NaN/inf (min/max propagate NaN and inf, so two fast reductions suffice)."""
    if x.size == 0 or (np.isfinite(x.min()) and np.isfinite(x.max())):
        return
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    ids = (rows[bad] if rows is not None else bad + first_row)[:5].tolist()
    raise where.error(f"{len(bad)} patch(es) with NaN/inf features, e.g. rows {ids}", "features",
                      hint="re-extract the slide's features")


# ---- metadata helpers ----------------------------------------------------------------------------------------------
def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        return _text(v.reshape(()).item())
    return str(v)


def _float_attr(v: Any) -> float | None:
    try:
        arr = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return float(arr[0]) if arr.size and np.isfinite(arr[0]) and arr[0] > 0 else None


def patch_size_from_attrs(attrs: Any) -> float | None:
    """Level-0 patch side from a coords dataset's attrs (TRIDENT, then CLAM legacy), or None."""
    ps0 = _float_attr(attrs.get("patch_size_level0"))
    if ps0 is not None:
        return ps0
    ps = _float_attr(attrs.get("patch_size"))
    if ps is None:
        return None
    down = _float_attr(attrs.get("downsample")) if "downsample" in attrs else None
    if down is not None:
        return ps * down
    level = attrs.get("patch_level")
    if level is not None and int(np.asarray(level).reshape(-1)[0]) == 0:
        return ps
    return None


def find_patches_h5(path: Path, slide_stem: str | None = None, patches_dir: Path | None = None) -> Path | None:
    """A CLAM/TRIDENT coordinates file for the slide: ``<dir>/patches/<stem>.h5`` or ``<stem>_patches.h5``.

    Looks in ``patches_dir`` first, then in a ``patches`` folder beside the feature file, its parent and grandparent
    (CLAM: ``<feat_dir>/h5_files/<slide>.h5`` ↔ ``<job>/patches/<slide>.h5``; TRIDENT:
    ``<run>/features_<enc>/<slide>.h5`` ↔ ``<run>/patches/<slide>_patches.h5``).
    """
    stem = slide_stem or path.stem
    dirs = [patches_dir] if patches_dir is not None else []
    dirs += [path.parent / "patches", path.parent.parent / "patches", path.parent.parent.parent / "patches"]
    for d in dirs:
        for name in (f"{stem}.h5", f"{stem}_patches.h5"):
            cand = d / name
            if cand.is_file() and cand.resolve() != path.resolve():
                return cand
    return None


def _patch_size_from_file(p: Path) -> float | None:
    try:
        with h5py.File(p, "r", locking=False) as f:
            return patch_size_from_attrs(f["coords"].attrs) if "coords" in f else None
    except OSError:
        return None


def _resolve_patch_size(
    attrs_value: float | None, where: _Where, *, patches_h5: Path | None, default: float | None,
) -> tuple[float, str]:
    if attrs_value is not None:
        return attrs_value, "attrs"
    if patches_h5 is not None:
        v = _patch_size_from_file(patches_h5)
        if v is not None:
            return v, "patches_file"
    if default is not None:
        return float(default), "default"
    warnings.warn(
        f"{where.file}: no patch_size_level0 in the coords attrs, no patches h5 beside it and no "
        "default_patch_size_level0 configured; using 1 (grid positions = raw coordinates)",
        stacklevel=3,
    )
    return 1.0, "fallback"


def _check_matrix(shape: tuple[int, ...], dtype: Any, where: _Where, key: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise where.error(f"{key} has shape {shape}, expected 2-D (num_patches, dim)", key,
                          hint="a slide-level embedding (1-D) is not a patch bag")
    try:
        ok = str(dtype) in ("bfloat16", "torch.bfloat16", "BF16") or np.issubdtype(np.dtype(dtype), np.floating)
    except TypeError:
        ok = False
    if not ok:
        raise where.error(f"{key} has dtype {dtype}, expected a float dtype", key)
    return int(shape[0]), int(shape[1])
