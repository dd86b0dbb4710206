"""Gene-set files: GMT (MSigDB) and signature CSVs (one column per set, gene symbols, NaN padded).

Both readers return :class:`GeneSet` objects in file order, with each set's genes stripped, de-duplicated (first
occurrence kept) and in file order. Errors are :class:`~multimodal.errors.InputError` naming the file, the line or
column, and the ``gene_sets`` config field.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from multimodal.errors import InputError

#: The config field the gene-set path comes from (named in every error).
FIELD = "gene_sets"
GMT_SUFFIXES = (".gmt",)
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")


@dataclass(frozen=True)
class GeneSet:
    """One gene set (a pathway or a gene family)."""

    name: str
    genes: tuple[str, ...]
    description: str = ""


def _unique(genes: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(g for g in genes if g))


def _check_unique_names(sets: list[GeneSet], path: Path) -> None:
    seen: set[str] = set()
    for s in sets:
        if s.name in seen:
            msg = f"gene set {s.name!r} appears more than once"
            raise InputError(msg, file=path, field=FIELD, hint="gene-set names must be unique")
        seen.add(s.name)


def read_gmt(path: str | Path) -> list[GeneSet]:
    """Read a GMT file: one set per line, ``name<TAB>description<TAB>gene<TAB>gene...``.

    Blank lines and lines starting with ``#`` are skipped. A line with fewer than two fields is an error.
    """
    p = _existing(path)
    sets: list[GeneSet] = []
    with open(p, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            parts = [x.strip() for x in line.split("\t")]
            if len(parts) < 2 or not parts[0]:
                msg = f"line {lineno}: expected 'name<TAB>description<TAB>genes...', got {line[:80]!r}"
                raise InputError(msg, file=p, field=FIELD, hint="GMT fields are tab-separated")
            sets.append(GeneSet(name=parts[0], description=parts[1], genes=_unique(parts[2:])))
    _check_unique_names(sets, p)
    return sets


def read_signature_csv(path: str | Path) -> list[GeneSet]:
    """Read a signature table: each column is a set (header = name), its cells gene symbols (empty / NaN = padding)."""
    p = _existing(path)
    sep = "\t" if p.suffix.lower() in (".tsv", ".txt") else ","
    try:
        table = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        msg = f"not a readable signature table ({exc})"
        raise InputError(msg, file=p, field=FIELD) from exc
    # pandas renames duplicate headers to "name.1"; read the raw header to catch them.
    with open(p, encoding="utf-8", newline="") as fh:
        header = [h.strip() for h in next(csv.reader(fh, delimiter=sep))]
    sets = []
    for name, col in zip(header, table.columns, strict=True):
        genes = [str(v).strip() for v in table[col].dropna()]
        sets.append(GeneSet(name=name, genes=_unique(genes)))
    _check_unique_names(sets, p)
    return sets


def read_gene_sets(path: str | Path) -> list[GeneSet]:
    """Read a ``.gmt`` file or a signature ``.csv`` / ``.tsv``, chosen by suffix."""
    p = _existing(path)
    suffix = p.suffix.lower()
    if suffix in GMT_SUFFIXES:
        return read_gmt(p)
    if suffix in TABLE_SUFFIXES:
        return read_signature_csv(p)
    msg = f"unknown gene-set file type {suffix!r}; expected one of {[*GMT_SUFFIXES, *TABLE_SUFFIXES]}"
    raise InputError(msg, file=p, field=FIELD)


def resolve_gene_set_path(path: str, root: Path | None) -> Path:
    """``path`` as given if absolute, else relative to ``root`` (the cohort folder; the working directory if None)."""
    p = Path(path).expanduser()
    if not p.is_absolute() and root is not None:
        p = Path(root) / p
    return p


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        msg = "gene-set file not found"
        raise InputError(msg, file=p, field=FIELD, hint="relative paths are resolved against the cohort folder")
    return p
