"""Layout proved in a real browser and in the PDF: both reports rendered by headless Chromium (HTML) and by poppler
(``pdftoppm``, the PDF pages), with measurable facts checked: no element wider than the page, no mostly-empty page
but the last, page 1 holds the key findings, margins stay white."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from report_helpers import full_patient

from multimodal.cli.main import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOPPM = shutil.which("pdftoppm")
DPI = 50
MM = DPI / 25.4  # pixels per millimetre at DPI
MARGIN_MM = {"top": 18, "right": 14, "bottom": 16, "left": 14}  # the print stylesheets' @page margins
MIN_INK = 0.15  # share of a page's body rows holding anything: a page below this is mostly empty


@pytest.fixture(scope="module")
def reports(report_cohort, pipeline_dir, cv_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("layout")
    assert main(["report", "--pipeline", str(pipeline_dir), "--manifest", str(report_cohort), "--patient",
                 full_patient(report_cohort), "--out", str(out / "patient")]) == 0
    assert main(["cohort-report", str(cv_run), "--out", str(out / "cohort")]) == 0
    return {"patient": out / "patient" / "report", "cohort": out / "cohort" / "cohort_report"}


def body_ink(page: np.ndarray) -> float:
    """Share of the rows between the top and bottom margins that hold any non-white pixel."""
    h = page.shape[0]
    body = page[int(MARGIN_MM["top"] * MM): h - int(MARGIN_MM["bottom"] * MM)]
    return float((body < 235).any(axis=1).mean())


def test_body_ink_measures_empty_and_full_pages():
    page = np.full((int(297 * MM), int(210 * MM)), 255, np.uint8)
    assert body_ink(page) == 0.0
    page[int(30 * MM): int(150 * MM), 100] = 0
    assert 0.4 < body_ink(page) < 0.5


def _pages(pdf, tmp_path) -> list[np.ndarray]:
    from PIL import Image

    from multimodal.report.pages import pdf_pages_to_png

    return [np.asarray(Image.open(p).convert("L")) for p in pdf_pages_to_png(pdf, tmp_path, pdf.stem, dpi=DPI)]


@pytest.mark.skipif(PDFTOPPM is None, reason="poppler-utils (pdftoppm) not installed")
@pytest.mark.parametrize("which", ["patient", "cohort"])
def test_pdf_pages_are_full_and_inside_the_margins(reports, which, tmp_path):
    pages = _pages(reports[which].with_suffix(".pdf"), tmp_path)
    assert pages
    for i, pg in enumerate(pages, start=1):
        assert abs(pg.shape[1] / MM - 210) < 2 and abs(pg.shape[0] / MM - 297) < 2, "A4 pages"
        if i < len(pages):
            assert body_ink(pg) >= MIN_INK, f"{which} report page {i} of {len(pages)} is mostly empty"
        top, bottom = int(MARGIN_MM["top"] * MM), pg.shape[0] - int(MARGIN_MM["bottom"] * MM)
        right = pg[top:bottom, pg.shape[1] - int((MARGIN_MM["right"] - 2) * MM):]
        assert (right > 235).all(), f"{which} report page {i}: content runs into the right margin"
    if which == "patient":
        text = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(reports[which].with_suffix(".pdf")), "-"],
                              check=True, capture_output=True, text=True).stdout
        assert "key findings" in text and "event-free at" in text and "Cross-validated" in text


@pytest.mark.skipif(CHROMIUM is None, reason="Debian package 'chromium' not installed")
@pytest.mark.parametrize("which", ["patient", "cohort"])
def test_no_element_wider_than_the_page_in_chromium(reports, which, tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    html = reports[which].with_suffix(".html")
    overflow_js = """(w) => Array.from(document.querySelectorAll('body *')).filter(e => {
        const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > w + 1 || r.left < -1);
    }).map(e => e.tagName + '#' + e.id + '.' + e.className)"""
    errors, found = [], {}
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                                                                    "--disable-background-networking"])
        # the screen at an A4 width (96 dpi), then the print media at the printable width (A4 less the margins)
        for media, width in (("screen", 794), ("print", int((210 - 28) / 25.4 * 96))):
            page = browser.new_page(viewport={"width": width, "height": 1123})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.emulate_media(media=media)
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            found[media] = {"overflow": page.evaluate(overflow_js, width),
                            "scroll": page.evaluate("document.documentElement.scrollWidth"),
                            "images": page.evaluate("Array.from(document.images).every(i => i.complete && "
                                                    "i.naturalWidth > 0)")}
            if which == "patient":
                box = page.locator("#key-findings").bounding_box()
                assert box is not None and box["y"] < 50  # the key findings open the report
            page.screenshot(path=str(tmp_path / f"{which}-{media}.png"), full_page=True)
            page.close()
        browser.close()
    assert errors == []
    for media, f in found.items():
        assert f["overflow"] == [], (media, f["overflow"][:10])
        assert f["scroll"] <= (794 if media == "screen" else int((210 - 28) / 25.4 * 96)), media
        assert f["images"], media
