"""How slide features are read: row-reading sessions on one open file (h5py, a raw reader of uncompressed HDF5
chunks, in-memory arrays for ``.pt`` / ``.npy`` / ``.safetensors``) and picklable backends that open them.

Used by :class:`~multimodal.cohorts.formats.slide_bag.SlideBag`; see :mod:`multimodal.cohorts.formats.slides`.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from multimodal.errors import InputError

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
