"""Helpers of the report tests (a module of its own: ``conftest`` names several modules in the suite)."""

from __future__ import annotations

from pathlib import Path


def full_patient(manifest: Path) -> str:
    from multimodal.cohorts.cohort import Cohort

    c = Cohort.from_manifest(manifest)
    return next(p for p in c.patient_ids if all(c.has(m, p) for m in c.modalities))


def patient_without(manifest: Path, modality: str) -> str | None:
    from multimodal.cohorts.cohort import Cohort

    c = Cohort.from_manifest(manifest)
    return next((p for p in c.patient_ids if not c.has(modality, p)), None)
