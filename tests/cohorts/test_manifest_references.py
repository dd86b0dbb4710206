"""What a manifest may reference (docs/reliability.md, section 4): paths outside the cohort folder through ``../``,
absolute paths and symbolic links are allowed, and read exactly as the same files inside the folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import yaml
from fixtures_cohort import TinyCohort

from multimodal.adapters.clinical import ClinicalAdapter
from multimodal.adapters.ehr import EHRAdapter
from multimodal.cohorts.cohort import Cohort
from multimodal.cohorts.validate import validate_manifest


def test_parent_absolute_and_symlinked_paths_load_like_the_files_inside(tiny_cohort: TinyCohort, tmp_path: Path):
    root = tiny_cohort.root
    before = Cohort.from_manifest(tiny_cohort.manifest_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(root / "clinical.csv", elsewhere / "clinical.csv")  # reached through ../
    shutil.move(root / "outcomes.parquet", elsewhere / "outcomes.parquet")  # an absolute path
    shutil.move(root / "meds", elsewhere / "meds_real")
    (root / "meds").symlink_to(elsewhere / "meds_real", target_is_directory=True)  # a symbolic link to a folder
    m = yaml.safe_load(tiny_cohort.manifest_path.read_text())
    rel = Path("..") / Path(*([".."] * (len(root.relative_to(tmp_path).parts) - 1))) / "elsewhere" / "clinical.csv"
    m["modalities"]["clinical"]["path"] = str(rel)
    m["patients"]["path"] = str((elsewhere / "outcomes.parquet").resolve())
    tiny_cohort.manifest_path.write_text(yaml.safe_dump(m, sort_keys=False))

    assert (root / rel).resolve() == (elsewhere / "clinical.csv").resolve()
    assert validate_manifest(tiny_cohort.manifest_path).ok
    after = Cohort.from_manifest(tiny_cohort.manifest_path)
    assert after.patient_ids == before.patient_ids
    pd.testing.assert_frame_equal(after.patients, before.patients)
    assert set(after.modalities) == set(before.modalities)
    ids = before.patient_ids
    for cls in (ClinicalAdapter, EHRAdapter):  # the moved table and the linked folder give the same tokens
        a, b = cls().fit(before, ids), cls().fit(after, ids)
        for pid in ids:
            ta, tb = a.transform(pid), b.transform(pid)
            assert ta.names == tb.names
            for k, v in ta.tensor_fields().items():
                assert (v == tb.tensor_fields()[k]).all(), (cls.__name__, pid, k)
