"""Gene-set readers: GMT and signature CSV files (synthetic and the real Hallmarks / gene-family files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multimodal.adapters.genesets import (
    GeneSet,
    read_gene_sets,
    read_gmt,
    read_signature_csv,
    resolve_gene_set_path,
)
from multimodal.errors import InputError


def test_gmt_name_description_genes(tmp_path: Path) -> None:
    gmt = tmp_path / "sets.gmt"
    gmt.write_text(
        "# a comment line\n"
        "HALLMARK_A\thttp://www.gsea-msigdb.org/a\tTP53\tEGFR\tTP53\tKRAS\n"
        "\n"
        "SET_B\t\tMYC\r\n"
        "EMPTY_SET\tno genes\n"
    )
    sets = read_gmt(gmt)
    assert [s.name for s in sets] == ["HALLMARK_A", "SET_B", "EMPTY_SET"]
    assert sets[0] == GeneSet("HALLMARK_A", ("TP53", "EGFR", "KRAS"), "http://www.gsea-msigdb.org/a")  # deduplicated
    assert sets[1].genes == ("MYC",) and sets[1].description == ""
    assert sets[2].genes == ()
    assert read_gene_sets(gmt) == sets


def test_gmt_bad_line_names_file_and_line(tmp_path: Path) -> None:
    gmt = tmp_path / "bad.gmt"
    gmt.write_text("GOOD\tdesc\tA\nonly_a_name_no_tabs\n")
    with pytest.raises(InputError, match="line 2") as exc:
        read_gmt(gmt)
    assert exc.value.file == str(gmt) and exc.value.field == "gene_sets"


def test_gmt_duplicate_set_name(tmp_path: Path) -> None:
    gmt = tmp_path / "dup.gmt"
    gmt.write_text("S\td\tA\nS\td\tB\n")
    with pytest.raises(InputError, match="more than once"):
        read_gmt(gmt)


def test_signature_csv_nan_padded(tmp_path: Path) -> None:
    csv = tmp_path / "sig.csv"
    pd.DataFrame({"Tumor Suppressor Genes": ["TP53", "RB1", " PTEN "], "Oncogenes": ["MYC", np.nan, np.nan]}).to_csv(
        csv, index=False
    )
    sets = read_signature_csv(csv)
    assert [(s.name, s.genes) for s in sets] == [
        ("Tumor Suppressor Genes", ("TP53", "RB1", "PTEN")),
        ("Oncogenes", ("MYC",)),
    ]


def test_signature_csv_duplicate_header(tmp_path: Path) -> None:
    csv = tmp_path / "dup.csv"
    csv.write_text("A,A\nTP53,MYC\n")
    with pytest.raises(InputError, match="'A' appears more than once"):
        read_signature_csv(csv)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found") as exc:
        read_gene_sets(tmp_path / "nope.gmt")
    assert exc.value.file == str(tmp_path / "nope.gmt") and exc.value.field == "gene_sets"
    odd = tmp_path / "sets.json"
    odd.write_text("{}")
    with pytest.raises(InputError, match="unknown gene-set file type"):
        read_gene_sets(odd)


def test_resolve_relative_to_root(tmp_path: Path) -> None:
    assert resolve_gene_set_path("a/b.gmt", tmp_path) == tmp_path / "a" / "b.gmt"
    assert resolve_gene_set_path("/abs/x.gmt", tmp_path) == Path("/abs/x.gmt")


@pytest.mark.shared_data
def test_real_hallmarks_and_families(shared_data: Path) -> None:
    hallmarks = read_gene_sets(shared_data / "tcga_survpath/metadata/hallmarks_signatures.csv")
    assert len(hallmarks) == 50
    assert all(s.name.startswith("HALLMARK_") for s in hallmarks)
    # the data README: 7110 memberships over 4241 genes; NOTCH has 31 genes in this filtered copy
    assert sum(len(s.genes) for s in hallmarks) == 7110
    assert len({g for s in hallmarks for g in s.genes}) == 4241
    assert len(next(s for s in hallmarks if s.name == "HALLMARK_NOTCH_SIGNALING").genes) == 31
    families = read_gene_sets(shared_data / "tcga_porpoise/datasets_csv/signatures.csv")
    assert [s.name for s in families] == [
        "Tumor Suppressor Genes", "Oncogenes", "Protein Kinases", "Cell Differentiation Markers",
        "Transcription Factors", "Cytokines and Growth Factors",
    ]
    assert "TP53" in families[0].genes and all(len(s.genes) > 0 for s in families)
