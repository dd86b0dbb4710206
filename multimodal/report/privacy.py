"""Moved to :mod:`multimodal.explain.privacy` (it builds the explained result; the report only prints it). Kept so that
existing imports keep working."""

from multimodal.explain.privacy import *  # noqa: F403
from multimodal.explain.privacy import __all__  # noqa: F401
