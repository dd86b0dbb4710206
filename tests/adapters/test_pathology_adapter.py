"""PathologyAdapter on tiny cohorts of real TRIDENT/CLAM/.pt files written with h5py / torch."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from multimodal.adapters.base import Adapter
from multimodal.adapters.pathology import PathologyAdapter, PathologyAdapterConfig
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.sources import SlideRef, SlideSource
from multimodal.config import from_dict
from multimodal.errors import ConfigError, InputError
from multimodal.registry import ADAPTERS
from multimodal.types import collate_streams

D = 16


def write_slide(path: Path, n: int, *, dim: int = D, ps0: int = 256, encoder: str | None = "uni_v1",
                seed: int = 0, center: np.ndarray | None = None, dtype: type = np.float16) -> Path:
    """A TRIDENT-layout h5: features (n, dim) (float16 by default), coords on a grid of step ps0 with attrs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    if center is not None:
        x = x * 0.05 + center
    i = np.arange(n)
    coords = np.stack([(i % 9) * ps0 + 7, (i // 9) * ps0 + 3], axis=1).astype(np.int64)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("features", data=x.astype(dtype), chunks=(1, dim) if n else None,
                              maxshape=(None, dim))
        if encoder is not None:
            ds.attrs["encoder"] = encoder
        c = f.create_dataset("coords", data=coords, chunks=(1, 2) if n else None, maxshape=(None, 2))
        c.attrs.update({"patch_size_level0": ps0, "patch_size": 256})
    return path


def make_cohort(root: Path, sizes: dict[str, list[int]], **kw) -> Cohort:  # noqa: ANN003
    """Patients → slide sizes; slide j of each patient has patch size 256 * (j + 1)."""
    slides = {}
    for pi, (pid, ns) in enumerate(sizes.items()):
        refs = []
        for j, n in enumerate(ns):
            p = write_slide(root / f"{pid}_s{j}.h5", n, ps0=256 * (j + 1), seed=100 * pi + j, **kw)
            refs.append(SlideRef(pid, f"{pid}_s{j}", p, "trident"))
        slides[pid] = tuple(refs)
    ids = list(sizes)
    patients = pd.DataFrame({"time": np.arange(1.0, len(ids) + 1), "event": [True, False] * (len(ids) // 2)
                             + [True] * (len(ids) % 2)}, index=ids)
    return Cohort(name="tiny", patients=patients, modalities={"pathology": SlideSource(slides=slides)})


def read_source(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["features"][()].astype(np.float32), f["coords"][()]


@pytest.fixture
def cohort(tmp_path: Path) -> Cohort:
    return make_cohort(tmp_path, {"P0": [300, 120], "P1": [80], "P2": [200, 50, 10], "P3": [60], "P4": [90, 40]})


TRAIN = ["P0", "P1", "P2"]
HELD_OUT = ["P3", "P4"]


# ---- registry and config ---------------------------------------------------------------------------------------------------
def test_registered_and_configurable() -> None:
    assert "pathology" in ADAPTERS  # (create_adapter would also import the model package: slow, not needed here)
    a = ADAPTERS.create("pathology", max_patches=7)
    assert isinstance(a, PathologyAdapter) and a.config.max_patches == 7
    with pytest.raises(ConfigError, match="max_patchs"):
        from_dict(PathologyAdapterConfig, {"max_patchs": 3})
    with pytest.raises(ConfigError) as ei:
        PathologyAdapterConfig(prototypes=-1)
    assert ei.value.field == "prototypes"


# ---- transform -------------------------------------------------------------------------------------------------------------
def test_inference_returns_whole_bag_with_slide_index_and_grid(cohort: Cohort) -> None:
    a = PathologyAdapter(max_patches=64, inference_chunk=50).fit(cohort, TRAIN)
    s = a.transform("P2")
    refs = cohort.modalities["pathology"].slides["P2"]
    assert s.features.shape == (1, 260, D) and s.features.dtype == torch.float32 and bool(s.mask.all())
    off = 0
    for j, ref in enumerate(refs):
        x, c = read_source(ref.path)
        n = len(x)
        assert torch.equal(s.features[0, off : off + n], torch.from_numpy(x))
        assert bool((s.slide_index[0, off : off + n] == j).all())
        ps0 = 256 * (j + 1)  # a different patch size per slide
        assert torch.equal(s.positions[0, off : off + n], torch.from_numpy((c // ps0).astype(np.float32)))
        assert np.array_equal(s.meta["coords_level0"][off : off + n], c)
        assert s.names[0][off] == f"{ref.slide_id}@{c[0, 0]},{c[0, 1]}"
        off += n
    assert s.meta["slide_ids"] == ["P2_s0", "P2_s1", "P2_s2"]
    assert s.meta["patch_size_level0"] == [256.0, 512.0, 768.0]
    assert a.num_tokens_hint("P2") == 260


def test_train_sampling_is_seeded_bounded_and_proportional(cohort: Cohort) -> None:
    a = PathologyAdapter(max_patches=100).fit(cohort, TRAIN)
    s1 = a.transform("P0", train=True, seed=5)
    s2 = a.transform("P0", train=True, seed=5)
    s3 = a.transform("P0", train=True, seed=6)
    assert s1.num_tokens == 100
    assert torch.equal(s1.features, s2.features) and s1.names == s2.names
    assert not torch.equal(s1.features, s3.features)
    counts = torch.bincount(s1.slide_index[0], minlength=2).tolist()
    assert sum(counts) == 100 and counts[0] > counts[1] > 0  # 300 vs 120 patches
    refs = cohort.modalities["pathology"].slides["P0"]
    rows, sidx = s1.meta["patch_rows"], s1.slide_index[0].numpy()
    for j, ref in enumerate(refs):  # each sampled token is the right row of the right file
        x, c = read_source(ref.path)
        r = rows[sidx == j]
        assert np.all(np.diff(r) > 0)
        assert torch.equal(s1.features[0, torch.from_numpy(sidx == j)], torch.from_numpy(x[r]))
        assert np.array_equal(s1.meta["coords_level0"][sidx == j], c[r])


def test_train_with_small_bag_returns_all(cohort: Cohort) -> None:
    a = PathologyAdapter(max_patches=1000).fit(cohort, TRAIN)
    assert torch.equal(a.transform("P2", train=True, seed=1).features, a.transform("P2").features)


def test_missing_patient_gives_empty_stream_that_collates(cohort: Cohort, tmp_path: Path) -> None:
    extra = Cohort(name="x", patients=pd.DataFrame({"time": [1.0, 2.0], "event": [True, False]}, index=["P0", "Q"]),
                   modalities={"pathology": SlideSource(slides={"P0": cohort.modalities["pathology"].slides["P0"]})})
    a = PathologyAdapter(max_patches=32).fit(cohort, TRAIN).bind(extra)
    e = a.transform("Q")
    assert e.num_tokens == 0 and e.features.shape == (1, 0, D) and e.positions is not None
    batch = collate_streams([a.transform("P0", train=True, seed=0), e])
    assert batch.mask.shape == (2, 32) and not bool(batch.mask[1].any())


def test_iter_patch_chunks_cover_the_bag(cohort: Cohort) -> None:
    a = PathologyAdapter().fit(cohort, TRAIN)
    chunks = list(a.iter_patch_chunks("P0", chunk=64))
    assert all(c.num_tokens <= 64 for c in chunks)
    full = a.transform("P0")
    assert torch.equal(torch.cat([c.features for c in chunks], dim=1), full.features)
    assert torch.equal(torch.cat([c.positions for c in chunks], dim=1), full.positions)
    assert torch.equal(torch.cat([c.slide_index for c in chunks], dim=1), full.slide_index)
    assert [c.meta["offset"] for c in chunks][:3] == [0, 64, 128]


def test_pt_bags_get_synthetic_grid(tmp_path: Path) -> None:
    t = torch.randn(10, D)
    torch.save(t, tmp_path / "a.pt")
    co = Cohort(name="pt", patients=pd.DataFrame({"time": [1.0], "event": [True]}, index=["A"]),
                modalities={"pathology": SlideSource(slides={"A": (SlideRef("A", "a", tmp_path / "a.pt", "pt"),)})})
    a = PathologyAdapter().fit(co, ["A"])
    s = a.transform("A")
    assert torch.equal(s.features[0], t) and s.positions[0, 5].tolist() == [1.0, 1.0]  # side 4: row 5 → (1, 1)
    assert s.meta["has_coords"] == [False]


def test_real_clam_coords_positions(shared_data: Path, tmp_path: Path) -> None:
    refs = []
    for j, src in enumerate(sorted((shared_data / "clam_coords").glob("*.h5"))):
        p = tmp_path / src.name
        shutil.copy(src, p)  # temporary copy; random features added with h5py
        with h5py.File(p, "a") as f:
            f["features"] = np.random.default_rng(j).standard_normal((f["coords"].shape[0], 8)).astype(np.float32)
        refs.append(SlideRef("TCGA-P", src.stem, p, "auto"))
    co = Cohort(name="clam", patients=pd.DataFrame({"time": [1.0], "event": [True]}, index=["TCGA-P"]),
                modalities={"pathology": SlideSource(slides={"TCGA-P": tuple(refs)})})
    a = PathologyAdapter(max_patches=500).fit(co, ["TCGA-P"])
    s = a.transform("TCGA-P")
    coords = s.meta["coords_level0"]
    assert s.num_tokens == len(coords) > 2000
    assert torch.equal(s.positions[0], torch.from_numpy((coords // 512).astype(np.float32)))
    assert s.meta["patch_size_level0"] == [512.0] * len(refs)
    assert set(s.slide_index[0].tolist()) == set(range(len(refs)))
    assert a.transform("TCGA-P", train=True, seed=3).num_tokens == 500


# ---- state -----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, 3])
def test_save_load_round_trip(cohort: Cohort, tmp_path: Path, k: int) -> None:
    a = PathologyAdapter(max_patches=50, prototypes=k, prototype_sample_per_patient=40).fit(cohort, TRAIN)
    a.save(tmp_path / "state")
    b = Adapter.load(tmp_path / "state").bind(cohort)
    assert isinstance(b, PathologyAdapter) and b.stream_spec() == a.stream_spec()
    assert b.stream_spec().feature_dim == (D + 1 if k else D)
    for pid in ["P3", "P4"]:
        for train in (False, True):
            sa, sb = a.transform(pid, train=train, seed=9), b.transform(pid, train=train, seed=9)
            assert torch.equal(sa.features, sb.features) and torch.equal(sa.mask, sb.mask)


def test_held_out_poisoning_leaves_fitted_state_bit_identical(tmp_path: Path) -> None:
    sizes = {"P0": [300, 120], "P1": [80], "P2": [200, 50], "P3": [60], "P4": [90, 40]}
    cohort = make_cohort(tmp_path, sizes)
    kw = {"max_patches": 50, "prototypes": 4, "prototype_sample_per_patient": 64}
    a = PathologyAdapter(**kw).fit(cohort, TRAIN)
    for pid in HELD_OUT:  # poison every held-out slide: huge values, another dim, another encoder, NaN
        for j, ref in enumerate(cohort.modalities["pathology"].slides[pid]):
            if j == 0:
                write_slide(ref.path, 70, dim=D + 5, encoder="other_encoder", center=np.full(D + 5, 1e30), dtype=np.float32)
            else:
                with h5py.File(ref.path, "a") as f:
                    f["features"][0, 0] = np.nan
                    f["features"][1] = 6e4
    b = PathologyAdapter(**kw).fit(cohort, TRAIN)
    assert a.state_json() == b.state_json()
    ta, tb = a.state_tensors(), b.state_tensors()
    assert ta.keys() == tb.keys() == {"centroids"}
    assert torch.equal(ta["centroids"], tb["centroids"])
    with pytest.raises(InputError) as ei:
        b.transform("P3")
    assert ei.value.patient == "P3" and ei.value.field == "features" and "P3_s0" in str(ei.value.file)


# ---- prototypes ------------------------------------------------------------------------------------------------------------
def test_prototype_tokens(tmp_path: Path) -> None:
    centers = np.eye(D, dtype=np.float32)[:3] * 10  # three well separated clusters
    slides = {}
    for i in range(6):
        pid = f"P{i}"
        parts = [write_slide(tmp_path / f"{pid}_{c}.h5", 40, center=centers[c], seed=i * 10 + c) for c in range(3)]
        slides[pid] = tuple(SlideRef(pid, f"{pid}_{c}", p, "trident") for c, p in enumerate(parts))
    only0 = write_slide(tmp_path / "Z.h5", 30, center=centers[0], seed=99)
    slides["Z"] = (SlideRef("Z", "z", only0, "trident"),)
    ids = [*slides]
    co = Cohort(name="proto", patients=pd.DataFrame({"time": np.ones(len(ids)), "event": np.ones(len(ids), bool)},
                                                     index=ids), modalities={"pathology": SlideSource(slides=slides)})
    a = PathologyAdapter(prototypes=3, prototype_sample_per_patient=30).fit(co, ids[:6])
    s = a.transform("P0")
    assert s.features.shape == (1, 3, D + 1) and bool(s.mask.all()) and s.positions is None
    assert torch.allclose(s.features[0, :, -1].sum(), torch.tensor(1.0))
    assert torch.allclose(s.features[0, :, -1], torch.full((3,), 1 / 3))
    # token k's mean = mean of the patches assigned to centroid k
    x = torch.cat([torch.from_numpy(read_source(r.path)[0]) for r in slides["P0"]])
    assign = a.assign_prototypes(x)
    for k in range(3):
        assert torch.allclose(s.features[0, k, :D], x[assign == k].mean(0), atol=1e-5)
    z = a.transform("Z")
    assert int(z.mask.sum()) == 1 and float(z.features[0, z.mask[0], -1]) == 1.0
    assert float(z.features[0, ~z.mask[0]].abs().sum()) == 0.0
    assert z.meta["assignment"].shape == (30,) and a.num_tokens_hint("Z") == 3


def test_prototypes_need_enough_patches(tmp_path: Path) -> None:
    co = make_cohort(tmp_path, {"A": [3], "B": [2]})
    with pytest.raises(ConfigError) as ei:
        PathologyAdapter(prototypes=8).fit(co, ["A", "B"])
    assert ei.value.field == "prototypes"


# ---- bad input -------------------------------------------------------------------------------------------------------------
def test_training_dims_must_agree(tmp_path: Path) -> None:
    co = make_cohort(tmp_path, {"A": [10], "B": [10], "C": [10]})
    write_slide(co.modalities["pathology"].slides["C"][0].path, 10, dim=D + 1)
    with pytest.raises(InputError) as ei:
        PathologyAdapter().fit(co, ["A", "B", "C"])
    assert (ei.value.patient, ei.value.field) == ("C", "features") and "C_s0" in ei.value.file
    with pytest.raises(InputError, match="configured feature_dim"):
        PathologyAdapter(feature_dim=D + 1).fit(co, ["A", "B"])


def test_training_encoders_must_agree(tmp_path: Path) -> None:
    co = make_cohort(tmp_path, {"A": [10], "B": [10], "C": [10]})
    write_slide(co.modalities["pathology"].slides["B"][0].path, 10, encoder="conch_v15")
    with pytest.raises(InputError) as ei:
        PathologyAdapter().fit(co, ["A", "B", "C"])
    assert (ei.value.patient, ei.value.field) == ("B", "features.attrs.encoder")
    with pytest.raises(InputError) as ei:
        PathologyAdapter(expected_encoder="conch_v15").fit(co, ["A", "C"])
    assert ei.value.patient in ("A", "C") and "expected_encoder" in str(ei.value)


def test_transform_rejects_other_dim_and_encoder(tmp_path: Path) -> None:
    co = make_cohort(tmp_path, {"A": [10], "B": [10], "C": [10]})
    a = PathologyAdapter().fit(co, ["A"])
    assert a.encoder == "uni_v1" and a.feature_dim_ == D
    write_slide(co.modalities["pathology"].slides["B"][0].path, 10, dim=D * 2)
    write_slide(co.modalities["pathology"].slides["C"][0].path, 10, encoder="virchow2")
    with pytest.raises(InputError) as ei:
        a.transform("B")
    assert (ei.value.patient, ei.value.field) == ("B", "features") and str(D) in str(ei.value)
    with pytest.raises(InputError) as ei:
        a.transform("C", train=True, seed=1)
    assert (ei.value.patient, ei.value.field) == ("C", "features.attrs.encoder")


def test_transform_reports_nan_and_truncated_files(tmp_path: Path) -> None:
    co = make_cohort(tmp_path, {"A": [10], "B": [40], "C": [4000]})
    a = PathologyAdapter(max_patches=8).fit(co, ["A"])
    with h5py.File(co.modalities["pathology"].slides["B"][0].path, "a") as f:
        f["features"][7] = np.inf
    with pytest.raises(InputError) as ei:
        a.transform("B")
    assert (ei.value.patient, ei.value.field) == ("B", "features") and "7" in str(ei.value)
    pc = co.modalities["pathology"].slides["C"][0].path
    pc.write_bytes(pc.read_bytes()[:20000])
    with pytest.raises(InputError) as ei:
        a.transform("C")
    assert ei.value.patient == "C" and ei.value.file == str(pc)


def test_missing_modality_or_training_slides(tmp_path: Path, cohort: Cohort) -> None:
    bare = Cohort(name="b", patients=pd.DataFrame({"time": [1.0], "event": [True]}, index=["A"]))
    with pytest.raises(InputError) as ei:
        PathologyAdapter().fit(bare, ["A"])
    assert ei.value.field == "modalities.pathology"
    none = Cohort(name="n", patients=pd.DataFrame({"time": [1.0], "event": [True]}, index=["A"]),
                  modalities={"pathology": SlideSource(slides={})})
    with pytest.raises(InputError, match="feature_dim"):
        PathologyAdapter().fit(none, ["A"])
    assert PathologyAdapter(feature_dim=D).fit(none, ["A"]).transform("A").features.shape == (1, 0, D)


def test_empty_bag_flagged_by_validate_and_yields_no_tokens(tmp_path: Path) -> None:
    co = make_cohort(tmp_path, {"A": [10, 0], "B": [0]})
    a = PathologyAdapter()
    check = a.validate(co)
    assert check.errors == [] and {w.patient for w in check.warnings} == {"A", "B"}
    assert all(w.field == "features" for w in check.warnings)
    a.fit(co, ["A", "B"])
    with pytest.warns(UserWarning, match="no patches"):
        s = a.transform("A")
    assert s.num_tokens == 10 and set(s.slide_index[0].tolist()) == {0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert a.transform("B").num_tokens == 0
    assert a.num_tokens_hint("B") == 0


def test_validate_collects_every_problem(tmp_path: Path) -> None:
    co = make_cohort(tmp_path, {"A": [10], "B": [10], "C": [10]})
    write_slide(co.modalities["pathology"].slides["B"][0].path, 10, dim=3)
    co.modalities["pathology"].slides["C"][0].path.write_bytes(b"not an h5 file")
    check = PathologyAdapter().validate(co)
    assert {p.patient for p in check.errors} == {"B", "C"}
    assert check.slides == 2
