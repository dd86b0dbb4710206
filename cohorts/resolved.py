"""What loading resolved from a manifest (:class:`ResolvedManifest`) and helpers shared by the modality resolvers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from multimodal.cohorts.cohort import Cohort, Fold
from multimodal.cohorts.manifest import (
    ManifestSpec,
)
from multimodal.cohorts.problems import ProblemLog
from multimodal.cohorts.sources import ModalitySource
from multimodal.errors import InputError, Problem


# ---- the resolved manifest --------------------------------------------------------------------------------------
@dataclass
class ResolvedManifest:
    """What loading found: the spec, the patient table, the modality sources, and every problem.

    ``patients`` and ``sources`` are filled as far as the input allowed even when there are problems, so that the
    validator can keep checking the rest.
    """

    path: Path
    root: Path
    log: ProblemLog
    #: "required" or "optional" (scoring): see the module docstring
    outcomes: str = "required"
    spec: ManifestSpec | None = None
    patients_file: Path | None = None
    patients: pd.DataFrame | None = None
    treatment_arms: tuple[str, ...] = ()
    sources: dict[str, ModalitySource] = field(default_factory=dict)
    splits: list[Fold] | None = None
    #: MEDS parquet files whose schema is wrong (deep checks skip them), per modality name.
    bad_meds_files: dict[str, set[Path]] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        return self.log.problems

    @property
    def warnings(self) -> list[Problem]:
        return self.log.warnings

    def to_cohort(self) -> Cohort:
        """The :class:`Cohort`; raises one :class:`InputError` listing every problem if there are any."""
        if self.problems or self.spec is None or self.patients is None:
            raise InputError(problems=self.problems or [Problem("manifest could not be loaded", file=str(self.path))])
        return Cohort(
            name=self.spec.name,
            patients=self.patients,
            modalities=dict(self.sources),
            time_unit=self.spec.patients.time_unit,
            treatment_arms=self.treatment_arms,
            response_classes=self.spec.patients.response_classes,
            splits=self.splits,
            root=self.root,
            manifest_path=self.path,
        )



def under(root: Path, rel: str) -> Path:
    p = Path(rel).expanduser()
    return p if p.is_absolute() else root / p



def unknown_patient(log: ProblemLog, known: set[str] | None, pid: str, *, file: Path, field: str, what: str) -> bool:
    """True when ``pid`` is not in the patient table: the entry is ignored, and counted for the modality's one
    warning (:meth:`ProblemLog.report_extra`). ``field`` and ``what`` describe the entry (kept for callers)."""
    if known is None or pid in known:
        return False
    log.extra.add(pid, file)
    return True
