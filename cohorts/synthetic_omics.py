"""Synthetic genomics: pathway-driven RNA counts (``.h5ad``), gene sets (``.gmt``), mutations (``.maf`` + samples).

log mean expression of gene g in patient i = b_g + sum_p W[g, p] * a[i, p] + e[i, g]; counts are negative-binomial
(gamma-Poisson) around ``library_size_i * exp(...)``. Driver mutations follow the latent driver status; passenger and
silent mutations are noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from multimodal.cohorts.synthetic_model import CAUSAL_GENE, DRIVER_GENES, OTHER_NAMED_GENES

NB_DISPERSION = 0.1
GENE_NOISE_SD = 0.3
PATHWAY_SIZE = (12, 30)
DRIVER_CLASSES = (
    ("Missense_Mutation", 0.6), ("Nonsense_Mutation", 0.15), ("Frame_Shift_Del", 0.1),
    ("Frame_Shift_Ins", 0.05), ("Splice_Site", 0.1),
)
PASSENGER_CLASSES = (
    ("Silent", 0.45), ("Missense_Mutation", 0.35), ("Intron", 0.06), ("3'UTR", 0.06),
    ("Nonsense_Mutation", 0.04), ("Frame_Shift_Del", 0.02), ("Splice_Region", 0.02),
)
#: Non-silent classes (maftools ``vc_nonSyn``); the rest count as silent.
NON_SILENT = frozenset({
    "Frame_Shift_Del", "Frame_Shift_Ins", "Splice_Site", "Translation_Start_Site", "Nonsense_Mutation",
    "Nonstop_Mutation", "In_Frame_Del", "In_Frame_Ins", "Missense_Mutation",
})
PASSENGERS_PER_SAMPLE = 4.0
CAUSAL_GENE_SILENT_RATE = 0.12
MAF_COLUMNS = (
    "Hugo_Symbol", "Entrez_Gene_Id", "Center", "NCBI_Build", "Chromosome", "Start_Position", "End_Position", "Strand",
    "Variant_Classification", "Variant_Type", "Reference_Allele", "Tumor_Seq_Allele1", "Tumor_Seq_Allele2",
    "Tumor_Sample_Barcode", "Matched_Norm_Sample_Barcode", "HGVSp_Short", "t_depth", "t_ref_count", "t_alt_count",
)
_AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
_BASES = np.array(list("ACGT"))


@dataclass(frozen=True)
class GenePanel:
    genes: list[str]
    chromosome: list[str]
    start: np.ndarray  # gene start (GRCh38-like)
    length: np.ndarray
    members: dict[str, list[str]]  # pathway -> member genes (GMT order)
    loadings: np.ndarray  # (G, P)
    base: np.ndarray  # (G,) log baseline expression


def gene_symbols(n_genes: int) -> list[str]:
    """Named driver / cancer genes first, then ``GENE<k>`` up to ``n_genes``."""
    named = list(DRIVER_GENES) + list(OTHER_NAMED_GENES)
    width = max(3, len(str(n_genes)))
    return named[:n_genes] + [f"GENE{k:0{width}d}" for k in range(len(named) + 1, n_genes + 1)]


def make_panel(rng: np.random.Generator, n_genes: int, pathways: list[str]) -> GenePanel:
    """Genes, their loci, pathway memberships with loadings, and baseline expression."""
    genes = gene_symbols(n_genes)
    chroms = [str(c) for c in range(1, 23)] + ["X"]
    chromosome = [DRIVER_GENES[g][1] if g in DRIVER_GENES else chroms[int(rng.integers(len(chroms)))] for g in genes]
    start = rng.integers(1_000_000, 200_000_000, size=n_genes)
    length = rng.integers(5_000, 150_000, size=n_genes)
    for i, g in enumerate(genes):
        if g in DRIVER_GENES:
            start[i], length[i] = DRIVER_GENES[g][2], DRIVER_GENES[g][3]
    loadings = np.zeros((n_genes, len(pathways)))
    members: dict[str, list[str]] = {}
    for p, name in enumerate(pathways):
        size = int(min(n_genes, rng.integers(PATHWAY_SIZE[0], PATHWAY_SIZE[1] + 1)))
        idx = np.sort(rng.choice(n_genes, size=size, replace=False))
        sign = np.where(rng.random(size) < 0.85, 1.0, -1.0)
        loadings[idx, p] = sign * rng.uniform(0.4, 0.9, size=size)
        members[name] = [genes[i] for i in idx]
    base = rng.normal(np.log(100.0), 1.0, size=n_genes)
    return GenePanel(genes=genes, chromosome=chromosome, start=start, length=length, members=members,
                     loadings=loadings, base=base)


def write_expression(
    path: Path, rng: np.random.Generator, panel: GenePanel, patient_ids: list[str], sample_ids: list[str],
    activity: np.ndarray,
) -> None:
    """Write the AnnData: X = log1p(counts / total * 1e4) float32, ``layers["counts"]`` int32 raw counts."""
    n, g = activity.shape[0], len(panel.genes)
    log_mean = panel.base[None, :] + activity @ panel.loadings.T + GENE_NOISE_SD * rng.standard_normal((n, g))
    library = rng.lognormal(0.0, 0.25, size=n)
    mean = library[:, None] * np.exp(log_mean)
    lam = rng.gamma(1.0 / NB_DISPERSION, mean * NB_DISPERSION)
    counts = rng.poisson(lam).astype(np.int32)
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
    x = np.log1p(counts / totals * 1e4).astype(np.float32)
    obs = pd.DataFrame({"sample_id": sample_ids, "total_counts": counts.sum(axis=1).astype(np.int64)},
                       index=pd.Index(patient_ids))
    var = pd.DataFrame({"chromosome": pd.Categorical(panel.chromosome)}, index=pd.Index(panel.genes))
    adata = ad.AnnData(X=x, obs=obs, var=var, layers={"counts": counts})
    adata.uns["normalization"] = "X = log1p(counts / total_counts * 1e4); raw integer counts in layers['counts']"
    adata.write_h5ad(path)


def write_gmt(path: Path, panel: GenePanel) -> None:
    """GMT: one gene set per line, ``name<TAB>description<TAB>gene...``."""
    lines = [
        "\t".join([name, "synthetic gene set (multimodal synth)", *genes]) for name, genes in panel.members.items()
    ]
    path.write_text("\n".join(lines) + "\n")


def _pick(rng: np.random.Generator, table: tuple[tuple[str, float], ...]) -> str:
    names = [c for c, _ in table]
    probs = np.array([p for _, p in table])
    return names[int(rng.choice(len(names), p=probs / probs.sum()))]


def _maf_row(rng: np.random.Generator, panel: GenePanel, gi: int, vclass: str, sample: str) -> dict[str, object]:
    pos = int(panel.start[gi] + rng.integers(0, panel.length[gi]))
    ref, alt = (str(b) for b in rng.choice(_BASES, size=2, replace=False))
    vtype, end = "SNP", pos
    if vclass == "Frame_Shift_Del":
        vtype, alt = "DEL", "-"
    elif vclass == "Frame_Shift_Ins":
        vtype, ref, end = "INS", "-", pos + 1
    aa_pos = int(rng.integers(1, 900))
    a, b = (str(x) for x in rng.choice(_AMINO, size=2, replace=False))
    hgvsp = {
        "Missense_Mutation": f"p.{a}{aa_pos}{b}", "Nonsense_Mutation": f"p.{a}{aa_pos}*", "Silent": f"p.{a}{aa_pos}=",
        "Frame_Shift_Del": f"p.{a}{aa_pos}fs", "Frame_Shift_Ins": f"p.{a}{aa_pos}fs",
    }.get(vclass, "")
    depth = int(rng.integers(30, 200))
    alt_count = int(rng.binomial(depth, rng.uniform(0.1, 0.6)))
    return {
        "Hugo_Symbol": panel.genes[gi], "Entrez_Gene_Id": 0, "Center": "SYNTH", "NCBI_Build": "GRCh38",
        "Chromosome": f"chr{panel.chromosome[gi]}", "Start_Position": pos, "End_Position": end, "Strand": "+",
        "Variant_Classification": vclass, "Variant_Type": vtype, "Reference_Allele": ref, "Tumor_Seq_Allele1": ref,
        "Tumor_Seq_Allele2": alt, "Tumor_Sample_Barcode": sample,
        "Matched_Norm_Sample_Barcode": sample.rsplit("-", 1)[0] + "-10A", "HGVSp_Short": hgvsp, "t_depth": depth,
        "t_ref_count": depth - alt_count, "t_alt_count": alt_count,
    }


def write_mutations(
    maf_path: Path, samples_path: Path, rng: np.random.Generator, panel: GenePanel, sample_ids: list[str],
    driver_status: dict[str, np.ndarray],
) -> int:
    """Write the MAF and the sequenced-sample list; returns the number of MAF rows.

    ``driver_status[gene][i]`` is the latent non-silent status of ``sample_ids[i]``'s patient.
    """
    gindex = {g: i for i, g in enumerate(panel.genes)}
    passenger_genes = np.array([i for i, g in enumerate(panel.genes) if g not in DRIVER_GENES])
    rows: list[dict[str, object]] = []
    for si, sample in enumerate(sample_ids):
        for gene, status in driver_status.items():
            if gene in gindex and status[si]:
                rows.append(_maf_row(rng, panel, gindex[gene], _pick(rng, DRIVER_CLASSES), sample))
        if CAUSAL_GENE in gindex and rng.random() < CAUSAL_GENE_SILENT_RATE:
            rows.append(_maf_row(rng, panel, gindex[CAUSAL_GENE], "Silent", sample))
        burden = rng.gamma(1.0, PASSENGERS_PER_SAMPLE)  # over-dispersed mutation burden: some samples are quiet
        for _ in range(int(rng.poisson(burden)) if passenger_genes.size else 0):
            gi = int(rng.choice(passenger_genes))
            rows.append(_maf_row(rng, panel, gi, _pick(rng, PASSENGER_CLASSES), sample))
    maf = pd.DataFrame(rows, columns=list(MAF_COLUMNS))
    maf = maf.sort_values(["Tumor_Sample_Barcode", "Hugo_Symbol", "Start_Position"], kind="mergesort")
    with open(maf_path, "w", newline="") as fh:
        fh.write("#version 2.4\n")
        maf.to_csv(fh, sep="\t", index=False, lineterminator="\n")
    samples_path.write_text("".join(f"{s}\n" for s in sample_ids))
    return len(maf)
