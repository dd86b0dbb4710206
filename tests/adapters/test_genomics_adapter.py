"""Genomics adapter: AnnData / MAF / CNV / wide-table inputs → pathway, gene-family and gene tokens."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import torch

from multimodal.adapters.base import Adapter
from multimodal.adapters.genomics import SET_SCORE, GenomicsAdapter, GenomicsAdapterConfig
from multimodal.adapters.omics_io import read_cnv, read_expression, read_maf
from multimodal.cohorts import Cohort, OmicsSource
from multimodal.config import from_dict
from multimodal.errors import ConfigError, InputError
from multimodal.registry import create_adapter, list_adapters
from multimodal.types import collate_streams

GENES = ("TP53", "EGFR", "KRAS", "MYC", "PTEN", "RB1")
TCGA = r"^(?P<patient>TCGA-\w\w-\w{4})"


# ---- helpers ----------------------------------------------------------------------------------------------------
def _cohort(ids: list[str], source: OmicsSource, root: Path) -> Cohort:
    patients = pd.DataFrame(
        {"time": np.arange(1.0, len(ids) + 1.0), "event": [i % 2 == 0 for i in range(len(ids))]},
        index=pd.Index(ids),
    )
    return Cohort("test", patients=patients, modalities={"genomics": source}, root=root)


def _wide(n: int = 24, seed: int = 0) -> pd.DataFrame:
    """TCGA-style wide table; rna variance grows with the gene's position in GENES (RB1 most variable)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for j, g in enumerate(GENES):
        cols[f"{g}_rnaseq"] = rng.normal(0.0, 1.0 + j, n)
        cols[f"{g}_mut"] = (np.arange(n) % (j + 2) == 0).astype(float)
        cols[f"{g}_cnv"] = rng.integers(-2, 3, n).astype(float)
    return pd.DataFrame(cols, index=pd.Index([f"P{i:02d}" for i in range(n)]))


def _write_gmt(path: Path) -> Path:
    path.write_text(
        "PATH_A\tdesc a\tTP53\tEGFR\tNOT_A_GENE\n"
        "PATH_B\tdesc b\tKRAS\tMYC\tPTEN\tRB1\n"
        "ONLY_ABSENT\tdesc c\tABSENT1\tABSENT2\n"
    )
    return path


def _state(adapter: GenomicsAdapter) -> tuple[dict[str, torch.Tensor], str]:
    return adapter.state_tensors(), json.dumps(adapter.state_json(), sort_keys=True)


def _same_state(a: GenomicsAdapter, b: GenomicsAdapter) -> bool:
    (ta, ja), (tb, jb) = _state(a), _state(b)
    return ja == jb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


# ---- expression (AnnData) ---------------------------------------------------------------------------------------
def test_h5ad_counts_normalize_log1p_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n, ids = 12, [f"PAT{i}" for i in range(12)]
    counts = rng.poisson(20.0, size=(n, len(GENES))).astype(np.int64)
    obs = pd.DataFrame({"patient": ids}, index=pd.Index([f"sample{i}" for i in range(n)]))
    adata = anndata.AnnData(X=rng.normal(size=(n, len(GENES))), obs=obs, var=pd.DataFrame(index=pd.Index(GENES)),
                            layers={"counts": counts})
    h5ad = tmp_path / "expr.h5ad"
    adata.write_h5ad(h5ad)

    expected = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)  # normalize_total(1e4) + natural log1p
    table, source = read_expression(h5ad, "patient")
    assert source == "counts"
    assert list(table.index) == ids and list(table.columns) == list(GENES)
    np.testing.assert_allclose(table.to_numpy(), expected, rtol=1e-12, atol=0)

    cohort = _cohort(ids, OmicsSource(expression=h5ad, expression_patient_column="patient"), tmp_path)
    train = ids[:8]
    ad = GenomicsAdapter(tokens="genes", datatypes=("rna",), top_k=len(GENES), winsorize=0.0, clip=None)
    ad.fit(cohort, train)
    z = (expected - expected[:8].mean(axis=0)) / expected[:8].std(axis=0)  # train stats, ddof 0
    for i, pid in enumerate(ids):
        s = ad.transform(pid)
        assert s.features.shape == (1, len(GENES), 1) and s.features.dtype == torch.float32
        got = dict(zip(s.names[0], s.features[0, :, 0].tolist(), strict=True))
        np.testing.assert_allclose([got[g] for g in GENES], z[i], rtol=1e-5, atol=1e-5)
    assert ad.report()["sources"] == {"rna": "counts"}


def test_h5ad_without_counts_uses_x_and_warns_once(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    adata = anndata.AnnData(X=x, obs=pd.DataFrame(index=pd.Index(["a", "b", "c", "d"])),
                            var=pd.DataFrame(index=pd.Index(["G1", "G2", "G3"])))
    h5ad = tmp_path / "logx.h5ad"
    adata.write_h5ad(h5ad)
    with pytest.warns(UserWarning, match="already log-scale"):
        table, source = read_expression(h5ad)
    assert source == "X" and list(table.index) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(table.to_numpy(), x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_expression(h5ad)  # second read: no second warning


def test_h5ad_without_patient_column_names_file_and_field(tmp_path: Path) -> None:
    adata = anndata.AnnData(X=np.ones((2, 2)), obs=pd.DataFrame({"sample": ["s1", "s2"]}, index=pd.Index(["x", "y"])))
    h5ad = tmp_path / "expr.h5ad"
    adata.write_h5ad(h5ad)
    cohort = _cohort(["x", "y"], OmicsSource(expression=h5ad, expression_patient_column="case_id"), tmp_path)
    with pytest.raises(InputError, match="no patient column 'case_id'") as exc:
        GenomicsAdapter(datatypes=("rna",)).fit(cohort, ["x"])
    assert exc.value.file == str(h5ad) and exc.value.field == "expression_patient_column"
    assert "sample" in str(exc.value)  # the hint lists the obs columns


# ---- mutations (MAF) --------------------------------------------------------------------------------------------
def _write_maf(path: Path, rows: list[tuple[str, str, str]], columns: tuple[str, ...] | None = None) -> Path:
    cols = columns or ("Hugo_Symbol", "Entrez_Gene_Id", "Variant_Classification", "Tumor_Sample_Barcode",
                       "HGVSp_Short")
    df = pd.DataFrame([{"Hugo_Symbol": g, "Entrez_Gene_Id": 0, "Variant_Classification": v,
                        "Tumor_Sample_Barcode": s, "HGVSp_Short": "p.X1#"} for g, v, s in rows])
    with open(path, "w", newline="") as fh:
        fh.write("#version 2.4\n#filedate 20240101\n")
        df[[c for c in cols if c in df.columns]].to_csv(fh, sep="\t", index=False, lineterminator="\n")
    return path


MAF_ROWS = [
    ("TP53", "Missense_Mutation", "TCGA-AA-0001-01A"),
    ("KRAS", "Silent", "TCGA-AA-0001-01A"),
    ("KRAS", "Nonsense_Mutation", "TCGA-AA-0002-01A"),
    ("TP53", "Intron", "TCGA-AA-0002-01A"),
    ("PIK3CA", "Silent", "TCGA-AA-0003-01A"),
    ("TP53", "Splice_Site", "TCGA-AA-0005-01B"),
]


def test_maf_non_silent_status_and_sequenced_samples(tmp_path: Path) -> None:
    maf = _write_maf(tmp_path / "calls.maf", MAF_ROWS)
    samples = tmp_path / "samples.txt"
    samples.write_text("TCGA-AA-0001-01A\nTCGA-AA-0002-01A\nTCGA-AA-0003-01A\nTCGA-AA-0004-01A\n"
                       "TCGA-AA-0005-01A\nTCGA-AA-0005-01B\n")
    table = read_maf(maf, samples, TCGA)
    # PIK3CA has only a silent call → no column; 0004 has no call but was sequenced → a row of zeros
    assert list(table.columns) == ["KRAS", "TP53"]
    assert list(table.index) == ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0003", "TCGA-AA-0004", "TCGA-AA-0005"]
    assert table.loc["TCGA-AA-0001"].tolist() == [0.0, 1.0]  # KRAS silent ignored
    assert table.loc["TCGA-AA-0002"].tolist() == [1.0, 0.0]  # TP53 intron ignored
    assert table.loc["TCGA-AA-0004"].tolist() == [0.0, 0.0]
    assert table.loc["TCGA-AA-0005"].tolist() == [0.0, 1.0]  # two samples: mutated if any is

    ids = ["TCGA-AA-0001", "TCGA-AA-0002", "TCGA-AA-0003", "TCGA-AA-0004", "TCGA-AA-0005", "TCGA-AA-0006"]
    src = OmicsSource(mutations=maf, mutation_samples=samples, mutation_patient_pattern=TCGA)
    cohort = _cohort(ids, src, tmp_path)
    ad = GenomicsAdapter(tokens="genes", datatypes=("mut",)).fit(cohort, ids)
    s4 = ad.transform("TCGA-AA-0004")  # sequenced, unmutated: present with zeros
    assert s4.mask.all() and s4.num_tokens == 2 and torch.equal(s4.features, torch.zeros(1, 2, 1))
    s1 = ad.transform("TCGA-AA-0001")
    assert dict(zip(s1.names[0], s1.features[0, :, 0].tolist(), strict=True)) == {"KRAS": 0.0, "TP53": 1.0}
    assert s1.meta["members"] == (("TP53:mut",), ("KRAS:mut",))  # TP53 (2 of 5 mutated) varies more than KRAS
    s6 = ad.transform("TCGA-AA-0006")  # not sequenced: missing, not unmutated
    assert s6.num_tokens == 0 and s6.features.shape == (1, 0, 1)


def test_maf_without_sample_list_only_knows_samples_with_calls(tmp_path: Path) -> None:
    maf = _write_maf(tmp_path / "calls.maf", MAF_ROWS)
    table = read_maf(maf, None, TCGA)
    assert "TCGA-AA-0003" in table.index  # silent-only sample still sequenced
    assert "TCGA-AA-0004" not in table.index  # no call at all: unknown


def test_maf_lacking_columns_names_file_and_field(tmp_path: Path) -> None:
    maf = _write_maf(tmp_path / "bad.maf", MAF_ROWS, columns=("Hugo_Symbol", "Tumor_Sample_Barcode"))
    cohort = _cohort(["TCGA-AA-0001"], OmicsSource(mutations=maf, mutation_patient_pattern=TCGA), tmp_path)
    with pytest.raises(InputError, match="Variant_Classification") as exc:
        GenomicsAdapter(datatypes=("mut",)).fit(cohort, ["TCGA-AA-0001"])
    assert exc.value.file == str(maf) and exc.value.field == "Variant_Classification"


def test_maf_sample_outside_list_and_bad_pattern(tmp_path: Path) -> None:
    maf = _write_maf(tmp_path / "calls.maf", MAF_ROWS)
    samples = tmp_path / "samples.txt"
    samples.write_text("TCGA-AA-0001\n")  # short ids: do not match the MAF barcodes
    with pytest.raises(InputError, match="not in the sequenced-sample list") as exc:
        read_maf(maf, samples, TCGA)
    assert exc.value.field == "mutation_samples" and exc.value.patient is not None
    with pytest.raises(InputError, match="do not match") as exc2:
        read_maf(maf, None, r"^XYZ-(\d+)")
    assert exc2.value.field == "mutation_patient_pattern" and exc2.value.patient == "TCGA-AA-0001-01A"


# ---- CNV --------------------------------------------------------------------------------------------------------
def test_cnv_table_standardized_missing_value_zero_and_counted(tmp_path: Path) -> None:
    ids = [f"P{i}" for i in range(8)]
    cnv = pd.DataFrame({"TP53": [-2, -1, 0, 0, 1, 2, 1, 0], "MYC": [0, 1, 2, np.nan, 1, 0, 0, np.nan]},
                       index=pd.Index(ids, name="patient"))
    path = tmp_path / "cnv.tsv"
    cnv.to_csv(path, sep="\t")
    assert read_cnv(path).equals(cnv.astype(np.float64).rename_axis(None))
    cohort = _cohort([*ids, "P_no_cnv"], OmicsSource(cnv=path), tmp_path)
    train = ids[:6]
    ad = GenomicsAdapter(tokens="genes", datatypes=("cnv",), clip=None).fit(cohort, train)
    tr = cnv.loc[train]
    for pid in ids:
        s = ad.transform(pid)
        got = dict(zip(s.names[0], s.features[0, :, 0].tolist(), strict=True))
        for g in ("TP53", "MYC"):
            v = cnv.at[pid, g]
            want = 0.0 if np.isnan(v) else (v - np.nanmean(tr[g])) / np.nanstd(tr[g])
            assert got[g] == pytest.approx(want, abs=1e-6)
    rep = ad.report()
    assert rep["train_missing_values"] == {"cnv": 1}  # P3 (train); P7 is held out
    assert rep["bound"]["missing_values"] == {"cnv": 2}
    assert ad.transform("P_no_cnv").num_tokens == 0


def test_cnv_non_numeric_cell_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cnv.csv"
    path.write_text("patient,TP53\nP1,1\nP2,amp\n")
    with pytest.raises(InputError, match="non-numeric value 'amp'") as exc:
        read_cnv(path)
    assert exc.value.file == str(path) and exc.value.patient == "P2" and exc.value.field == "cnv"


# ---- token modes ------------------------------------------------------------------------------------------------
def test_pathway_tokens_members_padding_and_report(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort(list(wide.index), OmicsSource(wide=wide), tmp_path)
    _write_gmt(tmp_path / "sets.gmt")
    ad = GenomicsAdapter(tokens="pathways", gene_sets="sets.gmt", min_genes_per_set=1)  # relative to cohort.root
    ad.fit(cohort, list(wide.index[:16]))
    spec = ad.stream_spec()
    assert spec.kind == "slots" and spec.slot_names == ("PATH_A", "PATH_B") and spec.num_slots == 2
    assert spec.feature_dim == 12  # PATH_B: 4 genes × 3 datatypes; PATH_A has 6 members + 6 zero pads
    s = ad.transform("P20")
    members = s.meta["members"]
    assert members[0] == ("TP53:rna", "TP53:mut", "TP53:cnv", "EGFR:rna", "EGFR:mut", "EGFR:cnv", *[""] * 6)
    assert members[1][:3] == ("KRAS:rna", "KRAS:mut", "KRAS:cnv")
    assert torch.equal(s.features[0, 0, 6:], torch.zeros(6))
    assert s.features.shape == (1, 2, 12) and s.mask.all() and s.names == (("PATH_A", "PATH_B"),)
    rep = ad.report()
    assert rep["n_sets"] == 3 and rep["n_sets_dropped"] == 1 and rep["sets_dropped"] == {"ONLY_ABSENT": 0}
    assert rep["genes_missing"]["PATH_A"] == ["NOT_A_GENE"] and rep["genes_missing_count"]["PATH_B"] == 0
    assert rep["genes_missing_total"] == 3 and rep["memberships_missing"] == 3
    assert rep["genes_requested"] == {"PATH_A": 3, "PATH_B": 4, "ONLY_ABSENT": 2}
    assert ad.state_json()["report"]["genes_missing_total"] == 3  # saved in the state JSON
    # values: P20's TP53 rna standardized with train (P00..P15) statistics, winsorized at 1 % and clipped at 5
    x = wide["TP53_rnaseq"]
    lo, hi = np.quantile(x.iloc[:16], [0.01, 0.99])
    tr = x.iloc[:16].clip(lo, hi)
    want = np.clip((np.clip(x["P20"], lo, hi) - tr.mean()) / tr.std(ddof=0), -5, 5)
    assert s.features[0, 0, 0].item() == pytest.approx(want, abs=1e-5)
    assert s.features[0, 0, 1].item() == wide.at["P20", "TP53_mut"]  # mutations stay 0/1


def test_max_members_keeps_most_variable_genes_and_min_genes_drops(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort(list(wide.index), OmicsSource(wide=wide), tmp_path)
    _write_gmt(tmp_path / "sets.gmt")
    ad = GenomicsAdapter(tokens="pathways", gene_sets="sets.gmt", datatypes=("rna",), max_members=2,
                         min_genes_per_set=3).fit(cohort, list(wide.index[:16]))
    # PATH_A has 2 genes present (< 3) → dropped; PATH_B keeps its 2 most variable genes (PTEN, RB1), in set order
    assert ad.stream_spec().slot_names == ("PATH_B",)
    assert ad.transform("P00").meta["members"] == (("PTEN:rna", "RB1:rna"),)
    rep = ad.report()
    assert rep["members_truncated"] == {"PATH_B": 2} and rep["sets_dropped"] == {"PATH_A": 2, "ONLY_ABSENT": 0}


def test_gene_tokens_top_k_by_train_variance(tmp_path: Path) -> None:
    wide = _wide()
    wide.loc["P00", "TP53_cnv"] = np.nan  # one missing value of a present (train) patient
    cohort = _cohort(list(wide.index), OmicsSource(wide=wide), tmp_path)
    ad = GenomicsAdapter(tokens="genes", top_k=3).fit(cohort, list(wide.index[:16]))
    spec = ad.stream_spec()
    assert spec.slot_names == ("RB1", "PTEN", "MYC") and spec.feature_dim == 3
    s = ad.transform("P00")
    assert s.meta["members"][0] == ("RB1:rna", "RB1:mut", "RB1:cnv")
    full = GenomicsAdapter(tokens="genes", top_k=100).fit(cohort, list(wide.index[:16]))
    assert full.stream_spec().num_slots == len(GENES)
    assert full.report()["train_missing_values"] == {"rna": 0, "mut": 0, "cnv": 1}
    p0 = full.transform("P00")
    assert p0.features[0, list(p0.names[0]).index("TP53"), 2].item() == 0.0  # missing → 0 (the train mean)


def test_centered_mutations(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort(list(wide.index), OmicsSource(wide=wide), tmp_path)
    ad = GenomicsAdapter(tokens="genes", datatypes=("mut",), mutation_encoding="centered").fit(cohort, list(wide.index[:16]))
    freq = wide["TP53_mut"].iloc[:16].mean()  # TP53 mutated in every 2nd patient
    s = ad.transform("P01")
    assert s.features[0, list(s.names[0]).index("TP53"), 0].item() == pytest.approx(0.0 - freq)


def test_family_tokens_from_signature_csv(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort(list(wide.index), OmicsSource(wide=wide), tmp_path)
    pd.DataFrame({"Tumor Suppressor Genes": ["TP53", "PTEN", "RB1"], "Oncogenes": ["EGFR", "KRAS", np.nan]}).to_csv(
        tmp_path / "families.csv", index=False)
    ad = GenomicsAdapter(tokens="families", gene_sets=str(tmp_path / "families.csv"), datatypes=("rna", "cnv"))
    ad.fit(cohort, list(wide.index[:16]))
    assert ad.stream_spec().slot_names == ("Tumor Suppressor Genes", "Oncogenes")
    assert ad.stream_spec().feature_dim == 6
    assert ad.transform("P01").meta["members"][1] == ("EGFR:rna", "EGFR:cnv", "KRAS:rna", "KRAS:cnv", "", "")


# ---- state, leakage, missing patients ---------------------------------------------------------------------------
def test_save_load_round_trip_identical(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort(list(wide.index), OmicsSource(wide=wide), tmp_path)
    _write_gmt(tmp_path / "sets.gmt")
    ad = GenomicsAdapter(tokens="pathways", gene_sets="sets.gmt").fit(cohort, list(wide.index[:16]))
    ad.save(tmp_path / "state")
    back = Adapter.load(tmp_path / "state")
    assert isinstance(back, GenomicsAdapter) and back.config == ad.config
    back.bind(cohort)
    assert back.stream_spec() == ad.stream_spec() and _same_state(ad, back)
    for pid in wide.index:
        a, b = ad.transform(pid), back.transform(pid)
        assert torch.equal(a.features, b.features) and a.names == b.names and a.meta["members"] == b.meta["members"]
    saved = json.loads((tmp_path / "state" / "adapter.json").read_text())
    assert saved["state"]["report"]["n_sets_dropped"] == 1 and saved["adapter"] == "genomics"


def test_missing_patient_gets_zero_tokens(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort([*wide.index, "NO_OMICS"], OmicsSource(wide=wide), tmp_path)
    ad = GenomicsAdapter(tokens="genes", top_k=4).fit(cohort, list(wide.index[:16]))
    empty = ad.transform("NO_OMICS")
    assert empty.num_tokens == 0 and empty.features.shape == (1, 0, 3) and empty.mask.shape == (1, 0)
    assert ad.num_tokens_hint("NO_OMICS") == 0 and ad.num_tokens_hint("P00") == 4
    batch = collate_streams([ad.transform("P00"), empty])
    assert batch.mask[0].all() and not batch.mask[1].any() and batch.features.shape == (2, 4, 3)


def test_leakage_poisoned_held_out_files_leave_state_identical(tmp_path: Path) -> None:
    """h5ad + MAF + CNV: rewriting every held-out patient's data must not change the fitted state."""
    rng = np.random.default_rng(3)
    ids = [f"TCGA-AA-{i:04d}" for i in range(10)]
    train, held = ids[:6], ids[6:]

    def write(root: Path, poison: bool) -> Cohort:
        root.mkdir()
        counts = rng.poisson(30.0, size=(10, len(GENES))).astype(np.int64)
        cnv = np.tile(np.array([-1.0, 0.0, 1.0, 2.0, 0.0, -2.0]), (10, 1)) + np.arange(10)[:, None] % 3
        rows = [(g, "Missense_Mutation", f"{p}-01A") for p in ids for g in GENES[:3] if hash((p, g)) % 2]
        rows += [("TP53", "Missense_Mutation", f"{ids[0]}-01A"), ("TP53", "Missense_Mutation", f"{ids[9]}-01A")]
        if poison:
            counts[6:] = counts[6:] * 1000 + 7
            cnv[6:] = 99.0
            rows += [("NEWGENE", "Nonsense_Mutation", f"{p}-01A") for p in held]
            rows += [(g, "Frame_Shift_Del", f"{p}-01A") for p in held for g in GENES]
        adata = anndata.AnnData(X=np.zeros((10, len(GENES))), obs=pd.DataFrame(index=pd.Index(ids)),
                                var=pd.DataFrame(index=pd.Index(GENES)), layers={"counts": counts})
        adata.write_h5ad(root / "expr.h5ad")
        pd.DataFrame(cnv, index=pd.Index(ids), columns=list(GENES)).to_csv(root / "cnv.csv")
        _write_maf(root / "calls.maf", rows)
        (root / "samples.txt").write_text("".join(f"{p}-01A\n" for p in ids))
        _write_gmt(root / "sets.gmt")
        src = OmicsSource(expression=root / "expr.h5ad", mutations=root / "calls.maf",
                          mutation_samples=root / "samples.txt", mutation_patient_pattern=TCGA, cnv=root / "cnv.csv")
        return _cohort(ids, src, root)

    state = np.random.get_state()
    rng = np.random.default_rng(3)
    clean = write(tmp_path / "clean", poison=False)
    rng = np.random.default_rng(3)
    dirty = write(tmp_path / "dirty", poison=True)
    np.random.set_state(state)
    for tokens in ("pathways", "genes"):
        a = GenomicsAdapter(tokens=tokens, gene_sets="sets.gmt").fit(clean, train)
        b = GenomicsAdapter(tokens=tokens, gene_sets="sets.gmt").fit(dirty, train)
        assert _same_state(a, b), tokens
        assert "NEWGENE:mut" not in json.dumps(b.state_json())
        for pid in train:
            assert torch.equal(a.transform(pid).features, b.transform(pid).features)
        assert not torch.equal(a.transform(held[0]).features, b.transform(held[0]).features)  # poison reached them


# ---- errors, config, registry -----------------------------------------------------------------------------------
def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="did you mean 'pathways'") as exc:
        from_dict(GenomicsAdapterConfig, {"tokens": "pathway", "gene_sets": "x.gmt"})
    assert exc.value.field == "tokens"
    with pytest.raises(ConfigError) as exc2:
        from_dict(GenomicsAdapterConfig, {"tokens": "pathways"})
    assert exc2.value.field == "gene_sets"
    with pytest.raises(ConfigError, match="did you mean 'top_k'"):
        GenomicsAdapter(topk=5)
    with pytest.raises(ConfigError) as exc3:
        GenomicsAdapter(datatypes=["rna", "methylation"])
    assert exc3.value.field == "datatypes[1]"
    with pytest.raises(ConfigError) as exc4:
        GenomicsAdapter(clip=-1.0)
    assert exc4.value.field == "clip"


def test_gene_set_file_missing_names_resolved_path(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort(list(wide.index), OmicsSource(wide=wide), tmp_path)
    with pytest.raises(InputError, match="gene-set file not found") as exc:
        GenomicsAdapter(tokens="pathways", gene_sets="missing/h.gmt").fit(cohort, list(wide.index))
    assert exc.value.file == str(tmp_path / "missing" / "h.gmt") and exc.value.field == "gene_sets"


def test_fit_errors_name_patient_and_field(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort([*wide.index, "EXTRA"], OmicsSource(wide=wide), tmp_path)
    with pytest.raises(InputError) as exc:
        GenomicsAdapter().fit(cohort, ["P00", "nobody"])
    assert exc.value.patient == "nobody"
    with pytest.raises(InputError, match="none of the 1 training patients") as exc2:
        GenomicsAdapter().fit(cohort, ["EXTRA"])
    assert exc2.value.field == "modalities.genomics"
    rna_only = _cohort(list(wide.index), OmicsSource(wide=wide.filter(like="_rnaseq")), tmp_path)
    with pytest.raises(InputError, match="none of the datatypes") as exc3:
        GenomicsAdapter(datatypes=("mut",)).fit(rna_only, list(wide.index))
    assert exc3.value.field == "datatypes"
    ad = GenomicsAdapter().fit(rna_only, list(wide.index))
    assert ad.report()["datatypes_unavailable"] == ["mut", "cnv"] and ad.stream_spec().feature_dim == 1


def test_registered_and_fast(tmp_path: Path) -> None:
    assert "genomics" in list_adapters()
    wide = _wide(n=60)
    cohort = _cohort(list(wide.index), OmicsSource(wide=wide), tmp_path)
    ad = create_adapter("genomics", tokens="genes", top_k=6)
    assert isinstance(ad, GenomicsAdapter)
    ad.fit(cohort, list(wide.index[:40]))
    ad.transform("P00")
    t0 = time.perf_counter()
    for pid in wide.index:
        ad.transform(pid)
    per_call = (time.perf_counter() - t0) / len(wide)
    assert per_call < 1e-3, f"transform took {per_call * 1e6:.0f} µs"


# ---- real TCGA data ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blca(shared_data: Path) -> tuple[Cohort, list[str], list[str]]:
    df = pd.read_csv(shared_data / "tcga_porpoise/datasets_csv_mutsig/tcga_blca_all_clean.csv.zip",
                     compression="zip", low_memory=False)
    df = df.drop_duplicates("case_id").set_index("case_id")
    wide = df[[c for c in df.columns if c.endswith(("_rnaseq", "_mut", "_cnv"))]]
    patients = pd.DataFrame({"time": df["survival_months"].astype(float), "event": df["censorship"] == 0})
    cohort = Cohort("tcga_blca", patients=patients, modalities={"genomics": OmicsSource(wide=wide)}, root=shared_data)
    split = pd.read_csv(shared_data / "tcga_porpoise/splits/5foldcv/tcga_blca/splits_0.csv")
    return cohort, split["train"].dropna().tolist(), split["val"].dropna().tolist()


HALLMARKS = "tcga_survpath/metadata/hallmarks_signatures.csv"
FAMILIES = "tcga_porpoise/datasets_csv/signatures.csv"


@pytest.mark.shared_data
def test_real_blca_hallmarks_and_families(blca: tuple[Cohort, list[str], list[str]], shared_data: Path) -> None:
    cohort, train, val = blca
    assert len(cohort) == 373
    ad = GenomicsAdapter(tokens="pathways", gene_sets=HALLMARKS).fit(cohort, train)
    rep = ad.report()
    wide = cohort.modalities["genomics"].wide
    sets = pd.read_csv(shared_data / HALLMARKS)
    requested = {g for c in sets.columns for g in sets[c].dropna()}
    mutated = wide.loc[train].filter(like="_mut").sum() > 0
    present = ({c[: -len("_rnaseq")] for c in wide.columns if c.endswith("_rnaseq")}
               | {c[: -len("_cnv")] for c in wide.columns if c.endswith("_cnv")}
               | {c[: -len("_mut")] for c, m in mutated.items() if m})
    assert rep["n_sets"] == 50 and rep["genes_requested_total"] == 4241 and rep["memberships_requested"] == 7110
    assert rep["genes_missing_total"] == len(requested - present)
    print(f"\nBLCA × Hallmarks: {rep['genes_missing_total']} of 4241 genes missing, "
          f"{rep['memberships_missing']} of 7110 memberships; tokens {rep['n_tokens']} × F={rep['feature_dim']}; "
          f"features {rep['features_per_datatype']}; sets dropped {rep['n_sets_dropped']}")
    s = ad.transform(val[0])
    assert s.features.shape == (1, rep["n_tokens"], rep["feature_dim"]) and s.mask.all()
    assert float(s.features.abs().max()) <= 5.0  # clipped (BLCA z-scores reach 14070)
    assert all(len(m) == rep["feature_dim"] for m in s.meta["members"])
    fam = GenomicsAdapter(tokens="families", gene_sets=FAMILIES).fit(cohort, train)
    frep = fam.report()
    assert frep["n_tokens"] == 6 and fam.stream_spec().slot_names[0] == "Tumor Suppressor Genes"
    print(f"BLCA × families: {frep['genes_missing_total']} of {frep['genes_requested_total']} genes missing; "
          f"F={frep['feature_dim']}")
    genes = GenomicsAdapter(tokens="genes", top_k=64).fit(cohort, train)
    assert genes.stream_spec().num_slots == 64 and genes.stream_spec().feature_dim == 3


@pytest.mark.shared_data
def test_real_blca_poisoned_held_out_leaves_state_bit_identical(blca: tuple[Cohort, list[str], list[str]]) -> None:
    cohort, train, val = blca
    src = cohort.modalities["genomics"]
    wide = src.wide.copy()
    rna = [c for c in wide.columns if c.endswith("_rnaseq")]
    mut = [c for c in wide.columns if c.endswith("_mut")]
    wide.loc[val, rna] = 1e6
    wide.loc[val, mut] = 1.0 - wide.loc[val, mut]
    wide.loc[val, [c for c in wide.columns if c.endswith("_cnv")]] = np.nan
    poisoned = Cohort(cohort.name, patients=cohort.patients.copy(), modalities={"genomics": OmicsSource(wide=wide)},
                      root=cohort.root)
    a = GenomicsAdapter(tokens="pathways", gene_sets=HALLMARKS).fit(cohort, train)
    b = GenomicsAdapter(tokens="pathways", gene_sets=HALLMARKS).fit(poisoned, train)
    assert _same_state(a, b)
    assert torch.equal(a.transform(train[0]).features, b.transform(train[0]).features)
    assert a.report()["bound"]["missing_values"]["cnv"] == 0
    n_cnv = b.report()["features_per_datatype"]["cnv"]
    assert b.report()["bound"]["missing_values"]["cnv"] == len(val) * n_cnv  # held-out NaNs: zeros, counted


def test_set_score_is_the_scaled_sum_of_the_rna_members(tmp_path: Path) -> None:
    wide = _wide()
    cohort = _cohort([*wide.index, "NO_OMICS"], OmicsSource(wide=wide), tmp_path)
    _write_gmt(tmp_path / "sets.gmt")
    plain = GenomicsAdapter(tokens="pathways", gene_sets="sets.gmt").fit(cohort, list(wide.index[:16]))
    ad = GenomicsAdapter(tokens="pathways", gene_sets="sets.gmt", set_score=True).fit(cohort, list(wide.index[:16]))
    assert ad.stream_spec().feature_dim == plain.stream_spec().feature_dim + 1 == 13
    s, p = ad.transform("P20"), plain.transform("P20")
    assert torch.equal(s.features[..., :-1], p.features)  # the members are unchanged
    assert s.meta["members"][0][-1] == SET_SCORE and s.meta["members"][1][:-1] == p.meta["members"][1]
    for i, members in enumerate(p.meta["members"]):
        rna = [j for j, m in enumerate(members) if m.endswith(":rna")]
        want = p.features[0, i, rna].sum() / len(rna) ** 0.5  # PATH_A: TP53, EGFR; PATH_B: KRAS, MYC, PTEN, RB1
        assert s.features[0, i, -1].item() == pytest.approx(want.item(), abs=1e-5)
    assert ad.transform("NO_OMICS").features.shape == (1, 0, 13)
    ad.save(tmp_path / "state")
    back = Adapter.load(tmp_path / "state").bind(cohort)
    assert torch.equal(back.transform("P20").features, s.features)
    with pytest.raises(ConfigError) as exc:
        GenomicsAdapter(tokens="genes", set_score=True)
    assert exc.value.field == "set_score"
