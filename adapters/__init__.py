"""Modality adapters: slide embeddings, genomics and EHR into token streams (imported as ``multimodal.adapters``)."""

from multimodal.adapters.base import Adapter, StreamSpec, empty_stream

__all__ = ["Adapter", "StreamSpec", "empty_stream"]

# Importing the modules registers the built-in adapters.
for _mod in ("pathology", "genomics", "ehr", "clinical"):
    try:
        __import__(f"multimodal.adapters.{_mod}")
    except ModuleNotFoundError as _exc:  # a module still being written must not break the others
        if _exc.name != f"multimodal.adapters.{_mod}":
            raise
