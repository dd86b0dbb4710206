"""Moved to :mod:`multimodal.report.model_card` (a rendering of a pipeline; the pipeline itself knows no report).
Kept so that existing imports keep working."""

from multimodal.report.model_card import *  # noqa: F403
from multimodal.report.model_card import __all__  # noqa: F401
