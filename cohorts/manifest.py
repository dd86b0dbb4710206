"""The cohort manifest: a YAML file naming the patient table and each modality's source (DESIGN §4).

Example (paths are relative to the manifest's folder)::

    version: 1
    name: synthetic-demo
    patients:
      path: outcomes.parquet          # CSV, TSV or parquet; one row per patient
      id: patient_id
      time: time
      event: event                    # True/1 = event observed ...
      # censorship: censorship        # ... or a censorship column, with its polarity declared:
      # censorship_polarity: 1_is_censored
      time_unit: days
      prediction_time: prediction_time  # index date (timestamp); EHR events after it are never used
      treatment: arm                  # optional
      response: response              # optional, 0/1 (or class index)
      meds_subject_id: subject_id     # optional: column mapping patients to MEDS subject_id
    modalities:
      pathology:
        type: slides
        table: slides.csv             # columns patient_id, slide_id, path (or use glob + patient_pattern)
        format: trident
      genomics:
        type: omics
        expression: omics/expression.h5ad
        mutations: omics/mutations.maf
        mutation_samples: omics/sequenced_samples.txt
      ehr:
        type: meds
        path: meds
      clinical:
        type: clinical
        path: clinical.csv
        categorical: [sex, stage]
        numeric: [age]
        exclude: [note]               # never a feature. Whatever is declared, the patients section's columns,
                                      # outcome-like names and identifier-like columns (MRNs, dates, free text) are
                                      # removed too (multimodal.cohorts.clinical_columns); so path may be the patient
                                      # table itself
    splits:                           # optional: external patient-level split files
      files: splits/splits_{k}.csv    # columns train, val (case ids, NaN padded)
      folds: 5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from multimodal.config import from_dict
from multimodal.errors import ConfigError, short

TimeUnit = Literal["days", "weeks", "months", "years"]
DAYS_PER_UNIT: dict[str, float] = {"days": 1.0, "weeks": 7.0, "months": 30.44, "years": 365.25}


@dataclass(frozen=True)
class PatientTableSpec:
    path: str
    id: str = "patient_id"
    time: str = "time"
    event: str | None = None
    censorship: str | None = None
    censorship_polarity: Literal["1_is_censored", "1_is_event"] | None = None
    time_unit: TimeUnit = "days"
    prediction_time: str | None = None
    treatment: str | None = None
    treatment_arms: tuple[str, ...] = ()
    response: str | None = None
    response_classes: int = 2
    meds_subject_id: str | None = None


@dataclass(frozen=True)
class SlidesSpec:
    type: Literal["slides"] = "slides"
    table: str | None = None
    patient_column: str = "patient_id"
    slide_column: str = "slide_id"
    path_column: str = "path"
    #: optional columns of the slide table: an image of the slide (report crops) and its level-0 px per image px
    thumbnail_column: str = "thumbnail"
    thumbnail_downsample_column: str = "thumbnail_downsample"
    glob: str | None = None
    patient_pattern: str = r"^(?P<patient>.+?)(?:[_.-]slide[_-]?\d+)?$"
    format: Literal["auto", "trident", "clam_h5", "stamp", "pt", "npy", "safetensors"] = "auto"


@dataclass(frozen=True)
class OmicsSpec:
    type: Literal["omics"] = "omics"
    expression: str | None = None
    expression_patient_column: str | None = None
    mutations: str | None = None
    mutation_samples: str | None = None
    mutation_patient_pattern: str = r"^(?P<patient>.+)$"
    cnv: str | None = None
    wide_table: str | None = None
    wide_id_column: str = "case_id"


@dataclass(frozen=True)
class MedsSpec:
    type: Literal["meds"] = "meds"
    path: str = "meds"


@dataclass(frozen=True)
class ClinicalSpec:
    type: Literal["clinical"] = "clinical"
    path: str = "clinical.csv"
    id: str = "patient_id"
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


ModalitySpec = SlidesSpec | OmicsSpec | MedsSpec | ClinicalSpec
MODALITY_SPECS: dict[str, type] = {"slides": SlidesSpec, "omics": OmicsSpec, "meds": MedsSpec, "clinical": ClinicalSpec}


@dataclass(frozen=True)
class SplitsSpec:
    files: str
    folds: int = 5


@dataclass(frozen=True)
class ManifestSpec:
    patients: PatientTableSpec
    modalities: dict[str, Any]
    version: int = 1
    name: str = "cohort"
    splits: SplitsSpec | None = None


def parse_manifest(data: dict[str, Any], *, file: str | None = None) -> ManifestSpec:
    """Turn the YAML mapping into a typed :class:`ManifestSpec` (each modality by its ``type``)."""
    raw_mods = data.get("modalities", {}) or {}
    if not isinstance(raw_mods, dict):
        raise ConfigError("expected a mapping of modality name -> source", file=file, field="modalities")
    mods: dict[str, Any] = {}
    for name, spec in raw_mods.items():
        if not isinstance(spec, dict) or "type" not in spec:
            raise ConfigError(
                "each modality needs a 'type'", file=file, field=f"modalities.{name}",
                hint=f"one of {', '.join(MODALITY_SPECS)}",
            )
        kind = spec["type"]
        if kind not in MODALITY_SPECS:
            import difflib

            close = difflib.get_close_matches(str(kind), list(MODALITY_SPECS), n=1)
            raise ConfigError(
                f"unknown modality type {short(kind)}", file=file, field=f"modalities.{name}.type",
                hint=f"did you mean {close[0]!r}?" if close else f"one of {', '.join(MODALITY_SPECS)}",
            )
        mods[str(name)] = from_dict(MODALITY_SPECS[kind], spec, _prefix=f"modalities.{name}", _file=file)
    rest = {k: v for k, v in data.items() if k != "modalities"}
    spec = from_dict(ManifestSpec, {**rest, "modalities": {}}, _file=file)
    return ManifestSpec(
        patients=spec.patients, modalities=mods, version=spec.version, name=spec.name, splits=spec.splits
    )
