"""Side tables: CSV / TSV / parquet read by their suffix, identifier columns as text.

Identifier columns (patient, sample, slide ids) are read as text whose only missing value is an empty cell: ids keep
their leading zeros, and patients called "NA", "null" or "None" keep their names. The other columns keep pandas'
usual missing values ("NA", "null", "nan", ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES

from multimodal.errors import InputError

COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
#: Cell texts pandas reads as missing by default ("NA", "null", "None", ...). Identifier columns keep them as text: a
#: patient may be called "NA"; only an empty cell is a missing identifier.
DEFAULT_NA = tuple(sorted(STR_NA_VALUES))


def table_kind(path: Path) -> str | None:
    """"csv", "tsv" or "parquet" from the file name (compression suffixes ignored), else None."""
    name = path.name.lower()
    for suf in COMPRESSION:
        if name.endswith(suf):
            name = name[: -len(suf)]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".tsv", ".tab", ".txt", ".maf")):
        return "tsv"
    if name.endswith(".csv"):
        return "csv"
    return None


def read_table(path: Path, *, str_columns: Sequence[str] = (), **kwargs: Any) -> pd.DataFrame:
    """Read a CSV / TSV / parquet table by its suffix; ``str_columns`` are identifiers, read as text (see the module
    docstring); the other columns keep pandas' usual missing values.

    Raises:
        InputError: unsupported suffix, missing or unreadable file.
    """
    kind = table_kind(path)
    if kind is None:
        raise InputError("unsupported table format", file=path, field="path",
                         hint="use .csv, .tsv (or .txt) or .parquet (optionally compressed: .gz/.zip)")
    if not path.is_file():
        raise InputError("file not found", file=path, field="path", hint="paths are relative to the manifest folder")
    try:
        if kind == "parquet":
            return pd.read_parquet(path, **kwargs)
        return read_delimited(path, "\t" if kind == "tsv" else ",", str_columns, **kwargs)
    except Exception as exc:  # any reader failure is the file's fault here
        raise InputError(f"cannot read table: {type(exc).__name__}: {exc}", file=path) from exc


def read_delimited(path: Path, sep: str, id_columns: Sequence[str], *, all_text: bool = False,
                   **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv`` where ``id_columns`` are text whose only missing value is an empty cell, and the other columns
    keep the default missing values ("NA", "null", "nan", ...); ``all_text`` reads every column as text. An integer
    in ``id_columns`` names a column by position (``0``: the first)."""
    header = pd.read_csv(path, sep=sep, nrows=0, comment=kwargs.get("comment"), usecols=kwargs.get("usecols"),
                         skiprows=kwargs.get("skiprows"), compression=kwargs.get("compression", "infer")).columns
    names = [str(header[c]) if isinstance(c, int) and not isinstance(c, bool) else c for c in id_columns
             if not isinstance(c, int) or c < len(header)]
    ids = set(names)
    na_values = {c: [""] if c in ids else list(DEFAULT_NA) for c in header}
    dtype: Any = str if all_text else {c: str for c in names}
    return pd.read_csv(path, sep=sep, dtype=dtype, keep_default_na=False, na_values=na_values, low_memory=False,
                       **kwargs)


def first_column(path: Path) -> list[str]:
    """The name of the first column of a CSV / TSV table ([] for parquet or an unreadable file)."""
    kind = table_kind(path)
    if kind not in ("csv", "tsv"):
        return []
    try:
        return [str(pd.read_csv(path, sep="\t" if kind == "tsv" else ",", nrows=0).columns[0])]
    except Exception:  # read_table reports the file's problem
        return []


def norm_id(value: Any) -> str | None:
    """A patient/sample id as text: integral floats lose their ``.0``; NaN/empty -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None
