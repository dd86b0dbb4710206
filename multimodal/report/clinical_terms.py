"""Moved to :mod:`multimodal.explain.clinical_terms` (evidence in words is computed when a patient is explained; the
report only prints it). Kept so that existing imports keep working."""

from multimodal.explain.clinical_terms import *  # noqa: F403
from multimodal.explain.clinical_terms import __all__  # noqa: F401
