"""Batch ↔ tuple bridge so captum can attribute through the model's own forward (never a copied forward).

Continuous inputs (patch embeddings, pathway member values) are attributed at the raw features; discrete inputs (EHR
and clinical codes) at their encoder output embeddings (Layer-IG style), injected through ``token_overrides``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from multimodal.model.modeling import MultimodalModel
from multimodal.types import Batch, TokenStream

Tensor = torch.Tensor


@dataclass(frozen=True)
class InputSlot:
    modality: str
    kind: str  # "features" (raw stream features) or "embedding" (encoder output)


def _repeat(t: Tensor, k: int) -> Tensor:
    return t if k == 1 else t.repeat(k, *([1] * (t.ndim - 1)))


def repeat_batch(batch: Batch, k: int) -> Batch:
    """The batch stacked ``k`` times along dim 0 (captum evaluates several interpolation steps at once)."""
    if k == 1:
        return batch
    streams = {}
    for m, s in batch.streams.items():
        streams[m] = replace(s, **{n: _repeat(v, k) for n, v in s.tensor_fields().items()},
                             names=None if s.names is None else s.names * k)
    return Batch(
        streams=streams,
        patient_ids=batch.patient_ids * k,
        treatment=None if batch.treatment is None else _repeat(batch.treatment, k),
    )


class BatchForward:
    """Callable ``f(*tensors) -> (B',)`` over a fixed batch for captum.

    Patch bags are attributed at their encoder output by default (``embed_modalities="patches"``): per-patch scores
    are the same kind of quantity, and each integration step then skips re-projecting tens of thousands of patches.

    Args:
        model: the model (eval mode is set by the caller).
        batch: the batch to explain (targets are ignored).
        target: "risk" (survival risk, higher = worse) or "response" (probability of ``response_class``).
        arm: treatment arm to predict under (None = the batch's own arm).
    """

    def __init__(self, model: MultimodalModel, batch: Batch, *, target: str = "risk", arm: int | None = None,
                 response_class: int = -1, embed_modalities: tuple[str, ...] | str = "patches") -> None:
        self.model = model
        if arm is not None:
            batch = Batch(streams=batch.streams, patient_ids=batch.patient_ids,
                          treatment=torch.full((batch.batch_size,), arm, dtype=torch.long))
        else:
            batch = Batch(streams=batch.streams, patient_ids=batch.patient_ids, treatment=batch.treatment)
        self.batch = batch
        self.target = target
        self.response_class = response_class
        self.slots: list[InputSlot] = []
        for m in model.modalities:
            s = batch.streams.get(m)
            if s is None or not bool(s.mask.any()):
                continue
            at_embedding = s.features is None or (
                embed_modalities == "patches" and model.specs[m]["kind"] == "patches"
            ) or (isinstance(embed_modalities, tuple) and m in embed_modalities)
            self.slots.append(InputSlot(m, "embedding" if at_embedding else "features"))

    def inputs(self) -> tuple[Tensor, ...]:
        with torch.no_grad():
            emb = self.model.encode_tokens(self.batch)
        out = []
        for sl in self.slots:
            if sl.kind == "features":
                out.append(self.batch.streams[sl.modality].features.detach().float())
            else:
                out.append(emb[sl.modality].detach())
        return tuple(out)

    def baselines(self) -> tuple[Tensor, ...]:
        """Zero features (= the training mean for standardized inputs) and zero embeddings."""
        return tuple(torch.zeros_like(x) for x in self.inputs())

    def __call__(self, *tensors: Tensor) -> Tensor:
        k = tensors[0].shape[0] // self.batch.batch_size if tensors else 1
        b = repeat_batch(self.batch, k)
        overrides: dict[str, Tensor] = {}
        streams = dict(b.streams)
        for sl, t in zip(self.slots, tensors, strict=True):
            if sl.kind == "features":
                s: TokenStream = streams[sl.modality]
                streams[sl.modality] = replace(s, features=t)
            else:
                overrides[sl.modality] = t
        b = Batch(streams=streams, patient_ids=b.patient_ids, treatment=b.treatment)
        out = self.model(b, token_overrides=overrides or None)
        return self.select(out)

    def select(self, out) -> Tensor:  # noqa: ANN001 - MultimodalOutput
        if self.target == "risk":
            return out.risk
        if out.response_prob is None:
            msg = "target 'response' requested but the model has no response head"
            raise ValueError(msg)
        return out.response_prob[:, self.response_class]

    def plain(self) -> Tensor:
        """The model's own output on the unmodified batch (for the wrapper-equals-model test)."""
        return self.select(self.model(self.batch))
