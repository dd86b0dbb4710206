"""The data layer: cohort manifest, cohort container, splits, synthetic cohort, TCGA table loaders."""

from multimodal.cohorts.cohort import Cohort, Fold
from multimodal.cohorts.sources import ClinicalSource, MedsSource, OmicsSource, SlideRef, SlideSource

__all__ = ["Cohort", "Fold", "ClinicalSource", "MedsSource", "OmicsSource", "SlideRef", "SlideSource"]
