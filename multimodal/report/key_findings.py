"""Moved to :mod:`multimodal.explain.key_findings` (it builds the explained result; the report only prints it). Kept so that
existing imports keep working."""

from multimodal.explain.key_findings import *  # noqa: F403
from multimodal.explain.key_findings import __all__  # noqa: F401
