"""Lazy readers for patch-embedding bags: TRIDENT / CLAM / STAMP h5, ``.pt``, ``.npy`` and ``.safetensors``.

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

import contextlib
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from multimodal.errors import InputError

#: Format names accepted in ``SlideRef.format`` (after aliases), besides ``"auto"``.
FORMATS = ("trident", "clam_h5", "stamp", "pt", "npy", "safetensors")
_ALIASES = {"clam": "clam_h5", "clam_pt": "pt", "trident_pt": "pt", "stamp_h5": "stamp", "h5": "auto", "auto": "auto"}
_SUFFIX = {".pt": "pt", ".pth": "pt", ".npy": "npy", ".safetensors": "safetensors", ".h5": "h5", ".hdf5": "h5"}

#: Runs of wanted rows closer than this are read as one slice (cheaper than one read call per row).
_MAX_GAP = 8
#: Upper bound on the rows one slice read may span (bounds the temporary buffer).
_MAX_SPAN = 2048


# ---- error helper ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Where:
    file: Path
    patient: str | None = None
    slide: str | None = None

    def error(self, message: str, field: str, hint: str | None = None) -> InputError:
        prefix = f"slide {self.slide!r}: " if self.slide else ""
        return InputError(prefix + message, file=self.file, patient=self.patient, field=field, hint=hint)


# ---- row-reading sessions (one open file) -------------------------------------------------------------------------
class _Session(Protocol):
    def read_range(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray: ...

    def read_rows(self, rows: np.ndarray) -> np.ndarray: ...

    def coords(self, rows: np.ndarray | None = None) -> np.ndarray | None: ...


def _gather_runs(
    rows: np.ndarray, width: int, read_range: Callable[[int, int], np.ndarray], dtype: Any = np.float32,
) -> np.ndarray:
    """Read sorted ``rows`` as few contiguous slices (merging gaps <= _MAX_GAP, spans <= _MAX_SPAN)."""
    out = np.empty((len(rows), width), dtype=dtype)
    if len(rows) == 0:
        return out
    cut = np.flatnonzero(np.diff(rows) > _MAX_GAP) + 1
    for seg in np.split(np.arange(len(rows)), cut):
        i = 0
        while i < len(seg):  # split long runs so one slice never spans more than _MAX_SPAN rows
            lo = int(rows[seg[i]])
            j = int(np.searchsorted(rows[seg], lo + _MAX_SPAN, side="left"))
            part = seg[i:j]
            hi = int(rows[part[-1]]) + 1
            block = read_range(lo, hi)
            out[part[0] : part[-1] + 1] = block if hi - lo == len(part) else block[rows[part] - lo]
            i = j
    return out


class _H5Session:
    """Reads from an open h5 file.

    Uncompressed numeric data (contiguous, or chunked in full-width row blocks, e.g. TRIDENT's one row per chunk) is
    read straight from the file at the rows' byte offsets (see :class:`_RawIndex`); anything else goes through
    HDF5: one fancy-indexed H5Dread on a contiguous layout, merged contiguous runs on a chunked one.
    """

    def __init__(self, path: Path, f: h5py.File, feat_key: str, coords_key: str | None) -> None:
        self.path = path
        self.ds = f[feat_key]
        self.cds = f[coords_key] if coords_key is not None else None
        self.dim = int(self.ds.shape[1])
        self._cast = self.ds.astype(np.float32) if self.ds.dtype != np.float32 else self.ds
        self._raw: _RawIndex | None = _raw_index(path, self.ds)
        self._craw: _RawIndex | None = None if self.cds is None else _raw_index(path, self.cds)
        self._fh: Any = None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def read_range(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty((stop - start, self.dim), dtype=np.float32)
        if stop <= start:
            return out
        if self._raw is not None:
            self._raw.read(self._file(), start, stop, out)
        else:
            self.ds.read_direct(out, source_sel=np.s_[start:stop])  # HDF5 converts f16/f64 -> f32 while reading
        return out

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        if self._raw is None and self.ds.chunks is None:  # contiguous but not raw-readable: one H5Dread
            return np.asarray(self._cast[rows], dtype=np.float32)
        return _gather_runs(rows, self.dim, lambda a, b: self.read_range(a, b))

    def coords(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        if self.cds is None:
            return None
        raw = self._craw
        if rows is None:
            n = int(self.cds.shape[0])
            return self.cds[()] if raw is None else raw.read(self._file(), 0, n, np.empty((n, 2), raw.dtype))
        if raw is not None:
            return _gather_runs(rows, 2, lambda a, b: raw.read(self._file(), a, b, np.empty((b - a, 2), raw.dtype)),
                                dtype=raw.dtype)
        if _row_chunked(self.cds):
            return _gather_runs(rows, 2, lambda a, b: self.cds[a:b], dtype=self.cds.dtype)
        return self.cds[rows]

    def _file(self) -> Any:
        if self._fh is None:
            self._fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
        return self._fh


def _row_chunked(ds: h5py.Dataset) -> bool:
    return ds.chunks is not None and ds.chunks[0] == 1


# ---- raw reads of uncompressed numeric data ---------------------------------------------------------------------------
# HDF5 spends ~15 us per chunk and ~50 us per read call, so TRIDENT's one-row-per-chunk bags read at ~0.3 GB/s and a
# sampled read costs one call per row. Unfiltered data hold each row's bytes verbatim, so rows can be read straight
# from the file at their byte offsets, coalescing chunks that lie back to back. The index (runs of adjacent storage)
# is built once per file (H5Dchunk_iter) and cached by (path, mtime, size); any surprise means "use HDF5".
# Least recently used entries go first; bounded both by run-table size and by entry count (each entry also costs
# ~1 KB of Python objects, so streaming 100k slides through `predict` would otherwise grow memory by ~100 MB).
_RAW_CACHE: OrderedDict[tuple[Any, ...], _RawIndex | None] = OrderedDict()
_RAW_CACHE_MAX_RUNS = 4_000_000  # ~96 MB of run tables at most
_RAW_CACHE_MAX_ENTRIES = 4096


@dataclass(frozen=True)
class _RawIndex:
    """Storage runs ``[first_row, byte_offset, num_rows]`` (sorted, covering rows 0..N-1) of one dataset."""

    runs: np.ndarray
    row_bytes: int
    dtype: np.dtype
    dim: int

    def read(self, fh: Any, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows [start, stop) into ``out`` ((stop - start, dim), C-contiguous; cast if its dtype differs)."""
        same = self.dtype == out.dtype
        first = int(np.searchsorted(self.runs[:, 0], start, side="right")) - 1
        last = int(np.searchsorted(self.runs[:, 0], stop, side="left"))
        for r0, off, ln in self.runs[first:last].tolist():
            a, b = max(start, r0), min(stop, r0 + ln)
            dest = out[a - start : b - start]
            buf = dest if same else np.empty((b - a, self.dim), dtype=self.dtype)
            mv = memoryview(buf).cast("B")
            fh.seek(off + (a - r0) * self.row_bytes)
            got = 0
            while got < len(mv):
                k = fh.readinto(mv[got:])
                if not k:
                    msg = f"unexpected end of file reading rows {a}..{b}"
                    raise OSError(msg)
                got += k
            if not same:
                dest[...] = buf
        return out


def _raw_index(path: Path, ds: h5py.Dataset) -> _RawIndex | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size, ds.name)
    if key in _RAW_CACHE:
        _RAW_CACHE.move_to_end(key)
        return _RAW_CACHE[key]
    try:
        idx = _build_raw_index(ds)
    except Exception:  # noqa: BLE001 (older HDF5 without chunk_iter, odd storage): use HDF5 reads
        idx = None
    if sum(len(v.runs) for v in _RAW_CACHE.values() if v is not None) > _RAW_CACHE_MAX_RUNS:
        _RAW_CACHE.clear()
    while len(_RAW_CACHE) >= _RAW_CACHE_MAX_ENTRIES:
        _RAW_CACHE.popitem(last=False)
    _RAW_CACHE[key] = idx
    return idx


def _build_raw_index(ds: h5py.Dataset) -> _RawIndex | None:
    dt = ds.dtype
    if dt.kind not in "fiu" or dt.byteorder not in ("=", "<", "|") or ds.ndim != 2 or ds.shape[0] == 0:
        return None
    if ds.id.get_create_plist().get_nfilters() != 0 or ds.external or ds.is_virtual or ds.file.userblock_size:
        return None
    n, d = int(ds.shape[0]), int(ds.shape[1])
    row_bytes = d * dt.itemsize
    if ds.chunks is None:  # contiguous layout: one run
        off = ds.id.get_offset()
        return None if off is None else _RawIndex(np.array([[0, off, n]], dtype=np.int64), row_bytes, dt, d)
    rows_per_chunk = int(ds.chunks[0])
    if tuple(ds.chunks) != (rows_per_chunk, d):
        return None  # chunks split the rows: not worth it
    nchunks = -(-n // rows_per_chunk)
    if nchunks > 4_000_000:
        return None
    first = np.empty(nchunks, dtype=np.int64)
    offs = np.empty(nchunks, dtype=np.int64)
    state = [0, True]
    chunk_bytes = rows_per_chunk * row_bytes

    def visit(info: Any) -> None:
        i = state[0]
        if i >= nchunks or info.filter_mask != 0 or info.size != chunk_bytes or info.byte_offset is None:
            state[1] = False
            return
        first[i], offs[i] = info.chunk_offset[0], info.byte_offset
        state[0] = i + 1

    ds.id.chunk_iter(visit)
    if not state[1] or state[0] != nchunks:
        return None  # unallocated (fill-value) chunks or unexpected chunk sizes
    order = np.argsort(first, kind="stable")
    first, offs = first[order], offs[order]
    if not np.array_equal(first, np.arange(nchunks, dtype=np.int64) * rows_per_chunk):
        return None
    brk = np.flatnonzero(np.diff(offs) != chunk_bytes) + 1
    starts = np.concatenate([[0], brk]).astype(np.int64)
    row0 = first[starts]
    row_end = np.concatenate([first[brk], [n]])
    return _RawIndex(np.stack([row0, offs[starts], row_end - row0], axis=1), row_bytes, dt, d)


class _ArraySession:
    """Any array-like indexable by slices (np.memmap, memory-mapped torch tensor, safetensors slice)."""

    def __init__(self, arr: Any, to_numpy: Callable[[Any], np.ndarray], coords: Any = None) -> None:
        self.arr = arr
        self.to_numpy = to_numpy
        self._coords = coords

    def read_range(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        x = self.to_numpy(self.arr[start:stop])
        if out is None:
            return x
        out[...] = x
        return out

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        return _gather_runs(rows, int(self.arr.shape[1]), lambda a, b: self.read_range(a, b))

    def coords(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        if self._coords is None:
            return None
        c = self._coords() if callable(self._coords) else self._coords
        c = c.numpy() if hasattr(c, "numpy") else np.asarray(c)
        return c if rows is None else c[rows]


def _torch_to_numpy(t: Any) -> np.ndarray:
    import torch

    return t.to(torch.float32).numpy() if t.dtype != torch.float32 else t.clone().numpy()


# ---- backends (paths only: picklable, no open handles) ------------------------------------------------------------
@dataclass(frozen=True)
class _H5Backend:
    path: Path
    feat_key: str
    coords_key: str | None

    @contextlib.contextmanager
    def session(self) -> Iterator[_Session]:
        with h5py.File(self.path, "r", locking=False) as f:
            s = _H5Session(self.path, f, self.feat_key, self.coords_key)
            try:
                yield s
            finally:
                s.close()


@dataclass(frozen=True)
class _PtBackend:
    path: Path

    @contextlib.contextmanager
    def session(self) -> Iterator[_Session]:
        feats, coords = _load_pt(self.path)
        yield _ArraySession(feats, _torch_to_numpy, coords)


@dataclass(frozen=True)
class _NpyBackend:
    path: Path

    @contextlib.contextmanager
    def session(self) -> Iterator[_Session]:
        arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        yield _ArraySession(arr, lambda a: np.array(a, dtype=np.float32))
        del arr


@dataclass(frozen=True)
class _SafetensorsBackend:
    path: Path
    has_coords: bool

    @contextlib.contextmanager
    def session(self) -> Iterator[_Session]:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            coords = (lambda: f.get_tensor("coords")) if self.has_coords else None
            yield _ArraySession(_SliceView(f.get_slice("features")), _torch_to_numpy, coords)


class _SliceView:
    """Gives a safetensors slice the ``.shape`` that :class:`_ArraySession` expects."""

    def __init__(self, sl: Any) -> None:
        self.sl = sl
        self.shape = tuple(sl.get_shape())

    def __getitem__(self, item: slice) -> Any:
        return self.sl[item]


class _Backend(Protocol):
    def session(self) -> contextlib.AbstractContextManager[_Session]: ...


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
            raise where.error(f"no {feat_key!r} dataset (keys: {sorted(f.keys())})", feat_key,
                              hint=f"is this a {flavour} feature file? set the slide's format explicitly")
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


def _load_pt(path: Path) -> tuple[Any, Any]:
    """``torch.load(weights_only=True)`` memory-mapped: a plain tensor, or a dict with ``features`` [+ ``coords``]."""
    import torch

    try:
        obj = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except RuntimeError as exc:  # legacy (non-zip) serialization cannot be memory-mapped
        if "mmap" not in str(exc).lower() and "zip" not in str(exc).lower():
            raise
        obj = torch.load(path, weights_only=True, map_location="cpu")
    if isinstance(obj, torch.Tensor):
        return obj, None
    if isinstance(obj, dict) and isinstance(obj.get("features"), torch.Tensor):
        c = obj.get("coords")
        return obj["features"], c if isinstance(c, torch.Tensor) else None
    msg = f"expected a tensor or a dict with 'features', got {type(obj).__name__}"
    raise TypeError(msg)


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
                          hint="expected a TRIDENT/CLAM (features, coords) or STAMP (feats) file")


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
