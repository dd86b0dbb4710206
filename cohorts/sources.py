"""Resolved modality sources: where each patient's data for one modality lives.

A manifest's modality specs resolve to these (paths made absolute, patients mapped). Adapters read through them and
never parse the manifest themselves. Data that came from an in-memory table (TCGA loaders) is held as a DataFrame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class SlideRef:
    """One slide's patch-embedding file."""

    patient_id: str
    slide_id: str
    path: Path
    format: str = "auto"  # trident | clam_h5 | stamp | pt | npy | safetensors | auto (by suffix / keys)
    thumbnail: Path | None = None  # an image of the slide, for report crops (never read by the model)
    thumbnail_downsample: float | None = None  # level-0 pixels per thumbnail pixel, when the slide table gives it


@dataclass(frozen=True)
class SlideSource:
    kind = "slides"
    slides: dict[str, tuple[SlideRef, ...]]  # patient id -> its slides (several per patient allowed)

    def patients(self) -> set[str]:
        return {p for p, refs in self.slides.items() if refs}


@dataclass(frozen=True)
class OmicsSource:
    """Genomics inputs. Any of the file sources may be absent; ``wide`` is a patients × features table.

    ``wide`` uses the TCGA column convention ``<GENE>_rnaseq`` / ``<GENE>_mut`` / ``<GENE>_cnv`` and is indexed by
    patient id.
    """

    kind = "omics"
    expression: Path | None = None  # .h5ad, obs index (or expression_patient_column) = patient id
    expression_patient_column: str | None = None
    mutations: Path | None = None  # MAF (tab separated)
    mutation_samples: Path | None = None  # one sequenced sample id per line (samples without calls = unmutated)
    mutation_patient_pattern: str = r"^(?P<patient>.+)$"
    cnv: Path | None = None  # patients × genes table, first column = patient id
    wide: pd.DataFrame | None = field(default=None, compare=False)
    available: frozenset[str] = frozenset()  # patients with any omics data

    def patients(self) -> set[str]:
        return set(self.available)


@dataclass(frozen=True)
class MedsSource:
    kind = "meds"
    root: Path
    subject_ids: dict[str, int]  # patient id -> MEDS subject_id

    def patients(self) -> set[str]:
        return set(self.subject_ids)


@dataclass(frozen=True)
class ClinicalSource:
    """A wide clinical table indexed by patient id (age, sex, stage, ...).

    Builders pass the table through :func:`multimodal.cohorts.clinical_columns.clinical_feature_table`, so ``table``
    holds feature candidates only: no declared outcome / patient-table column, no excluded, outcome-like or
    identifier-like column. ``removed`` says what was taken out and why (column -> reason); ``withheld`` keeps the
    identifier-like columns aside (only an adapter that declares one explicitly reads it); ``allowed`` lists the
    declared columns kept although they look like an outcome or an identifier (adapters must not drop them again).
    """

    kind = "clinical"
    table: pd.DataFrame = field(compare=False)
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    path: Path | None = None
    removed: dict[str, str] = field(default_factory=dict, compare=False)
    withheld: pd.DataFrame | None = field(default=None, compare=False)
    allowed: tuple[str, ...] = ()

    def patients(self) -> set[str]:
        return set(map(str, self.table.index))


ModalitySource = SlideSource | OmicsSource | MedsSource | ClinicalSource
