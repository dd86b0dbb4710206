"""The adapter contract: one modality's raw data -> :class:`~multimodal.types.TokenStream` (DESIGN §5).

Life cycle::

    adapter = create_adapter("pathology", modality="pathology", max_patches=4096)
    adapter.fit(cohort, train_ids)          # learns only from these patients; binds the cohort
    stream = adapter.transform("P0001")     # (1, N, ...) stream; N may be 0 when the patient lacks the modality
    adapter.save(dir); Adapter.load(dir)    # JSON + safetensors, no pickle
    adapter.bind(other_cohort)              # predict on new patients with the fitted state

``transform(pid, train=True, seed=s)`` may subsample (e.g. patches) deterministically from ``seed``; with
``train=False`` it returns the whole input.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors.torch import load_file, save_file

from multimodal.cohorts.cohort import Cohort
from multimodal.config import from_dict, to_dict
from multimodal.errors import InputError, IntegrityError
from multimodal.types import TokenStream

StreamKind = Literal["patches", "slots", "events"]


@dataclass(frozen=True)
class StreamSpec:
    """What the model needs to know to encode one modality's stream.

    * ``patches``: a variable-length bag with ``features`` (D = ``feature_dim``), ``positions`` and ``slide_index``;
      the compact tokens cross-attend to it (cost linear in N).
    * ``slots``: a fixed list of ``num_slots`` tokens (pathways, gene families, genes); token i is always slot i, so
      each slot gets its own small encoder over its ``feature_dim`` member values (zero-padded).
    * ``events``: ``codes`` (vocabulary of ``vocab_size`` incl. PAD=0, UNK=1) with ``values``/``value_mask`` and
      ``times`` (days relative to prediction time).
    """

    modality: str
    kind: StreamKind
    feature_dim: int = 0
    num_slots: int = 0
    vocab_size: int = 0
    max_tokens: int = 0  # an upper bound on N for slots/events (0 = unbounded, e.g. patches)
    slot_names: tuple[str, ...] = ()


class Adapter(ABC):
    """Base class of all adapters. Subclasses set ``registry_name`` and ``config_cls`` and register themselves."""

    registry_name: ClassVar[str]
    config_cls: ClassVar[type]

    def __init__(self, config: Any | None = None, **overrides: Any) -> None:
        if config is None:
            config = from_dict(self.config_cls, overrides)
        elif overrides:
            config = from_dict(self.config_cls, {**to_dict(config), **overrides})
        self.config = config
        self.cohort: Cohort | None = None
        self.fitted = False

    # ---- the contract --------------------------------------------------------------------------------------------
    @property
    def modality(self) -> str:
        return self.config.modality

    def bind(self, cohort: Cohort) -> Adapter:
        """Point the adapter at a cohort's sources (fitted state unchanged)."""
        if self.modality not in cohort.modalities:
            raise InputError(
                f"cohort {cohort.name!r} has no modality {self.modality!r}",
                field=f"modalities.{self.modality}",
                hint=f"available: {', '.join(cohort.modalities) or '(none)'}",
            )
        self.cohort = cohort
        return self

    @abstractmethod
    def fit(self, cohort: Cohort, patient_ids: Sequence[str]) -> Adapter:
        """Learn state from ``patient_ids`` only, and bind ``cohort``."""

    @abstractmethod
    def transform(self, patient_id: str, *, train: bool = False, seed: int | None = None) -> TokenStream:
        """This patient's tokens with batch size 1 (zero tokens if the patient lacks the modality)."""

    @abstractmethod
    def stream_spec(self) -> StreamSpec:
        """The fitted stream's shape information for the model."""

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Fitted tensor state (saved as safetensors)."""

    @abstractmethod
    def state_json(self) -> dict[str, Any]:
        """Fitted non-tensor state (saved as JSON)."""

    @abstractmethod
    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what :meth:`state_tensors` / :meth:`state_json` returned."""

    # ---- helpers ---------------------------------------------------------------------------------------------------
    def _require_fitted(self) -> Cohort:
        if not self.fitted:
            msg = f"{type(self).__name__} for {self.modality!r} is not fitted; call fit(cohort, train_ids) first"
            raise RuntimeError(msg)
        if self.cohort is None:
            msg = f"{type(self).__name__} for {self.modality!r} is not bound to a cohort; call bind(cohort)"
            raise RuntimeError(msg)
        return self.cohort

    def state_dict(self) -> dict[str, Any]:
        """All fitted state: ``{"config": ..., "state": json, "tensors": {...}}``."""
        return {"config": to_dict(self.config), "state": self.state_json(), "tensors": self.state_tensors()}

    def save(self, directory: str | Path) -> None:
        """Write ``adapter.json`` + ``adapter.safetensors`` into ``directory``."""
        from multimodal.io import atomic_path, write_json_atomic

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_tensors().items()}
        with atomic_path(d / "adapter.safetensors") as tmp:
            save_file(tensors if tensors else {"_empty": torch.zeros(0)}, str(tmp))
        write_json_atomic(
            d / "adapter.json",
            {"adapter": self.registry_name, "config": to_dict(self.config), "state": self.state_json()},
        )

    @staticmethod
    def load(directory: str | Path) -> Adapter:
        """Rebuild a fitted adapter from :meth:`save` output (no code or pickle is read from the folder)."""
        from multimodal.registry import ADAPTERS, _load_builtin

        _load_builtin()
        d = Path(directory)
        try:
            meta = json.loads((d / "adapter.json").read_text())
            tensors = load_file(str(d / "adapter.safetensors"))
        except FileNotFoundError as exc:
            raise InputError("adapter state missing", file=exc.filename, hint="was the pipeline saved completely?") from exc
        except (json.JSONDecodeError, Exception) as exc:
            if isinstance(exc, InputError):
                raise
            raise IntegrityError(f"{d}: adapter state unreadable ({exc})") from exc
        tensors.pop("_empty", None)
        cls = ADAPTERS.get(meta["adapter"])
        adapter = cls(from_dict(cls.config_cls, meta["config"]))
        adapter.load_state(tensors, meta["state"])
        adapter.fitted = True
        return adapter


def empty_stream(modality: str, *, feature_dim: int | None = None, events: bool = False, positions: bool = False) -> TokenStream:
    """A zero-token stream (batch size 1) for a patient lacking the modality."""
    kw: dict[str, Any] = {"mask": torch.zeros(1, 0, dtype=torch.bool), "names": ((),)}
    if feature_dim is not None:
        kw["features"] = torch.zeros(1, 0, feature_dim)
    if events:
        kw.update(
            codes=torch.zeros(1, 0, dtype=torch.long),
            values=torch.zeros(1, 0),
            value_mask=torch.zeros(1, 0, dtype=torch.bool),
            times=torch.zeros(1, 0),
        )
    if positions:
        kw.update(positions=torch.zeros(1, 0, 2), slide_index=torch.zeros(1, 0, dtype=torch.long))
    return TokenStream(modality=modality, **kw)
