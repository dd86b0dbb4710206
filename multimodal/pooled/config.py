"""Configuration and column conventions of the pooled features (:mod:`multimodal.pooled`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from multimodal.errors import ConfigError

__all__ = ["SEP", "STATE_VERSION", "STRUCTURE", "PooledFeaturesConfig", "describe_column"]

#: Version of :meth:`PooledFeatures.state`.
STATE_VERSION = 1
#: Separator between the modality and the feature name in column names.
SEP = ":"
#: The ``structure`` feature families (module docstring).
STRUCTURE = ("spatial", "kinetics", "interactions")


@dataclass(frozen=True)
class PooledFeaturesConfig:
    """Configuration of :class:`PooledFeatures` (defaults suit cohorts of a few hundred patients).

    Attributes:
        modalities: cohort modalities to pool (None = all of the cohort's).
        pca_components: principal components of the patch embeddings (capped by the embedding dim).
        clusters: k-means centres on the PC scores (tissue-phenotype fractions per patient).
        fit_patches_per_patient: patches sampled per training patient to fit the PCA and the k-means.
        fit_max_patches: cap on all patches the PCA / k-means are fitted on (a seeded subsample beyond it).
        patches_per_patient: patches per patient the features are computed from (a seeded sample beyond it).
        gene_sets: a ``.gmt`` or signature ``.csv`` (relative to the cohort folder) for the gene-set scores; None =
            no scores (the study passes ``adapters.genomics.gene_sets``).
        gene_set_min_genes: a gene set with fewer expressed genes in the training fold gets no score.
        ehr_min_patients: an EHR code enters the vocabulary when at least this many training patients have it.
        ehr_max_codes: vocabulary cap: the codes of the most training patients.
        seed: seed of the patch samples, the PCA and the k-means.
        structure: extra feature families, any of :data:`STRUCTURE` (see the module docstring).
        kinetics_window_days: the look-back of the ``kinetics`` change (days before the prediction time).
        interaction_min_prevalence: a mutation column enters ``interactions`` when at least this share of the
            training patients with omics carry it.
    """

    modalities: tuple[str, ...] | None = None
    pca_components: int = 16
    clusters: int = 8
    fit_patches_per_patient: int = 256
    fit_max_patches: int = 65536
    patches_per_patient: int = 8192
    gene_sets: str | None = None
    gene_set_min_genes: int = 3
    ehr_min_patients: int = 5
    ehr_max_codes: int = 64
    seed: int = 0
    structure: tuple[str, ...] = ()
    kinetics_window_days: float = 90.0
    interaction_min_prevalence: float = 0.05

    def __post_init__(self) -> None:
        unknown = [f for f in self.structure if f not in STRUCTURE]
        if unknown:
            raise ConfigError(f"unknown structure feature family {unknown[0]!r}; expected any of {list(STRUCTURE)}",
                              field="structure")
        if not self.kinetics_window_days > 0:
            raise ConfigError(f"expected a positive number of days, got {self.kinetics_window_days!r}",
                              field="kinetics_window_days")
        if not 0 < self.interaction_min_prevalence < 1:
            raise ConfigError(f"expected a share in (0, 1), got {self.interaction_min_prevalence!r}",
                              field="interaction_min_prevalence")
        for name in ("pca_components", "clusters", "fit_patches_per_patient", "fit_max_patches",
                     "patches_per_patient", "gene_set_min_genes", "ehr_min_patients", "ehr_max_codes"):
            if getattr(self, name) < 1:
                msg = f"expected an integer >= 1, got {getattr(self, name)!r}"
                raise ConfigError(msg, field=name)


def describe_column(column: str) -> str:
    """A reader's description of a pooled column ``"<modality>:<feature>"`` (the report's label for a stack term)."""
    modality, _, feature = column.partition(SEP)
    rules = [
        (r"pc(\d+)_mean", "mean of principal component {0} of the patch embeddings"),
        (r"pc(\d+)_std", "spread of principal component {0} of the patch embeddings"),
        (r"cluster(\d+)_frac", "share of patches in tissue cluster {0}"),
        (r"nbr(\d+)_(\d+)", "share of tissue-cluster-{0} patches touching a cluster-{1} patch"),
        (r"set:(.+)\*(.+)_mut", "{0} score x {1} mutation (centred)"),
        (r"set:(.+)", "{0} gene-set score"),
        (r"(.+)_rnaseq", "{0} expression"),
        (r"(.+)_mut", "{0} mutation"),
        (r"(.+)_cnv", "{0} copy number"),
        (r"(.+):change(.+)d", "{0}: change over the last {1} days before the prediction time"),
        (r"(.+):last", "{0}: latest value"),
        (r"(.+):slope", "{0}: trend (per day)"),
        (r"(.+):count", "{0}: number of events"),
    ]
    for pattern, text in rules:
        m = re.fullmatch(pattern, feature)
        if m:
            return f"{modality}: {text.format(*m.groups())}"
    return f"{modality}: {feature}" if feature else column
