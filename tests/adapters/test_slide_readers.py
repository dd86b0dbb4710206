"""Readers of patch-embedding bags, each fed files written by the format's own library (h5py, torch, numpy,
safetensors) and the real CLAM coordinate files from ../shared/data (read from a temporary copy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from multimodal.adapters.slide_io import (
    detect_format,
    find_patches_h5,
    open_slide,
    read_clam_h5,
    read_npy,
    read_pt,
    read_safetensors,
    read_stamp_h5,
    read_trident_h5,
    synthetic_grid,
)
from multimodal.errors import InputError

RNG = np.random.default_rng(1234)


def write_trident(path: Path, feats: np.ndarray, coords: np.ndarray, *, ps0: int = 512, encoder: str = "conch_v15",
                  row_chunks: bool = True) -> Path:
    """A TRIDENT-layout features h5 (TRIDENT appends row by row: chunks (1, ...), maxshape (None, ...))."""
    with h5py.File(path, "w") as f:
        kw = {"chunks": (1, feats.shape[1]), "maxshape": (None, feats.shape[1])} if row_chunks else {}
        ds = f.create_dataset("features", data=feats, **kw)
        ds.attrs.update({"encoder": encoder, "name": path.stem, "savetodir": str(path.parent)})
        c = f.create_dataset("coords", data=coords.astype(np.int64), **({"chunks": (1, 2), "maxshape": (None, 2)}
                                                                          if row_chunks else {}))
        c.attrs.update({"patch_size": 256, "patch_size_level0": ps0, "level0_magnification": 40,
                        "target_magnification": 20, "overlap": 0, "name": path.stem})
    return path


def grid_coords(n: int, step: int) -> np.ndarray:
    i = np.arange(n)
    return np.stack([(i % 7) * step + 13, (i // 7) * step + 5], axis=1).astype(np.int64)


# ---- TRIDENT ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("row_chunks", [True, False])
def test_trident_h5_reads_float16_as_float32(tmp_path: Path, row_chunks: bool) -> None:
    feats = RNG.standard_normal((300, 24)).astype(np.float16)
    coords = grid_coords(300, 512)
    p = write_trident(tmp_path / "s1.h5", feats, coords, row_chunks=row_chunks)
    bag = read_trident_h5(p, patient_id="P1", slide_id="s1")
    assert (bag.num_patches, bag.dim, bag.encoder, bag.format) == (300, 24, "conch_v15", "trident")
    assert bag.patch_size_level0 == 512 and bag.patch_size_source == "attrs" and bag.has_coords
    full = bag.read_all(chunk=64)
    assert full.dtype == np.float32 and np.array_equal(full, feats.astype(np.float32))
    rows = np.array([0, 1, 2, 9, 40, 41, 250, 299])
    x, c = bag.read_with_coords(rows)
    assert np.array_equal(x, feats[rows].astype(np.float32))
    assert np.array_equal(c, coords[rows]) and c.dtype == np.int64
    assert np.array_equal(bag.grid(c), coords[rows] // 512)
    starts = [s for s, _ in bag.iter_chunks(128)]
    assert starts == [0, 128, 256]


def test_long_sampled_runs_are_split_but_exact(tmp_path: Path) -> None:
    feats = RNG.standard_normal((5000, 4)).astype(np.float32)
    p = write_trident(tmp_path / "big.h5", feats, grid_coords(5000, 256))
    rows = np.sort(RNG.choice(5000, 4000, replace=False))  # dense: merged runs longer than the span cap
    assert np.array_equal(read_trident_h5(p).read(rows), feats[rows])


def test_trident_float64_and_auto_detection(tmp_path: Path) -> None:
    feats = RNG.standard_normal((10, 5))
    p = write_trident(tmp_path / "s.h5", feats, grid_coords(10, 256), ps0=256)
    assert detect_format(p) == "trident"
    bag = open_slide(p)
    assert bag.format == "trident" and np.allclose(bag.read_all(), feats.astype(np.float32))


def test_bad_rows_argument_is_rejected(tmp_path: Path) -> None:
    p = write_trident(tmp_path / "s.h5", RNG.standard_normal((10, 3)).astype(np.float32), grid_coords(10, 256))
    bag = read_trident_h5(p)
    with pytest.raises(ValueError, match="sorted unique"):
        bag.read([3, 1])
    with pytest.raises(ValueError, match="sorted unique"):
        bag.read([10])


# ---- CLAM (real coordinate files) -------------------------------------------------------------------------------------
def test_clam_coords_attrs_from_real_file(shared_data: Path, tmp_path: Path) -> None:
    src = sorted((shared_data / "clam_coords").glob("*.h5"))[0]
    p = tmp_path / "h5_files" / src.name
    p.parent.mkdir()
    shutil.copy(src, p)  # a temporary copy only; features added with h5py
    with h5py.File(p, "a") as f:
        n = f["coords"].shape[0]
        f.create_dataset("features", data=RNG.standard_normal((n, 16)).astype(np.float32))
        coords = f["coords"][()]
        assert int(f["coords"].attrs["patch_size"]) == 512 and int(f["coords"].attrs["patch_level"]) == 0
    assert detect_format(p) == "clam_h5"
    bag = open_slide(p, patient_id="TCGA-x", slide_id=src.stem)
    assert bag.format == "clam_h5" and bag.encoder is None
    assert bag.patch_size_level0 == 512.0 and bag.patch_size_source == "attrs"
    assert np.array_equal(bag.coords(), coords)
    assert np.array_equal(bag.grid(bag.coords()), (coords // 512).astype(np.float32))


def test_clam_features_without_attrs_use_sibling_patches_file(shared_data: Path, tmp_path: Path) -> None:
    src = sorted((shared_data / "clam_coords").glob("*.h5"))[-1]
    (tmp_path / "patches").mkdir()
    shutil.copy(src, tmp_path / "patches" / src.name)  # CLAM: <job>/patches/<slide>.h5
    with h5py.File(src, "r") as f:
        coords = f["coords"][()].astype(np.int32)  # CLAM's extract_features_fp writes int32 coords, no attrs
    feat_dir = tmp_path / "feats" / "h5_files"
    feat_dir.mkdir(parents=True)
    p = feat_dir / src.name
    with h5py.File(p, "w") as f:
        f["features"] = RNG.standard_normal((len(coords), 8)).astype(np.float32)
        f["coords"] = coords
    auto = read_clam_h5(p)  # found by looking for a `patches` folder up to three levels above the features
    assert auto.patch_size_level0 == 512.0 and auto.patch_size_source == "patches_file"
    elsewhere = tmp_path / "job" / "patches"
    elsewhere.mkdir(parents=True)
    shutil.move(tmp_path / "patches" / src.name, elsewhere / src.name)
    with pytest.warns(UserWarning, match="patch_size_level0"):
        assert read_clam_h5(p).patch_size_source == "fallback"
    bag = read_clam_h5(p, patches_dir=elsewhere)
    assert bag.patch_size_level0 == 512.0 and bag.patch_size_source == "patches_file"
    assert bag.coords().dtype == np.int64
    assert find_patches_h5(p, patches_dir=elsewhere) == elsewhere / src.name
    explicit = read_clam_h5(p, patches_h5=elsewhere / src.name)
    assert explicit.patch_size_level0 == 512.0


def test_clam_without_any_patch_size_uses_default_then_warns(tmp_path: Path) -> None:
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        f["features"] = RNG.standard_normal((4, 3)).astype(np.float32)
        f["coords"] = np.array([[0, 0], [224, 0], [0, 224], [224, 224]], dtype=np.int32)
    assert read_clam_h5(p, default_patch_size_level0=224).patch_size_level0 == 224
    with pytest.warns(UserWarning, match="patch_size_level0"):
        bag = read_clam_h5(p)
    assert bag.patch_size_level0 == 1.0 and bag.patch_size_source == "fallback"


def test_trident_patches_sibling_layout(tmp_path: Path) -> None:
    run = tmp_path / "20x_256px_0px_overlap"
    (run / "patches").mkdir(parents=True)
    (run / "features_uni_v1").mkdir()
    coords = grid_coords(6, 512)
    with h5py.File(run / "patches" / "slideA_patches.h5", "w") as f:
        f.create_dataset("coords", data=coords).attrs["patch_size_level0"] = 512
    with h5py.File(run / "features_uni_v1" / "slideA.h5", "w") as f:
        f["features"] = RNG.standard_normal((6, 4)).astype(np.float32)
        f["coords"] = coords
    bag = open_slide(run / "features_uni_v1" / "slideA.h5")
    assert bag.patch_size_level0 == 512 and bag.patch_size_source == "patches_file"


# ---- STAMP -----------------------------------------------------------------------------------------------------------
def test_stamp_h5_micrometre_coords(tmp_path: Path) -> None:
    feats = RNG.standard_normal((12, 6)).astype(np.float16)
    coords_um = (grid_coords(12, 1) * 256.0).astype(np.float32)
    p = tmp_path / "st.h5"
    with h5py.File(p, "w") as f:
        f["coords"] = coords_um
        f["feats"] = feats
        f.attrs.update({"extractor": "uni2", "unit": "um", "tile_size_um": 256.0, "tile_size_px": 224})
    assert detect_format(p) == "stamp"
    bag = read_stamp_h5(p)
    assert (bag.encoder, bag.coord_unit, bag.patch_size_level0) == ("uni2", "um", 256.0)
    assert np.array_equal(bag.read_all(), feats.astype(np.float32))
    assert np.array_equal(bag.grid(bag.coords()), np.floor(coords_um / 256.0))


def test_stamp_without_coords_gets_synthetic_grid(tmp_path: Path) -> None:
    p = tmp_path / "st.h5"
    with h5py.File(p, "w") as f:
        f["feats"] = RNG.standard_normal((5, 3)).astype(np.float32)
        f.attrs["encoder"] = "ctranspath"
    bag = open_slide(p, "stamp")
    assert not bag.has_coords and bag.encoder == "ctranspath"
    assert np.array_equal(bag.coords(), synthetic_grid(5))


# ---- .pt / .npy / .safetensors -----------------------------------------------------------------------------------------
def test_pt_plain_tensor(tmp_path: Path) -> None:
    t = torch.randn(11, 7, dtype=torch.bfloat16)
    torch.save(t, tmp_path / "s.pt")
    bag = read_pt(tmp_path / "s.pt", patient_id="P", slide_id="s")
    assert (bag.num_patches, bag.dim, bag.has_coords, bag.coord_unit) == (11, 7, False, "grid")
    assert torch.equal(torch.from_numpy(bag.read_all()), t.float())
    assert np.array_equal(bag.read([2, 5]), t.float().numpy()[[2, 5]])
    assert np.array_equal(bag.coords(), synthetic_grid(11)) and bag.patch_size_level0 == 1.0


def test_pt_pickled_object_refused(tmp_path: Path) -> None:
    torch.save({"features": torch.randn(3, 2), "extra": object()}, tmp_path / "bad.pt")
    with pytest.raises(InputError) as ei:
        read_pt(tmp_path / "bad.pt", patient_id="P9")
    assert ei.value.patient == "P9" and ei.value.field == "features" and "bad.pt" in str(ei.value.file)


def test_npy_memmap(tmp_path: Path) -> None:
    x = RNG.standard_normal((20, 5)).astype(np.float16)
    np.save(tmp_path / "s.npy", x)
    bag = open_slide(tmp_path / "s.npy")
    assert bag.format == "npy" and bag.dtype == "float16"
    assert np.array_equal(bag.read([0, 19]), x[[0, 19]].astype(np.float32))
    assert np.array_equal(bag.read_all(chunk=6), x.astype(np.float32))


def test_npy_object_array_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickled|readable"):
        read_npy(tmp_path / "o.npy")


def test_safetensors_with_and_without_coords(tmp_path: Path) -> None:
    t = torch.randn(9, 4, dtype=torch.float16)
    c = torch.from_numpy(grid_coords(9, 448))
    save_file({"features": t, "coords": c}, str(tmp_path / "a.safetensors"),
              metadata={"encoder": "virchow2", "patch_size_level0": "448"})
    bag = open_slide(tmp_path / "a.safetensors")
    assert (bag.encoder, bag.patch_size_level0, bag.has_coords) == ("virchow2", 448.0, True)
    assert np.array_equal(bag.read([1, 2, 8]), t.float().numpy()[[1, 2, 8]])
    assert np.array_equal(bag.coords([1, 8]), c.numpy()[[1, 8]])
    save_file({"features": t}, str(tmp_path / "b.safetensors"))
    bag2 = read_safetensors(tmp_path / "b.safetensors")
    assert not bag2.has_coords and np.array_equal(bag2.read_all(), t.float().numpy())


# ---- errors name file, patient and field -------------------------------------------------------------------------------
def _err(fn, *a, **kw) -> InputError:  # noqa: ANN001
    with pytest.raises(InputError) as ei:
        fn(*a, **kw)
    return ei.value


def test_missing_features_key(tmp_path: Path) -> None:
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        f["coords"] = np.zeros((3, 2), dtype=np.int64)
    e = _err(read_trident_h5, p, patient_id="P1", slide_id="s")
    assert (e.file, e.patient, e.field) == (str(p), "P1", "features")
    e = _err(detect_format, p, patient_id="P1")
    assert e.field == "features"


def test_missing_coords_key(tmp_path: Path) -> None:
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        f["features"] = np.zeros((3, 2), dtype=np.float32)
    e = _err(read_trident_h5, p, patient_id="P1")
    assert e.field == "coords" and e.patient == "P1"


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4)])
def test_features_not_2d(tmp_path: Path, shape: tuple[int, ...]) -> None:
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        f["features"] = np.zeros(shape, dtype=np.float32)
        f["coords"] = np.zeros((shape[0], 2), dtype=np.int64)
    e = _err(read_clam_h5, p, patient_id="P2")
    assert e.field == "features" and "2-D" in str(e) and e.file == str(p)


def test_integer_features_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "i.npy", np.zeros((3, 2), dtype=np.int64))
    e = _err(read_npy, tmp_path / "i.npy", patient_id="P3")
    assert e.field == "features" and "float" in str(e)


def test_coords_shape_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        f["features"] = np.zeros((4, 2), dtype=np.float32)
        f["coords"] = np.zeros((3, 2), dtype=np.int64)
    e = _err(read_trident_h5, p, patient_id="P4")
    assert e.field == "coords"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_flagged_only_when_read(tmp_path: Path, bad: float) -> None:
    feats = RNG.standard_normal((50, 4)).astype(np.float32)
    feats[17, 2] = bad
    p = write_trident(tmp_path / "s.h5", feats, grid_coords(50, 256))
    bag = read_trident_h5(p, patient_id="P5", slide_id="s")
    assert bag.read([0, 16, 18]).shape == (3, 4)  # the bad row is not read: fine
    e = _err(bag.read, [3, 17])
    assert (e.patient, e.field) == ("P5", "features") and "17" in str(e)
    e = _err(bag.read_all, chunk=8)
    assert "17" in str(e) and e.file == str(p)


@pytest.mark.parametrize("kind", ["h5", "pt", "npy", "safetensors"])
def test_truncated_files(tmp_path: Path, kind: str) -> None:
    x = RNG.standard_normal((400, 32)).astype(np.float32)
    p = tmp_path / f"s.{kind}"
    if kind == "h5":
        write_trident(p, x, grid_coords(400, 256), row_chunks=False)
    elif kind == "pt":
        torch.save(torch.from_numpy(x), p)
    elif kind == "npy":
        np.save(p, x)
    else:
        save_file({"features": torch.from_numpy(x)}, str(p))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as ei:
        bag = open_slide(p, patient_id="P6", slide_id="s")
        bag.read_all()
    assert ei.value.patient == "P6" and ei.value.file == str(p) and ei.value.field in ("path", "features")


def test_unknown_suffix_and_format(tmp_path: Path) -> None:
    p = tmp_path / "s.zarr"
    p.write_text("x")
    assert _err(open_slide, p, patient_id="P7").field == "format"
    assert _err(open_slide, tmp_path / "s.h5", "tiff", patient_id="P7").field == "format"
    assert _err(open_slide, tmp_path / "nothere.h5", patient_id="P7").field == "path"


def test_empty_bag_is_readable(tmp_path: Path) -> None:
    p = write_trident(tmp_path / "e.h5", np.zeros((0, 8), np.float32), np.zeros((0, 2), np.int64))
    bag = open_slide(p)
    assert bag.num_patches == 0 and bag.dim == 8
    assert bag.read_all().shape == (0, 8) and bag.coords().shape == (0, 2)
    assert list(bag.iter_chunks()) == []


def test_synthetic_grid_is_square_ish_and_unique() -> None:
    g = synthetic_grid(10)
    assert g.shape == (10, 2) and len({tuple(r) for r in g.tolist()}) == 10
    assert g[:, 0].max() == 3 and g[:, 1].max() == 2  # side ceil(sqrt(10)) = 4


# ---- raw fast path for one-row-per-chunk files ------------------------------------------------------------------------
def write_incremental(path: Path, x: np.ndarray, *, batch: int = 700, compression: str | None = None) -> Path:
    """TRIDENT's writer appends batch by batch to resizable (1, ...)-chunked datasets: features and coords chunks
    interleave in the file, so the features' chunks form several back-to-back runs."""
    n, d = x.shape
    with h5py.File(path, "w") as f:
        fds = f.create_dataset("features", shape=(0, d), maxshape=(None, d), chunks=(1, d), dtype=x.dtype,
                               compression=compression)
        cds = f.create_dataset("coords", shape=(0, 2), maxshape=(None, 2), chunks=(1, 2), dtype=np.int64)
        cds.attrs["patch_size_level0"] = 512
        for s in range(0, n, batch):
            e = min(s + batch, n)
            fds.resize(e, axis=0)
            fds[s:e] = x[s:e]
            cds.resize(e, axis=0)
            cds[s:e] = grid_coords(n, 512)[s:e]
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_row_chunked_raw_reads_match_hdf5(tmp_path: Path, dtype: type) -> None:
    from multimodal.adapters.slide_io import _raw_index

    x = RNG.standard_normal((3000, 12)).astype(dtype)
    p = write_incremental(tmp_path / "inc.h5", x)
    with h5py.File(p, "r") as f:
        idx = _raw_index(p, f["features"])
    assert idx is not None and len(idx.runs) > 1 and int(idx.runs[:, 2].sum()) == 3000
    bag = open_slide(p)
    assert np.array_equal(bag.read_all(chunk=1100), x.astype(np.float32))  # chunks straddle the runs
    rows = np.sort(RNG.choice(3000, 300, replace=False))
    assert np.array_equal(bag.read(rows), x[rows].astype(np.float32))


def test_compressed_row_chunks_fall_back_to_hdf5(tmp_path: Path) -> None:
    from multimodal.adapters.slide_io import _raw_index

    x = RNG.standard_normal((1500, 8)).astype(np.float32)
    p = write_incremental(tmp_path / "gz.h5", x, compression="gzip")
    with h5py.File(p, "r") as f:
        assert _raw_index(p, f["features"]) is None
    assert np.array_equal(open_slide(p).read_all(), x)


@pytest.mark.parametrize("chunks", [None, (64, 10), (7, 10)])
def test_raw_reads_on_block_layouts(tmp_path: Path, chunks: tuple[int, int] | None) -> None:
    from multimodal.adapters.slide_io import _raw_index

    x = RNG.standard_normal((1000, 10)).astype(np.float32)  # 1000 is not a multiple of 64 or 7: a partial edge chunk
    p = tmp_path / "b.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("features", data=x, chunks=chunks)
        f.create_dataset("coords", data=grid_coords(1000, 256)).attrs["patch_size_level0"] = 256
    with h5py.File(p, "r") as f:
        assert _raw_index(p, f["features"]) is not None
    bag = open_slide(p)
    rows = np.array([0, 5, 6, 63, 64, 65, 500, 998, 999])
    assert np.array_equal(bag.read(rows), x[rows])
    assert np.array_equal(bag.read_all(chunk=300), x)


def test_pt_legacy_serialization_still_loads(tmp_path: Path) -> None:
    t = torch.randn(6, 3)
    torch.save(t, tmp_path / "old.pt", _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    assert np.array_equal(open_slide(tmp_path / "old.pt").read_all(), t.numpy())
