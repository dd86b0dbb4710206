"""Genomics inputs for the genomics adapter: :func:`load_omics_tables` gathers every table of a source.

The readers (AnnData expression, MAF, CNV, wide tables) live in :mod:`multimodal.cohorts.formats.omics`, shared with
loading and ``validate``, and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from multimodal.cohorts.formats.omics import (
    COUNTS_LAYER,
    DATATYPES,
    MAF_REQUIRED,
    NON_SILENT,
    TARGET_SUM,
    WIDE_SUFFIX,
    compile_patient_pattern,
    numeric_table,
    read_cnv,
    read_expression,
    read_maf,
    read_sample_list,
    samples_to_patients,
    split_wide,
)
from multimodal.cohorts.sources import OmicsSource
from multimodal.errors import InputError

__all__ = [
    "COUNTS_LAYER", "DATATYPES", "MAF_REQUIRED", "NON_SILENT", "TARGET_SUM", "WIDE_SUFFIX", "compile_patient_pattern",
    "load_omics_tables", "numeric_table", "read_cnv", "read_expression", "read_maf", "read_sample_list",
    "samples_to_patients", "split_wide",
]


# ---- everything a source provides -------------------------------------------------------------------------------
def _under(path: Path, root: Path | None) -> Path:
    return path if path.is_absolute() or root is None else Path(root) / path


def load_omics_tables(
    source: OmicsSource, datatypes: Iterable[str], root: Path | None = None
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Per-datatype tables from every input of ``source``, restricted to ``datatypes``.

    A datatype comes from its file (expression / mutations / cnv) or from the wide table; both giving it is an error.

    Returns:
        (tables, origin): datatype → table, and datatype → where it came from (``"counts"``/``"X"`` for expression
        read from an .h5ad, ``"maf"``, ``"cnv"``, ``"wide"``).
    """
    wanted = [d for d in DATATYPES if d in set(datatypes)]
    tables: dict[str, pd.DataFrame] = {}
    origin: dict[str, str] = {}
    if "rna" in wanted and source.expression is not None:
        tables["rna"], origin["rna"] = read_expression(_under(Path(source.expression), root),
                                                       source.expression_patient_column)
    if "mut" in wanted and source.mutations is not None:
        samples = None if source.mutation_samples is None else _under(Path(source.mutation_samples), root)
        known = source.available or None  # loading's patients with data: calls of other patients are ignored
        tables["mut"] = read_maf(_under(Path(source.mutations), root), samples, source.mutation_patient_pattern,
                                 known=known)
        origin["mut"] = "maf"
    if "cnv" in wanted and source.cnv is not None:
        tables["cnv"], origin["cnv"] = read_cnv(_under(Path(source.cnv), root)), "cnv"
    if source.wide is not None:
        for dt, t in split_wide(source.wide, wanted).items():
            if dt in tables:
                file_key = {"rna": "expression", "mut": "mutations", "cnv": "cnv"}[dt]
                msg = f"both the {file_key} file and the wide table provide {dt!r} data"
                raise InputError(msg, field=f"modalities.genomics.{file_key}",
                                 hint="give each datatype from one source, or drop it from `datatypes`")
            tables[dt], origin[dt] = t, "wide"
    return tables, origin
