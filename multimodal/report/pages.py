"""PNG pictures of a report's PDF pages (poppler's ``pdftoppm``), for a human to look at and for layout tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def pdftoppm() -> str | None:
    """The ``pdftoppm`` executable (Debian package poppler-utils), or None when it is not installed."""
    return shutil.which("pdftoppm")


def pdf_pages_to_png(pdf: Path, out_dir: Path, prefix: str, *, dpi: int = 70) -> list[Path]:
    """Render every page of ``pdf`` to ``out_dir/<prefix>-<n>.png``; [] when pdftoppm is not installed.

    Raises ``subprocess.CalledProcessError`` when pdftoppm fails on the file (a broken PDF).
    """
    exe = pdftoppm()
    if exe is None:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{prefix}-*.png"):
        old.unlink()
    subprocess.run([exe, "-r", str(dpi), "-png", str(pdf), str(out_dir / prefix)], check=True, capture_output=True,
                   timeout=120)
    return sorted(out_dir.glob(f"{prefix}-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
