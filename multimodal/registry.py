"""Registries for the pluggable kinds (adapters, fusion blocks, heads), in the manner of timm.

Each kind has one :class:`Registry`; the module-level helpers ``register_adapter`` / ``create_adapter`` /
``list_adapters`` (and the same for fusion blocks and heads) are thin wrappers over it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from multimodal.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → factory mapping with did-you-mean errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a class or factory under ``name`` (default: its ``__name__`` lower-cased)."""

        def deco(obj: Callable[..., T]) -> Callable[..., T]:
            key = name or getattr(obj, "registry_name", None) or obj.__name__.lower()
            if key in self._entries and self._entries[key] is not obj:
                msg = f"{self.kind} {key!r} is already registered to {self._entries[key]!r}"
                raise ValueError(msg)
            self._entries[key] = obj
            return obj

        return deco

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            msg = f"unknown {self.kind} {name!r}; {hint}available: {', '.join(sorted(self._entries)) or '(none)'}"
            raise ConfigError(msg, field=self.kind)
        return self._entries[name]

    def create(self, name: str, **overrides: Any) -> T:
        """Build the entry ``name`` with keyword overrides."""
        return self.get(name)(**overrides)

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(k for k in self._entries if fnmatch.fnmatch(k, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries


ADAPTERS: Registry[Any] = Registry("adapter")
FUSION: Registry[Any] = Registry("fusion block")
HEADS: Registry[Any] = Registry("head")


def register_adapter(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return ADAPTERS.register(name)


def create_adapter(name: str, **overrides: Any) -> Any:
    _load_builtin()
    return ADAPTERS.create(name, **overrides)


def list_adapters(pattern: str = "*") -> list[str]:
    _load_builtin()
    return ADAPTERS.list(pattern)


def register_fusion(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return FUSION.register(name)


def create_fusion(name: str, **overrides: Any) -> Any:
    _load_builtin()
    return FUSION.create(name, **overrides)


def list_fusion(pattern: str = "*") -> list[str]:
    _load_builtin()
    return FUSION.list(pattern)


def register_head(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return HEADS.register(name)


def create_head(name: str, **overrides: Any) -> Any:
    _load_builtin()
    return HEADS.create(name, **overrides)


def list_heads(pattern: str = "*") -> list[str]:
    _load_builtin()
    return HEADS.list(pattern)


def _load_builtin() -> None:
    """Import the modules whose import registers the built-in entries."""
    import importlib

    for mod in ("multimodal.adapters", "multimodal.model"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a module not written yet must not break the others
            if exc.name != mod:
                raise
