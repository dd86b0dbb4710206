"""Pseudonymisation of everything a report writes: identifiers that can embed the patient id (slide ids, file names,
sample barcodes) become neutral labels, and the raw patient id is replaced wherever it still occurs."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DATA_URI", "scrub", "slide_label"]

def slide_label(index: int, n_slides: int) -> str:
    """The neutral name of a patient's ``index``-th slide (0-based) in every output."""
    return f"slide {index + 1} of {n_slides}"


#: Strings that are embedded images (:func:`multimodal.cohorts.formats.thumbnails.png_data_uri`), left as they are.
DATA_URI = "data:image/"


def scrub(obj: Any, identifiers: list[str], pseudonym: str) -> Any:
    """A copy of ``obj`` (JSON-like: dicts, lists, strings, numbers) with every occurrence of each identifier in
    ``identifiers`` replaced by ``pseudonym`` in every string and dict key, case-insensitively."""
    ids = sorted({str(i) for i in identifiers if i and len(str(i)) >= 3}, key=len, reverse=True)
    if not ids:
        return obj
    rx = re.compile("|".join(re.escape(i) for i in ids), re.IGNORECASE)

    def walk(o: Any) -> Any:
        if isinstance(o, str):
            # an embedded image (data URI) is pixels, not text: an id-like run of base64 characters is chance
            return o if o.startswith(DATA_URI) else rx.sub(pseudonym, o)
        if isinstance(o, dict):
            return {walk(k): walk(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        return o

    return walk(obj)
