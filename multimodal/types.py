"""The data contracts that flow between adapters, the model, training and explanation (DESIGN §3).

All are frozen dataclasses that validate shapes and dtypes on construction and name the field, the expected and the
actual value when something is off. Conventions used everywhere:

* ``SurvivalTarget.event`` is ``True`` when the event was observed (never a "censorship" flag); higher risk = worse.
* ``TokenStream.mask`` is ``True`` for a real token, ``False`` for padding.
* Adapters return streams with batch size 1; :func:`collate_streams` pads and stacks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

Tensor = torch.Tensor


def _fail(owner: str, name: str, expected: str, actual: object) -> None:
    msg = f"{owner}.{name}: expected {expected}, got {actual}"
    raise ValueError(msg)


def _check_tensor(
    owner: str,
    name: str,
    value: object,
    *,
    ndim: int,
    kind: str,
    shape_prefix: tuple[int, ...] | None = None,
) -> None:
    """Validate one tensor field. ``kind`` is 'float', 'int' or 'bool'."""
    if not isinstance(value, torch.Tensor):
        _fail(owner, name, "a torch.Tensor", type(value).__name__)
    assert isinstance(value, torch.Tensor)
    if value.ndim != ndim:
        _fail(owner, name, f"{ndim} dims", f"shape {tuple(value.shape)}")
    ok = {
        "float": value.is_floating_point(),
        "int": value.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8),
        "bool": value.dtype == torch.bool,
    }[kind]
    if not ok:
        _fail(owner, name, f"dtype {kind}", value.dtype)
    if shape_prefix is not None and tuple(value.shape[: len(shape_prefix)]) != shape_prefix:
        _fail(owner, name, f"leading shape {shape_prefix}", f"shape {tuple(value.shape)}")


@dataclass(frozen=True)
class TokenStream:
    """One modality's tokens for a batch of patients.

    Attributes:
        modality: the modality name (a key of the cohort's modalities, e.g. ``"pathology"``).
        mask: (B, N) bool, True = real token.
        features: (B, N, D) float: patch embeddings, per-pathway member values, ...
        codes: (B, N) int: vocabulary indices (EHR codes, clinical categories); 0 is padding, 1 is UNK.
        values: (B, N) float: numeric value per token (0 where none; see ``value_mask``).
        value_mask: (B, N) bool: True where ``values`` holds a measurement.
        times: (B, N) float: time relative to the prediction time in days (<= 0 for the past; 0 for static).
        positions: (B, N, 2) float: patch grid coordinates (``coords // patch_size_level0``).
        slide_index: (B, N) int: which of the patient's slides each patch came from.
        names: per patient, one label per token (pathway, gene, "CODE @ -3.0d", "slide:x,y"); length N each
            (padding labelled ""). Kept outside the tensor path, for explanations.
        meta: free per-stream metadata (e.g. slide ids and level-0 coordinates for a heatmap); not used by the model.
    """

    modality: str
    mask: Tensor
    features: Tensor | None = None
    codes: Tensor | None = None
    values: Tensor | None = None
    value_mask: Tensor | None = None
    times: Tensor | None = None
    positions: Tensor | None = None
    slide_index: Tensor | None = None
    names: tuple[tuple[str, ...], ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        owner = f"TokenStream[{self.modality}]"
        _check_tensor(owner, "mask", self.mask, ndim=2, kind="bool")
        bn = tuple(self.mask.shape)
        if self.features is None and self.codes is None:
            _fail(owner, "features/codes", "at least one of them", "neither")
        if self.features is not None:
            _check_tensor(owner, "features", self.features, ndim=3, kind="float", shape_prefix=bn)
        if self.codes is not None:
            _check_tensor(owner, "codes", self.codes, ndim=2, kind="int", shape_prefix=bn)
        for name in ("values", "times"):
            v = getattr(self, name)
            if v is not None:
                _check_tensor(owner, name, v, ndim=2, kind="float", shape_prefix=bn)
        if self.value_mask is not None:
            _check_tensor(owner, "value_mask", self.value_mask, ndim=2, kind="bool", shape_prefix=bn)
        if self.positions is not None:
            _check_tensor(owner, "positions", self.positions, ndim=3, kind="float", shape_prefix=bn)
            if self.positions.shape[2] != 2:
                _fail(owner, "positions", "last dim 2", f"shape {tuple(self.positions.shape)}")
        if self.slide_index is not None:
            _check_tensor(owner, "slide_index", self.slide_index, ndim=2, kind="int", shape_prefix=bn)
        if self.names is not None:
            if len(self.names) != bn[0]:
                _fail(owner, "names", f"{bn[0]} entries (one per patient)", len(self.names))
            for i, row in enumerate(self.names):
                if len(row) != bn[1]:
                    _fail(owner, f"names[{i}]", f"{bn[1]} labels (one per token)", len(row))

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.mask.shape[1])

    @property
    def dim(self) -> int | None:
        return None if self.features is None else int(self.features.shape[-1])

    def tensor_fields(self) -> dict[str, Tensor]:
        """The tensor-valued fields that are set, by name."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                out[f.name] = v
        return out

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TokenStream:
        """Move tensors to ``device``; float tensors other than ``times`` also cast to ``dtype`` if given."""
        changes: dict[str, Tensor] = {}
        for k, v in self.tensor_fields().items():
            if dtype is not None and v.is_floating_point() and k == "features":
                changes[k] = v.to(device=device, dtype=dtype)
            else:
                changes[k] = v.to(device)
        return replace(self, **changes)

    def select(self, index: Sequence[int] | Tensor) -> TokenStream:
        """Rows ``index`` of the batch (names and tensors together)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        changes: dict[str, Any] = {k: v[idx.to(v.device)] for k, v in self.tensor_fields().items()}
        if self.names is not None:
            changes["names"] = tuple(self.names[i] for i in idx.tolist())
        return replace(self, **changes)


def _pad_to(t: Tensor, n: int, value: float | bool | int = 0) -> Tensor:
    if t.shape[1] == n:
        return t
    pad_shape = (t.shape[0], n - t.shape[1], *t.shape[2:])
    return torch.cat([t, torch.full(pad_shape, value, dtype=t.dtype, device=t.device)], dim=1)


def collate_streams(streams: Sequence[TokenStream]) -> TokenStream:
    """Pad streams of one modality to a common length and stack them along the batch dimension."""
    if not streams:
        msg = "collate_streams: expected at least one stream, got none"
        raise ValueError(msg)
    first = streams[0]
    modality = first.modality
    for s in streams:
        if s.modality != modality:
            msg = f"collate_streams: mixed modalities {modality!r} and {s.modality!r}"
            raise ValueError(msg)
    n = max(max(s.num_tokens for s in streams), 1)
    out: dict[str, Any] = {}
    for name in first.tensor_fields():
        parts = []
        for s in streams:
            v = getattr(s, name)
            if v is None:
                msg = f"collate_streams[{modality}]: field {name!r} is set on some streams but not others"
                raise ValueError(msg)
            parts.append(_pad_to(v, n, False if v.dtype == torch.bool else 0))
        out[name] = torch.cat(parts, dim=0)
    names = None
    if all(s.names is not None for s in streams):
        names = tuple(tuple(row) + ("",) * (n - len(row)) for s in streams for row in s.names)  # type: ignore[union-attr]
    meta: dict[str, Any] = {"per_patient": [s.meta for s in streams]}
    return TokenStream(modality=modality, names=names, meta=meta, **out)


@dataclass(frozen=True)
class SurvivalTarget:
    """Survival outcome for a batch. ``event`` True = event observed; ``time`` >= 0 in ``unit``."""

    time: Tensor
    event: Tensor
    unit: str = "days"

    def __post_init__(self) -> None:
        _check_tensor("SurvivalTarget", "time", self.time, ndim=1, kind="float")
        _check_tensor("SurvivalTarget", "event", self.event, ndim=1, kind="bool", shape_prefix=tuple(self.time.shape))
        if bool((self.time < 0).any()) or bool(torch.isnan(self.time).any()):
            _fail("SurvivalTarget", "time", "finite values >= 0", "negative or NaN values")

    def to(self, device: torch.device | str) -> SurvivalTarget:
        return replace(self, time=self.time.to(device), event=self.event.to(device))

    def select(self, index: Sequence[int] | Tensor) -> SurvivalTarget:
        idx = torch.as_tensor(index, dtype=torch.long)
        return replace(self, time=self.time[idx], event=self.event[idx])


@dataclass(frozen=True)
class ResponseTarget:
    """Treatment response for a batch: class index per patient; ``observed`` False where unknown."""

    label: Tensor
    observed: Tensor
    num_classes: int = 2

    def __post_init__(self) -> None:
        _check_tensor("ResponseTarget", "label", self.label, ndim=1, kind="int")
        _check_tensor(
            "ResponseTarget", "observed", self.observed, ndim=1, kind="bool", shape_prefix=tuple(self.label.shape)
        )
        if self.num_classes < 2:
            _fail("ResponseTarget", "num_classes", ">= 2", self.num_classes)
        obs = self.label[self.observed]
        if obs.numel() and (int(obs.min()) < 0 or int(obs.max()) >= self.num_classes):
            _fail("ResponseTarget", "label", f"classes in [0, {self.num_classes})", f"range {int(obs.min())}..{int(obs.max())}")

    def to(self, device: torch.device | str) -> ResponseTarget:
        return replace(self, label=self.label.to(device), observed=self.observed.to(device))

    def select(self, index: Sequence[int] | Tensor) -> ResponseTarget:
        idx = torch.as_tensor(index, dtype=torch.long)
        return replace(self, label=self.label[idx], observed=self.observed[idx])


@dataclass(frozen=True)
class Batch:
    """What the model consumes: named modality streams plus targets. Never a positional tuple.

    Attributes:
        streams: modality name → stream; a modality absent for the whole batch may be left out. Per-patient absence
            is a row whose mask is all False.
        patient_ids: one id per row.
        survival / response: targets, when known.
        treatment: (B,) int arm index, or None when the study has no arms.
        offset: (B,) float, a per-patient log-hazard term added inside the survival head: with a wide path it replaces
            the wide path's term *in training only* (cross-fitted stacking, :mod:`multimodal.wide_init`); without one
            it is the pipeline's pooled stack (:mod:`multimodal.stack`), in training and at inference; None otherwise.
    """

    streams: Mapping[str, TokenStream]
    patient_ids: tuple[str, ...]
    survival: SurvivalTarget | None = None
    response: ResponseTarget | None = None
    treatment: Tensor | None = None
    offset: Tensor | None = None

    def __post_init__(self) -> None:
        b = len(self.patient_ids)
        for name, s in self.streams.items():
            if not isinstance(s, TokenStream):
                _fail("Batch", f"streams[{name!r}]", "a TokenStream", type(s).__name__)
            if s.modality != name:
                _fail("Batch", f"streams[{name!r}].modality", repr(name), repr(s.modality))
            if s.batch_size != b:
                _fail("Batch", f"streams[{name!r}]", f"batch size {b} (len(patient_ids))", s.batch_size)
        if self.survival is not None and self.survival.time.shape[0] != b:
            _fail("Batch", "survival", f"batch size {b}", self.survival.time.shape[0])
        if self.response is not None and self.response.label.shape[0] != b:
            _fail("Batch", "response", f"batch size {b}", self.response.label.shape[0])
        if self.treatment is not None:
            _check_tensor("Batch", "treatment", self.treatment, ndim=1, kind="int", shape_prefix=(b,))
        if self.offset is not None:
            _check_tensor("Batch", "offset", self.offset, ndim=1, kind="float", shape_prefix=(b,))

    @property
    def batch_size(self) -> int:
        return len(self.patient_ids)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        return Batch(
            streams={k: v.to(device, dtype) for k, v in self.streams.items()},
            patient_ids=self.patient_ids,
            survival=None if self.survival is None else self.survival.to(device),
            response=None if self.response is None else self.response.to(device),
            treatment=None if self.treatment is None else self.treatment.to(device),
            offset=None if self.offset is None else self.offset.to(device),
        )

    def pin_memory(self) -> Batch:
        """This batch with every tensor in page-locked (pinned) host memory, so a copy to a CUDA device can run
        asynchronously. ``DataLoader(pin_memory=True)`` calls it on each batch (it only knows tuples, mappings and
        objects with this method)."""

        def pin(o: Any) -> Any:
            if o is None:
                return None
            if isinstance(o, Tensor):
                return o.pin_memory()
            return replace(o, **{f.name: getattr(o, f.name).pin_memory() for f in fields(o)
                                 if isinstance(getattr(o, f.name), Tensor)})

        return replace(self, streams={m: pin(s) for m, s in self.streams.items()}, survival=pin(self.survival),
                       response=pin(self.response), treatment=pin(self.treatment), offset=pin(self.offset))

    def select(self, index: Sequence[int]) -> Batch:
        idx = list(index)
        return Batch(
            streams={k: v.select(idx) for k, v in self.streams.items()},
            patient_ids=tuple(self.patient_ids[i] for i in idx),
            survival=None if self.survival is None else self.survival.select(idx),
            response=None if self.response is None else self.response.select(idx),
            treatment=None if self.treatment is None else self.treatment[torch.as_tensor(idx)],
            offset=None if self.offset is None else self.offset[torch.as_tensor(idx)],
        )

    def present(self, modality: str) -> Tensor:
        """(B,) bool: which patients have at least one real token of ``modality``."""
        s = self.streams.get(modality)
        if s is None:
            return torch.zeros(self.batch_size, dtype=torch.bool)
        return s.mask.any(dim=1)
