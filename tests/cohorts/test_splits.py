"""Patient-level splits: published split files, stratified k-fold, inner split, cohort folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_cohort import PATIENTS, TinyCohort

from multimodal.cohorts import Cohort, Fold, SlideRef, SlideSource
from multimodal.cohorts.splits import cohort_folds, inner_split, read_split_files, stratified_kfold
from multimodal.errors import InputError


def _multi_slide_cohort(n: int = 40, seed: int = 0) -> Cohort:
    """A cohort of ``n`` patients with 1-3 slides each (paths need not exist for splitting)."""
    rng = np.random.default_rng(seed)
    ids = [f"TCGA-XX-{i:04d}" for i in range(n)]
    patients = pd.DataFrame({"time": rng.uniform(1, 100, n), "event": rng.random(n) < 0.3},
                            index=pd.Index(ids, name="patient_id"))
    slides = {p: tuple(SlideRef(p, f"{p}-01Z-00-DX{j}", Path(f"/nowhere/{p}-DX{j}.h5"))
                       for j in range(1, int(rng.integers(1, 4)) + 1)) for p in ids}
    return Cohort(name="multi", patients=patients, modalities={"pathology": SlideSource(slides=slides)})


def _assert_partition(folds: list[Fold], ids: set[str]) -> None:
    vals = [set(f.val) for f in folds]
    for f in folds:
        assert not set(f.train) & set(f.val) and not set(f.test) & (set(f.train) | set(f.val))
        assert set(f.train) | set(f.val) | set(f.test) == ids
    assert set().union(*vals) == ids and sum(map(len, vals)) == len(ids)  # val parts partition the patients


def test_stratified_kfold_is_patient_level_and_stratified() -> None:
    c = _multi_slide_cohort()
    folds = stratified_kfold(c, k=5, seed=1)
    assert len(folds) == 5
    _assert_partition(folds, set(c.patient_ids))
    ev = c.patients["event"]
    n_events = [int(ev[list(f.val)].sum()) for f in folds]
    assert max(n_events) - min(n_events) <= 1  # stratified by event status
    slides = c.modalities["pathology"]
    assert isinstance(slides, SlideSource)
    owner = {r.slide_id: r.patient_id for refs in slides.slides.values() for r in refs}
    assert len(owner) > len(c.patient_ids)  # several slides per patient
    for f in folds:  # every slide of a patient sits in the part of its patient
        train_slides = {r.slide_id for p in f.train for r in slides.slides[p]}
        val_slides = {r.slide_id for p in f.val for r in slides.slides[p]}
        assert not train_slides & val_slides and len(train_slides) + len(val_slides) == len(owner)
        assert {owner[s] for s in val_slides} == set(f.val)


def test_stratified_kfold_is_deterministic_and_order_free() -> None:
    c = _multi_slide_cohort()
    ids, ev = c.patient_ids, c.patients["event"].tolist()
    a = stratified_kfold(ids, ev, k=4, seed=7)
    b = stratified_kfold(ids[::-1], ev[::-1], k=4, seed=7)
    assert a == b
    assert stratified_kfold(ids, ev, k=4, seed=8) != a
    assert stratified_kfold(ids, dict(zip(ids, ev, strict=True)), k=4, seed=7) == a


def test_stratified_kfold_rejects_slide_level_ids_and_few_patients() -> None:
    with pytest.raises(InputError, match="patient level"):
        stratified_kfold(["a", "a", "b", "c"], [True, True, False, False], k=2)
    with pytest.raises(InputError, match="cannot make 5 folds"):
        stratified_kfold(["a", "b", "c"], [True, False, True], k=5)
    folds = stratified_kfold([f"p{i}" for i in range(10)], [True] + [False] * 9, k=3, seed=0)  # 1 event < k
    _assert_partition(folds, {f"p{i}" for i in range(10)})


def test_inner_split_is_stratified_disjoint_and_deterministic() -> None:
    ids = [f"p{i:02d}" for i in range(50)]
    ev = [i % 5 == 0 for i in range(50)]  # 10 events
    tr, va = inner_split(ids, ev, fraction=0.2, seed=3)
    assert len(va) == 10 and len(tr) == 40 and not set(tr) & set(va) and set(tr) | set(va) == set(ids)
    assert sum(ev[ids.index(p)] for p in va) == 2
    assert inner_split(ids, ev, fraction=0.2, seed=3) == (tr, va)
    tr2, va2 = inner_split(["a", "b", "c"], [False, False, True], fraction=0.5, seed=0)  # too few to stratify
    assert len(va2) >= 1 and len(tr2) >= 1 and not set(tr2) & set(va2)
    with pytest.raises(InputError):
        inner_split(ids, ev, fraction=1.5)


def test_cohort_folds_prefers_external_splits(tiny_cohort: TinyCohort) -> None:
    c = Cohort.from_manifest(tiny_cohort.manifest_path)
    assert cohort_folds(c, k=2) == c.splits
    c.splits = None
    folds = cohort_folds(c, k=2, seed=0)
    _assert_partition(folds, set(PATIENTS))


def test_read_split_files_layout_and_test_column(tmp_path: Path) -> None:
    pd.DataFrame({"train": ["a", "b", "c"], "val": ["d", None, None], "test": ["e", "f", None]}).to_csv(
        tmp_path / "splits_0.csv")
    (fold,) = read_split_files(tmp_path, 1, known_ids="abcdef")
    assert fold == Fold(index=0, train=("a", "b", "c"), val=("d",), test=("e", "f"))
    (same,) = read_split_files(str(tmp_path / "splits_{k}.csv"), 1)
    assert same == fold


def test_read_split_files_reports_every_problem(tmp_path: Path) -> None:
    pd.DataFrame({"train": ["a", "b"], "val": ["b", "zz"]}).to_csv(tmp_path / "splits_0.csv")
    pd.DataFrame({"train": ["a"], "other": ["c"]}).to_csv(tmp_path / "splits_1.csv")
    with pytest.raises(InputError) as err:
        read_split_files(tmp_path, 3, known_ids=["a", "b", "c"])
    msgs = [(p.file and Path(p.file).name, p.field, p.message) for p in err.value.problems]
    assert any(f == "splits_0.csv" and "both train and val" in m for f, _, m in msgs)
    assert any(f == "splits_0.csv" and "not in the cohort" in m and "zz" in m for f, _, m in msgs)
    assert any(f == "splits_1.csv" and fld == "val" for f, fld, _ in msgs)
    assert any(f == "splits_2.csv" and "not found" in m for f, _, m in msgs)


def test_published_porpoise_blca_splits(shared_data: Path) -> None:
    folder = shared_data / "tcga_porpoise" / "splits" / "5foldcv" / "tcga_blca"
    folds = read_split_files(folder / "splits_{k}.csv", 5)
    assert [f.index for f in folds] == [0, 1, 2, 3, 4]
    ids = set(folds[0].train) | set(folds[0].val)
    assert len(ids) == 373  # the BLCA cohort's patients (README: 373 patients)
    _assert_partition(folds, ids)
    assert [len(f.val) for f in folds] == [75, 75, 75, 74, 74]
    assert all(len(p) == 12 and p.startswith("TCGA-") for p in ids)  # patient-level case ids
    with pytest.raises(InputError) as err:
        read_split_files(folder, 5, known_ids=sorted(ids)[1:])
    assert sorted(ids)[0] in str(err.value) and "splits_" in str(err.value)


def test_any_discrete_labels_stratify() -> None:
    """Callers stratify response studies by class with -1 for unknown: -1 must stay its own stratum."""
    ids = [f"p{i:02d}" for i in range(60)]
    labels = np.array([-1] * 15 + [0] * 30 + [1] * 15)
    folds = stratified_kfold(ids, labels, k=3, seed=0)
    _assert_partition(folds, set(ids))
    for f in folds:
        got = labels[[ids.index(p) for p in f.val]]
        assert sorted(np.unique(got, return_counts=True)[1].tolist()) == [5, 5, 10]
    tr, va = inner_split(ids, labels, fraction=0.2, seed=1)
    got = labels[[ids.index(p) for p in va]]
    assert len(tr) == 48 and sorted(np.unique(got, return_counts=True)[1].tolist()) == [3, 3, 6]
