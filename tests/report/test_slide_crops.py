"""Slide evidence as image crops: the slide table's optional ``thumbnail`` (+ ``thumbnail_downsample``) column, read
alike by ``validate`` and the report; crops centred on the top patches, embedded in the report; no crop without a
known scale; a bad thumbnail is exit 2 naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_helpers import full_patient

from multimodal.cli.main import main
from multimodal.cohorts.formats.thumbnails import crop_region, read_thumbnail
from multimodal.cohorts.validate import validate_manifest
from multimodal.errors import InputError


def test_a_crop_is_centred_on_its_patch_with_white_outside_the_slide():
    img = np.full((40, 60, 3), 200, dtype=np.uint8)
    img[10:14, 20:24] = (255, 0, 0)  # the patch at level 0 (80, 40), side 16, downsample 4: thumbnail (20, 10)..(24, 14)
    crop = crop_region(img, 80, 40, 16, 4.0, context=3.0, size=96)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    assert tuple(crop[48, 48]) == (255, 0, 0)  # the centre is the patch
    assert tuple(crop[4, 4]) == (200, 200, 200)  # one patch of context around it is tissue
    assert (crop[32, 33:63] == 0).all()  # the patch outline
    corner = crop_region(img, 0, 0, 16, 4.0)  # at the slide's corner: outside is white, not wrapped around
    assert tuple(corner[2, 2]) == (255, 255, 255) and tuple(corner[60, 60]) == (200, 200, 200)


def test_a_file_that_is_not_an_image_is_an_input_error(tmp_path: Path):
    bad = tmp_path / "thumb.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError, match="thumbnail unreadable") as e:
        read_thumbnail(bad, patient="P1")
    assert e.value.problems[0].file == str(bad) and e.value.problems[0].field == "thumbnail"
    with pytest.raises(InputError, match="not found"):
        read_thumbnail(tmp_path / "missing.png")


@pytest.fixture
def cohort_with_thumbnails(report_cohort: Path, tmp_path: Path) -> Path:
    from multimodal.cohorts.synthetic_thumbnails import write_thumbnails

    root = tmp_path / "with_thumbs"
    shutil.copytree(report_cohort.parent, root)
    assert write_thumbnails(root) > 0
    return root / "manifest.yaml"


def test_report_shows_top_patches_as_crops_of_the_thumbnail(cohort_with_thumbnails, pipeline_dir, tmp_path):
    assert validate_manifest(cohort_with_thumbnails).ok
    pid = full_patient(cohort_with_thumbnails)
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pipeline_dir), "--manifest", str(cohort_with_thumbnails),
                 "--patient", pid, "--out", str(out), "--no-pdf"]) == 0
    res = json.loads((out / "risk_result.json").read_text())
    ev = res["evidence"]["pathology"]
    crops = [p["crop"] for p in ev["top_patches"] if "crop" in p]
    assert ev["crops"] == len(crops) == len(ev["top_patches"]) > 0
    first = crops[0]
    assert first.startswith("data:image/png;base64,")
    import base64
    import io

    im = Image.open(io.BytesIO(base64.b64decode(first.split(",", 1)[1])))
    assert im.size == (96, 96)
    html = (out / "report.html").read_text()
    assert html.count('<img class="crop"') == min(5, len(crops))


def test_no_crop_without_a_known_scale_and_bad_thumbnails_are_refused(cohort_with_thumbnails, pipeline_dir,
                                                                      tmp_path):
    root = cohort_with_thumbnails.parent
    table = pd.read_csv(root / "slides.csv", dtype=str)
    # synthetic h5 files record level0_width: without the column the scale comes from there, so remove both
    table["thumbnail_downsample"] = ""
    table.to_csv(root / "slides.csv", index=False)
    import h5py

    for rel in table["path"]:
        with h5py.File(root / rel, "r+") as f:
            del f["coords"].attrs["level0_width"]
    pid = full_patient(cohort_with_thumbnails)
    out = tmp_path / "rep"
    assert main(["report", "--pipeline", str(pipeline_dir), "--manifest", str(cohort_with_thumbnails),
                 "--patient", pid, "--out", str(out), "--no-pdf", "--overwrite"]) == 0
    ev = json.loads((out / "risk_result.json").read_text())["evidence"]["pathology"]
    assert ev["crops"] == 0 and "without a known scale" in ev["crop_note"]
    assert not any("crop" in p for p in ev["top_patches"])

    first = root / table["thumbnail"].iloc[0]
    first.write_bytes(b"\x89PNG truncated")
    report = validate_manifest(cohort_with_thumbnails)
    assert not report.ok and any(p.file == str(first) and "thumbnail" in p.message for p in report.problems)
    pid0 = table["patient_id"].iloc[0]
    rc = main(["report", "--pipeline", str(pipeline_dir), "--manifest", str(cohort_with_thumbnails),
               "--patient", pid0, "--out", str(tmp_path / "rep2"), "--no-pdf"])
    assert rc == 2 and not (tmp_path / "rep2").exists()

    table["thumbnail_downsample"] = "-3"
    table.to_csv(root / "slides.csv", index=False)
    report = validate_manifest(cohort_with_thumbnails)
    assert any(p.field == "thumbnail_downsample" and "positive" in p.message for p in report.problems)
