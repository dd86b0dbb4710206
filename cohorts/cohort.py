"""The :class:`Cohort` container: patients, outcomes and modality sources, aligned and validated."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.cohorts.sources import ModalitySource
from multimodal.errors import InputError

#: Columns of :attr:`Cohort.patients` with fixed meaning.
TIME, EVENT, PREDICTION_TIME, TREATMENT, RESPONSE = "time", "event", "prediction_time", "treatment", "response"


@dataclass(frozen=True)
class Fold:
    """One patient-level split: ``train`` / ``val`` (the reporting fold) / optional ``test``."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...] = ()

    def check_disjoint(self) -> None:
        parts = {"train": set(self.train), "val": set(self.val), "test": set(self.test)}
        names = list(parts)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = parts[a] & parts[b]
                if both:
                    raise InputError(
                        f"fold {self.index}: {len(both)} patient(s) in both {a} and {b}, e.g. {sorted(both)[:3]}",
                        field="splits",
                    )


@dataclass
class Cohort:
    """Patients with outcomes and per-modality sources.

    Attributes:
        name: cohort name.
        patients: one row per patient, index = patient id (str). Columns: ``time`` (float, in ``time_unit``),
            ``event`` (bool, True = observed; a cohort loaded for scoring may hold patients without outcome: ``time``
            NaN and ``event`` NA in a nullable boolean column, see :meth:`outcome_known`), and where known
            ``prediction_time`` (datetime64), ``treatment`` (int arm index), ``response`` (nullable Int64 class
            index); extra columns are kept.
        modalities: modality name -> source.
        time_unit: unit of ``time``.
        treatment_arms: arm names, index = arm code.
        response_classes: number of response classes (2 = binary).
        splits: external folds, if the manifest/loader gave them.
        root: folder the cohort was loaded from (manifest folder), if any.
    """

    name: str
    patients: pd.DataFrame
    modalities: dict[str, ModalitySource] = field(default_factory=dict)
    time_unit: str = "days"
    treatment_arms: tuple[str, ...] = ()
    response_classes: int = 2
    splits: list[Fold] | None = None
    root: Path | None = None
    manifest_path: Path | None = None

    def __post_init__(self) -> None:
        p = self.patients
        if not p.index.is_unique:
            dup = p.index[p.index.duplicated()].tolist()[:5]
            raise InputError(f"duplicate patient ids {dup}", field="patients.id")
        p.index = p.index.astype(str)
        for col in (TIME, EVENT):
            if col not in p.columns:
                raise InputError(f"patient table lacks column {col!r}", field=col)

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_manifest(cls, path: str | Path, *, outcomes: str | None = None) -> Cohort:
        """Load a cohort from its manifest YAML. Raises :class:`InputError` listing every problem found.

        ``outcomes="optional"`` loads patients to score: outcome columns may be absent or empty
        (:func:`multimodal.cohorts.loading.load_manifest_cohort`); the default requires them.
        """
        from multimodal.cohorts.loading import load_manifest_cohort

        return load_manifest_cohort(path, outcomes=outcomes)  # type: ignore[arg-type]

    # ---- queries ------------------------------------------------------------------------------------------------
    @property
    def patient_ids(self) -> list[str]:
        return list(self.patients.index)

    def __len__(self) -> int:
        return len(self.patients)

    def has(self, modality: str, patient_id: str) -> bool:
        src = self.modalities.get(modality)
        return src is not None and patient_id in src.patients()

    def outcome_known(self, patient_ids: Sequence[str] | None = None) -> np.ndarray:
        """Bool mask: the patient has a follow-up time and an event status (cohorts loaded for scoring may not)."""
        rows = self.patients if patient_ids is None else self.patients.loc[list(patient_ids)]
        return (rows[TIME].notna() & rows[EVENT].notna()).to_numpy(bool)

    def survival_arrays(self, patient_ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(time float64, event bool) for ``patient_ids`` (default all). A patient without outcome (a cohort loaded
        for scoring) has time NaN and event False: check :meth:`outcome_known` before using them as targets."""
        rows = self.patients if patient_ids is None else self.patients.loc[list(patient_ids)]
        return rows[TIME].to_numpy(np.float64), rows[EVENT].astype("boolean").fillna(False).to_numpy(bool)

    def has_response(self) -> bool:
        return RESPONSE in self.patients.columns and bool(self.patients[RESPONSE].notna().any())

    def has_treatment(self) -> bool:
        return TREATMENT in self.patients.columns and len(self.treatment_arms) > 0

    def subset(self, patient_ids: Iterable[str]) -> Cohort:
        """A cohort restricted to ``patient_ids`` (sources are shared, not copied)."""
        ids = list(patient_ids)
        missing = [p for p in ids if p not in self.patients.index]
        if missing:
            raise InputError(f"unknown patient ids {missing[:5]}", field="patient_id")
        return Cohort(
            name=self.name,
            patients=self.patients.loc[ids].copy(),
            modalities=dict(self.modalities),
            time_unit=self.time_unit,
            treatment_arms=self.treatment_arms,
            response_classes=self.response_classes,
            splits=None,
            root=self.root,
            manifest_path=self.manifest_path,
        )

    def modality_coverage(self) -> Mapping[str, int]:
        return {m: len(src.patients() & set(self.patients.index)) for m, src in self.modalities.items()}
