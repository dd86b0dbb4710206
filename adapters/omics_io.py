"""Readers for genomics inputs: each returns a patients × genes table (float64, NaN = not measured).

* expression: AnnData ``.h5ad``; raw counts in ``layers["counts"]`` are normalized (scanpy ``normalize_total`` to 1e4
  per patient, then ``log1p``), otherwise ``X`` is taken as already log-scale (with a warning, once per file).
* mutations: MAF (tab-separated, leading ``#`` lines allowed) → 0/1 non-silent status per gene; every sequenced sample
  (the explicit sample list, else every sample in the MAF) gets a row, so unmutated samples are 0, not missing.
* CNV: a patients × genes table (first column = patient id): ``.csv``, ``.tsv`` / ``.txt`` (optionally compressed) or
  ``.parquet``.
* wide: the TCGA convention ``<GENE>_rnaseq`` / ``<GENE>_mut`` / ``<GENE>_cnv`` columns, indexed by patient id.

The readers are pure (no standardization): the adapter fits that on training patients only.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from multimodal.cohorts.sources import OmicsSource
from multimodal.errors import InputError

DATATYPES = ("rna", "mut", "cnv")
#: Wide-table column suffix per datatype (TCGA / PORPOISE convention).
WIDE_SUFFIX = {"rna": "_rnaseq", "mut": "_mut", "cnv": "_cnv"}
MAF_REQUIRED = ("Hugo_Symbol", "Variant_Classification", "Tumor_Sample_Barcode")
#: Variant classes counted as mutated (maftools ``vc_nonSyn``); every other class is silent.
NON_SILENT = frozenset({
    "Missense_Mutation", "Nonsense_Mutation", "Frame_Shift_Del", "Frame_Shift_Ins", "In_Frame_Del", "In_Frame_Ins",
    "Splice_Site", "Translation_Start_Site", "Nonstop_Mutation",
})
#: Hugo symbols that do not name a gene (GDC uses "Unknown" for intergenic calls).
_NOT_A_GENE = frozenset({"", "Unknown", "."})
COUNTS_LAYER = "counts"
TARGET_SUM = 1e4

_warned_log_scale: set[str] = set()


# ---- expression -------------------------------------------------------------------------------------------------
def read_expression(path: str | Path, patient_column: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read an ``.h5ad`` into a patients × genes table.

    Returns:
        (table, source) where ``source`` is ``"counts"`` (normalized from ``layers["counts"]``) or ``"X"``.
    """
    import anndata

    p = Path(path)
    if not p.is_file():
        msg = "expression file not found"
        raise InputError(msg, file=p, field="expression")
    try:
        adata = anndata.read_h5ad(p)
    except (OSError, KeyError, ValueError) as exc:
        msg = f"not a readable .h5ad file ({exc})"
        raise InputError(msg, file=p, field="expression") from exc
    if patient_column is None:
        ids = pd.Index(adata.obs_names.astype(str))
        id_field = "obs_names"
    else:
        if patient_column not in adata.obs.columns:
            msg = f"obs has no patient column {patient_column!r}"
            hint = f"obs columns: {', '.join(map(str, adata.obs.columns)) or '(none)'}"
            raise InputError(msg, file=p, field="expression_patient_column", hint=hint)
        ids = pd.Index(adata.obs[patient_column].astype(str).to_numpy())
        id_field = "expression_patient_column"
    _check_unique(ids, p, id_field, "patient", hint="keep one expression profile per patient")
    genes = pd.Index(adata.var_names.astype(str))
    _check_unique(genes, p, "var_names", "gene", hint="make gene symbols unique (e.g. sum or drop duplicates)")
    if COUNTS_LAYER in adata.layers:
        values, source = _normalize_counts(adata.layers[COUNTS_LAYER], p), "counts"
    else:
        if str(p) not in _warned_log_scale:
            _warned_log_scale.add(str(p))
            warnings.warn(
                f"{p}: no layers['counts']; using X as already log-scale expression", UserWarning, stacklevel=2
            )
        values, source = _dense(adata.X), "X"
    return pd.DataFrame(values, index=ids, columns=genes), source


def _dense(x: object) -> np.ndarray:
    arr = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return np.asarray(arr, dtype=np.float64)


def _normalize_counts(counts: object, path: Path) -> np.ndarray:
    """scanpy ``normalize_total(target_sum=1e4)`` + ``log1p`` on a float64 copy of the counts."""
    import anndata
    import scanpy as sc

    x = _dense(counts)
    if np.isnan(x).any() or (x < 0).any():
        msg = "layers['counts'] holds negative or NaN values"
        raise InputError(msg, file=path, field="layers.counts", hint="raw counts must be >= 0")
    tmp = anndata.AnnData(X=x)
    sc.pp.normalize_total(tmp, target_sum=TARGET_SUM)
    sc.pp.log1p(tmp)
    return _dense(tmp.X)


# ---- mutations --------------------------------------------------------------------------------------------------
def _open_text(path: Path) -> IO[str]:
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower())
    if opener is not None:
        return opener(path, "rt", encoding="utf-8")  # type: ignore[return-value]
    return open(path, encoding="utf-8")


def _comment_lines(path: Path) -> int:
    n = 0
    with _open_text(path) as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            n += 1
    return n


def compile_patient_pattern(pattern: str) -> re.Pattern[str]:
    """The sample → patient regex; a ``patient`` named group (else group 1, else the whole match) is the id."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        msg = f"not a valid regular expression ({exc})"
        raise InputError(msg, field="mutation_patient_pattern") from exc


def samples_to_patients(samples: Iterable[str], pattern: str, *, file: Path | None = None) -> dict[str, str]:
    """Map each sample id to its patient id with ``pattern``; samples that do not match are an error."""
    rx = compile_patient_pattern(pattern)
    out: dict[str, str] = {}
    bad: list[str] = []
    for s in samples:
        m = rx.search(s)
        if m is None:
            bad.append(s)
            continue
        if "patient" in rx.groupindex:
            out[s] = m.group("patient")
        else:
            out[s] = m.group(1) if rx.groups else m.group(0)
    if bad:
        msg = f"{len(bad)} sample id(s) do not match mutation_patient_pattern {pattern!r}, e.g. {bad[:3]}"
        raise InputError(msg, file=file, patient=bad[0], field="mutation_patient_pattern")
    return out


def read_sample_list(path: str | Path) -> list[str]:
    """One sample id per line; blank lines and ``#`` lines skipped."""
    p = Path(path)
    if not p.is_file():
        msg = "mutation sample list not found"
        raise InputError(msg, file=p, field="mutation_samples")
    with _open_text(p) as fh:
        ids = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    return list(dict.fromkeys(ids))


def read_maf(path: str | Path, samples: str | Path | None = None, pattern: str = r"^(?P<patient>.+)$") -> pd.DataFrame:
    """Non-silent mutation status (0/1) per patient × gene.

    Rows: the patients of all sequenced samples (``samples`` file if given, else every sample in the MAF, silent-only
    ones included). Columns: genes with at least one non-silent call. A patient with several samples is mutated if
    any sample is. A MAF sample absent from an explicit sample list is an error (ids probably formatted differently).
    """
    p = Path(path)
    if not p.is_file():
        msg = "MAF file not found"
        raise InputError(msg, file=p, field="mutations")
    skip = _comment_lines(p)
    try:
        header = pd.read_csv(p, sep="\t", skiprows=skip, nrows=0, compression="infer").columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        msg = f"not a readable tab-separated MAF ({exc})"
        raise InputError(msg, file=p, field="mutations") from exc
    missing = [c for c in MAF_REQUIRED if c not in header]
    if missing:
        msg = f"MAF lacks required column(s) {missing}"
        raise InputError(msg, file=p, field=missing[0], hint=f"required: {', '.join(MAF_REQUIRED)}")
    maf = pd.read_csv(p, sep="\t", skiprows=skip, usecols=list(MAF_REQUIRED), dtype=str, keep_default_na=False,
                      compression="infer", low_memory=False)
    for col in MAF_REQUIRED:
        maf[col] = maf[col].str.strip()
    maf_samples = list(dict.fromkeys(maf["Tumor_Sample_Barcode"]))
    if samples is not None:
        sequenced = read_sample_list(samples)
        unknown = sorted(set(maf_samples) - set(sequenced))
        if unknown:
            msg = f"{len(unknown)} MAF sample(s) are not in the sequenced-sample list {samples}, e.g. {unknown[:3]}"
            raise InputError(msg, file=p, patient=unknown[0], field="mutation_samples",
                             hint="the list must hold every sequenced sample, with the MAF's Tumor_Sample_Barcode ids")
    else:
        sequenced = maf_samples
    to_patient = samples_to_patients(sequenced, pattern, file=Path(samples) if samples is not None else p)
    hits = maf[maf["Variant_Classification"].isin(NON_SILENT) & ~maf["Hugo_Symbol"].isin(_NOT_A_GENE)]
    patients = list(dict.fromkeys(to_patient[s] for s in sequenced))
    genes = sorted(set(hits["Hugo_Symbol"]))
    table = pd.DataFrame(0.0, index=pd.Index(patients, dtype=str), columns=pd.Index(genes, dtype=str))
    if len(hits):
        rows = hits["Tumor_Sample_Barcode"].map(to_patient).to_numpy()
        r = table.index.get_indexer(rows)
        c = table.columns.get_indexer(hits["Hugo_Symbol"].to_numpy())
        arr = table.to_numpy(copy=True)
        arr[r, c] = 1.0
        table = pd.DataFrame(arr, index=table.index, columns=table.columns)
    return table


# ---- CNV and generic tables -------------------------------------------------------------------------------------
def _suffixes(p: Path) -> list[str]:
    return [s.lower() for s in p.suffixes]


def read_cnv(path: str | Path) -> pd.DataFrame:
    """A patients × genes copy-number table; the first column is the patient id."""
    p = Path(path)
    if not p.is_file():
        msg = "CNV file not found"
        raise InputError(msg, file=p, field="cnv")
    sfx = _suffixes(p)
    try:
        if ".parquet" in sfx:
            table = pd.read_parquet(p)
            table = table.set_index(table.columns[0])
        else:
            sep = "\t" if (".tsv" in sfx or ".txt" in sfx) else ","
            table = pd.read_csv(p, sep=sep, index_col=0, compression="infer", low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        msg = f"not a readable CNV table ({exc})"
        raise InputError(msg, file=p, field="cnv") from exc
    table.index = pd.Index(table.index.astype(str))
    table.columns = pd.Index(table.columns.astype(str))
    _check_unique(table.index, p, "cnv", "patient", hint="one row per patient")
    return numeric_table(table, file=p, field="cnv")


def numeric_table(table: pd.DataFrame, *, file: Path | None, field: str) -> pd.DataFrame:
    """``table`` as float64; a column holding non-numeric text is an error naming it."""
    out = table.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    bad = out.isna() & table.notna()
    if bad.to_numpy().any():
        col = str(bad.columns[bad.any(axis=0).to_numpy()][0])
        row = str(bad.index[bad[col].to_numpy()][0])
        msg = f"column {col!r} holds a non-numeric value {table.at[row, col]!r}"
        raise InputError(msg, file=file, patient=row, field=field)
    return out


def split_wide(wide: pd.DataFrame, datatypes: Iterable[str] = DATATYPES) -> dict[str, pd.DataFrame]:
    """Per-datatype tables from a TCGA wide table (``<GENE>_rnaseq`` / ``_mut`` / ``_cnv``); other columns ignored."""
    index = pd.Index(wide.index.astype(str))
    _check_unique(index, None, "wide", "patient", hint="the wide table must have one row per patient")
    out: dict[str, pd.DataFrame] = {}
    for dt in datatypes:
        suffix = WIDE_SUFFIX[dt]
        cols = [c for c in wide.columns if isinstance(c, str) and c.endswith(suffix) and len(c) > len(suffix)]
        if not cols:
            continue
        t = wide[cols].copy()
        t.index = index
        t.columns = pd.Index([c[: -len(suffix)] for c in cols])
        out[dt] = numeric_table(t, file=None, field=f"wide.<GENE>{suffix}")
    return out


def _check_unique(index: pd.Index, file: Path | None, field: str, what: str, *, hint: str) -> None:
    if not index.is_unique:
        dup = index[index.duplicated()].unique().tolist()
        msg = f"{len(dup)} duplicate {what} id(s), e.g. {dup[:3]}"
        raise InputError(msg, file=file, patient=dup[0] if what == "patient" else None, field=field, hint=hint)


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
        tables["mut"] = read_maf(_under(Path(source.mutations), root), samples, source.mutation_patient_pattern)
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
