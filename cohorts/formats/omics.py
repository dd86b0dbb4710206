"""Genomics inputs: each reader returns a patients × genes table (float64, NaN = not measured).

* expression: AnnData ``.h5ad``; raw counts in ``layers["counts"]`` are normalized (scanpy ``normalize_total`` to 1e4
  per patient, then ``log1p``), otherwise ``X`` is taken as already log-scale (with a warning, once per file).
* mutations: MAF (tab-separated, or comma-separated when named ``.csv``; leading ``#`` lines allowed) → 0/1 non-silent status per gene; every sequenced sample
  (the explicit sample list, else every sample in the MAF) gets a row, so unmutated samples are 0, not missing.
* CNV: a patients × genes table (first column = patient id): ``.csv``, ``.tsv`` / ``.txt`` (optionally compressed) or
  ``.parquet``.
* wide: the TCGA convention ``<GENE>_rnaseq`` / ``<GENE>_mut`` / ``<GENE>_cnv`` columns, indexed by patient id.

Every value is checked: infinite values (in ``X``, ``layers["counts"]``, a CNV or wide table) are an error naming
the file, the patient and the gene; so are duplicate patient ids. Patient ids are read as text with no missing-value
parsing (a patient may be called "NA"). Loading and ``validate`` use the same helpers (:func:`read_h5ad_obs`,
:func:`read_maf_columns`, :func:`expression_ids`, :func:`sample_to_patient`), so the rules are the same everywhere.

The readers are pure (no standardization): the adapter fits that on training patients only.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from multimodal.cohorts.formats.tables import norm_id, read_delimited, table_kind
from multimodal.errors import InputError, Problem

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
    ids_or_problem = expression_ids(adata.obs, patient_column, p)
    if isinstance(ids_or_problem, Problem):
        raise InputError(problems=[ids_or_problem])
    ids = pd.Index(ids_or_problem)
    genes = pd.Index(adata.var_names.astype(str))
    _check_unique(genes, p, "var_names", "gene", hint="make gene symbols unique (e.g. sum or drop duplicates)")
    if COUNTS_LAYER in adata.layers:
        counts = _dense(adata.layers[COUNTS_LAYER])
        check_finite_matrix(counts, p, ids, genes, "layers.counts", allow_nan=False)
        values, source = _normalize_counts(counts, p), "counts"
    else:
        if str(p) not in _warned_log_scale:
            _warned_log_scale.add(str(p))
            warnings.warn(
                f"{p}: no layers['counts']; using X as already log-scale expression", UserWarning, stacklevel=2
            )
        values, source = _dense(adata.X), "X"
        check_finite_matrix(values, p, ids, genes, "X", allow_nan=True)
    return pd.DataFrame(values, index=ids, columns=genes), source


def expression_ids(obs: pd.DataFrame, patient_column: str | None, path: Path) -> list[str] | Problem:
    """The patient id of each AnnData row (``obs_names``, or ``obs[patient_column]``) as text, or the problem: a
    missing column, an empty id, or a patient twice (one expression profile per patient)."""
    if patient_column is None:
        values, id_field = obs.index, "obs_names"
    elif patient_column not in obs.columns:
        hint = f"obs columns: {', '.join(map(str, obs.columns)) or '(none)'}"
        return Problem(f"obs has no patient column {patient_column!r}", file=str(path),
                       field="expression_patient_column", hint=hint)
    else:
        values, id_field = obs[patient_column], f"obs.{patient_column}"
    ids = [norm_id(v) for v in np.asarray(values, dtype=object)]
    if None in ids:
        row = ids.index(None)
        return Problem(f"AnnData row {row} has an empty patient id", file=str(path), field=id_field,
                       hint="every expression profile needs its patient id")
    seen: dict[str, int] = {}
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
    dup = [i for i, n in seen.items() if n > 1]
    if dup:
        return Problem(f"{len(dup)} patient(s) have more than one expression profile, e.g. {dup[:3]}",
                       file=str(path), patient=dup[0], field=id_field,
                       hint="keep one expression profile per patient (or set expression_patient_column)")
    return [str(i) for i in ids]


def check_finite_matrix(values: np.ndarray, path: Path | None, rows: Sequence[Any], cols: Sequence[Any], field: str,
                        *, allow_nan: bool) -> None:
    """Raise an :class:`InputError` naming the file, the first patient and gene when ``values`` holds inf (and NaN
    unless ``allow_nan``: NaN = not measured)."""
    bad = np.isinf(values) if allow_nan else ~np.isfinite(values)
    if not bad.any():
        return
    r, c = (int(v[0]) for v in np.nonzero(bad))
    what = "infinite" if allow_nan else "infinite or NaN"
    msg = (f"{int(bad.sum())} {what} value(s) in {field}, e.g. patient {str(rows[r])!r}, gene {str(cols[c])!r} "
           f"({values[r, c]})")
    raise InputError(msg, file=path, patient=str(rows[r]), field=f"{field}[{str(cols[c])!r}]",
                     hint="every measured value must be a finite number (leave an unmeasured one empty / NaN)")


def read_h5ad_obs(path: Path) -> pd.DataFrame:
    """The ``obs`` table of an ``.h5ad`` without reading ``X`` or the layers."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        if "obs" not in f:
            raise InputError("not an AnnData file: no 'obs' group", file=path, field="obs")
        return read_elem(f["obs"])


def _dense(x: object) -> np.ndarray:
    arr = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return np.asarray(arr, dtype=np.float64)


def _normalize_counts(counts: object, path: Path) -> np.ndarray:
    """scanpy ``normalize_total(target_sum=1e4)`` + ``log1p`` on a float64 copy of the counts."""
    import anndata
    import scanpy as sc

    x = _dense(counts)
    if not np.isfinite(x).all() or (x < 0).any():
        msg = "layers['counts'] holds negative or non-finite values"
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
        pid = sample_to_patient(s, rx)
        if pid is None:
            bad.append(s)
            continue
        out[s] = pid
    if bad:
        msg = f"{len(bad)} sample id(s) do not match mutation_patient_pattern {pattern!r}, e.g. {bad[:3]}"
        raise InputError(msg, file=file, patient=bad[0], field="mutation_patient_pattern")
    return out


def sample_to_patient(sample: str, pattern: re.Pattern[str]) -> str | None:
    """The patient of a sample id: the ``patient`` group of ``pattern`` (searched), else group 1, else the whole
    match; None when it does not match."""
    m = pattern.search(sample)
    if m is None:
        return None
    if "patient" in pattern.groupindex:
        return m.group("patient")
    return m.group(1) if pattern.groups else m.group(0)


def read_sample_list(path: str | Path) -> list[str]:
    """One sample id per line; blank lines and ``#`` lines skipped."""
    p = Path(path)
    if not p.is_file():
        msg = "mutation sample list not found"
        raise InputError(msg, file=p, field="mutation_samples")
    with _open_text(p) as fh:
        ids = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    return list(dict.fromkeys(ids))


def _maf_sep(path: Path) -> str:
    return "," if table_kind(path) == "csv" else "\t"


def maf_header(path: Path) -> list[str]:
    """The column names of a MAF (after its ``#`` lines); an :class:`InputError` when it does not parse."""
    try:
        return [str(c) for c in pd.read_csv(path, sep=_maf_sep(path), skiprows=_comment_lines(path), nrows=0,
                                            compression="infer").columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        kind = "comma" if _maf_sep(path) == "," else "tab"
        msg = f"not a readable {kind}-separated MAF ({type(exc).__name__}: {exc})"
        raise InputError(msg, file=path, field="mutations") from exc


def read_maf_columns(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The MAF's ``columns`` (default all) as text; the required columns have no missing-value parsing."""
    usecols = None if columns is None else (lambda c: c in set(columns))
    return read_delimited(path, _maf_sep(path), MAF_REQUIRED, all_text=True,
                          skiprows=_comment_lines(path), usecols=usecols)


def read_maf(path: str | Path, samples: str | Path | None = None, pattern: str = r"^(?P<patient>.+)$", *,
             known: Iterable[str] | None = None) -> pd.DataFrame:
    """Non-silent mutation status (0/1) per patient × gene.

    Rows: the patients of all sequenced samples (``samples`` file if given, else every sample in the MAF, silent-only
    ones included). Columns: genes with at least one non-silent call. A patient with several samples is mutated if
    any sample is. A MAF sample absent from an explicit sample list is an error (ids probably formatted differently),
    unless ``known`` (the cohort's patients) is given and the sample's patient is not among them: such calls are
    ignored, as loading ignores every patient the patient table lacks.
    """
    p = Path(path)
    if not p.is_file():
        msg = "MAF file not found"
        raise InputError(msg, file=p, field="mutations")
    header = maf_header(p)
    missing = [c for c in MAF_REQUIRED if c not in header]
    if missing:
        msg = f"MAF lacks required column(s) {missing}"
        raise InputError(msg, file=p, field=missing[0], hint=f"required: {', '.join(MAF_REQUIRED)}")
    maf = read_maf_columns(p, MAF_REQUIRED).fillna("")
    for col in MAF_REQUIRED:
        maf[col] = maf[col].str.strip()
    maf_samples = list(dict.fromkeys(maf["Tumor_Sample_Barcode"]))
    if samples is not None:
        sequenced = read_sample_list(samples)
        unknown = sorted(set(maf_samples) - set(sequenced))
        if known is not None and unknown:  # calls of patients outside the cohort: ignored
            rx, cohort = compile_patient_pattern(pattern), set(known)
            outside = {s for s in unknown if (sample_to_patient(s, rx) or s) not in cohort}
            maf = maf[~maf["Tumor_Sample_Barcode"].isin(outside)]
            unknown = [s for s in unknown if s not in outside]
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
            table = read_delimited(p, sep, [0])  # the id column as text: a patient may be called "NA"
            table = table.set_index(table.columns[0])
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
    check_finite_matrix(out.to_numpy(), file, out.index, out.columns, field, allow_nan=True)
    return out


def split_wide(wide: pd.DataFrame, datatypes: Iterable[str] = DATATYPES, *,
               file: Path | None = None) -> dict[str, pd.DataFrame]:
    """Per-datatype tables from a TCGA wide table (``<GENE>_rnaseq`` / ``_mut`` / ``_cnv``); other columns ignored."""
    index = pd.Index(wide.index.astype(str))
    _check_unique(index, file, "wide", "patient", hint="the wide table must have one row per patient")
    out: dict[str, pd.DataFrame] = {}
    for dt in datatypes:
        suffix = WIDE_SUFFIX[dt]
        cols = [c for c in wide.columns if isinstance(c, str) and c.endswith(suffix) and len(c) > len(suffix)]
        if not cols:
            continue
        t = wide[cols].copy()
        t.index = index
        t.columns = pd.Index([c[: -len(suffix)] for c in cols])
        out[dt] = numeric_table(t, file=file, field=f"wide.<GENE>{suffix}")
    return out


def _check_unique(index: pd.Index, file: Path | None, field: str, what: str, *, hint: str) -> None:
    if not index.is_unique:
        dup = index[index.duplicated()].unique().tolist()
        msg = f"{len(dup)} duplicate {what} id(s), e.g. {dup[:3]}"
        raise InputError(msg, file=file, patient=dup[0] if what == "patient" else None, field=field, hint=hint)
