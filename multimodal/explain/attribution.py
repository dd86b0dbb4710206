"""Integrated Gradients per token for every modality, and exact Shapley modality contributions."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from captum.attr import IntegratedGradients

from multimodal.explain.wrapper import BatchForward
from multimodal.model.modeling import MultimodalModel
from multimodal.types import Batch

Tensor = torch.Tensor


@dataclass
class TokenAttributions:
    """Per-token attributions of one patient (batch row 0) for one modality."""

    modality: str
    scores: np.ndarray  # (N,) attribution per real token (sum over feature / embedding dims)
    member_scores: np.ndarray | None  # (N, F) per member value (slots: per gene), when attributed at raw features
    names: list[str]


@dataclass
class AttributionResult:
    tokens: dict[str, TokenAttributions]
    f_x: float
    f_baseline: float
    delta: float  # sum(attr) - (f(x) - f(baseline))

    @property
    def completeness_error(self) -> float:
        denom = max(abs(self.f_x - self.f_baseline), 1e-12)
        return abs(self.delta) / denom


def integrated_gradients(
    model: MultimodalModel, batch: Batch, *, target: str = "risk", arm: int | None = None, n_steps: int = 64,
    internal_batch_size: int | None = None, response_class: int = -1, embed_modalities: tuple[str, ...] | str = "patches",
) -> AttributionResult:
    """IG over every modality of a single-patient batch, through the model's own forward.

    ``internal_batch_size`` bounds memory for huge bags (captum evaluates that many interpolation points at once).
    """
    if batch.batch_size != 1:
        msg = f"integrated_gradients: expected a single-patient batch, got {batch.batch_size}"
        raise ValueError(msg)
    model.eval()
    fwd = BatchForward(model, batch, target=target, arm=arm, response_class=response_class,
                       embed_modalities=embed_modalities)
    if not fwd.slots:
        return AttributionResult({}, float(fwd.plain()), float(fwd.plain()), 0.0)
    inputs, baselines = fwd.inputs(), fwd.baselines()
    if internal_batch_size is None:
        n_tok = sum(int(x[0].numel()) for x in inputs)
        internal_batch_size = max(1, min(n_steps, int(4e7 // max(n_tok, 1))))
    ig = IntegratedGradients(fwd)
    attrs, delta = ig.attribute(inputs, baselines=baselines, n_steps=n_steps, method="gausslegendre",
                                internal_batch_size=internal_batch_size, return_convergence_delta=True)
    with torch.no_grad():
        f_x = float(fwd(*inputs))
        f_b = float(fwd(*baselines))
    tokens = {}
    for sl, a in zip(fwd.slots, attrs, strict=True):
        s = batch.streams[sl.modality]
        mask = s.mask[0].cpu().numpy()
        a0 = a[0].detach().cpu().double().numpy()  # (N, F|d)
        names = list(s.names[0]) if s.names is not None else [f"{sl.modality}[{i}]" for i in range(len(mask))]
        keep = np.where(mask)[0]
        tokens[sl.modality] = TokenAttributions(
            sl.modality, a0[keep].sum(axis=1), a0[keep] if sl.kind == "features" else None, [names[i] for i in keep]
        )
    return AttributionResult(tokens, f_x, f_b, float(delta.sum()))


def _masked(batch: Batch, keep: set[str]) -> Batch:  # a modality outside ``keep`` takes the missing path
    streams = {}
    for m, s in batch.streams.items():
        streams[m] = s if m in keep else replace(s, mask=torch.zeros_like(s.mask))
    return Batch(streams=streams, patient_ids=batch.patient_ids, treatment=batch.treatment)


@torch.no_grad()
def modality_shapley(
    model: MultimodalModel, batch: Batch, *, target: str = "risk", arm: int | None = None, response_class: int = -1,
    token_overrides: dict[str, Tensor] | None = None,
) -> dict[str, float | dict[str, float]]:
    """Exact Shapley values of the modalities (2^M forwards) using the model's own missing-modality path.

    Returns ``{"values": {modality: phi}, "f_all": f(all), "f_none": f(none)}``; the values sum to f_all − f_none.
    A modality the patient lacks gets exactly 0. ``token_overrides`` (the batch's encoder outputs) may be passed to
    skip re-encoding: encoders work per token, so masking a modality does not change them.
    """
    model.eval()
    mods = list(model.modalities)
    fwd = BatchForward(model, batch, target=target, arm=arm, response_class=response_class)
    cache: dict[frozenset[str], float] = {}
    for r in range(len(mods) + 1):
        for sub in itertools.combinations(mods, r):
            key = frozenset(sub)
            out = model(_masked(fwd.batch, set(sub)), token_overrides=token_overrides)
            cache[key] = float(fwd.select(out)[0])
    m_count = len(mods)
    phi = {}
    for m in mods:
        rest = [x for x in mods if x != m]
        total = 0.0
        for r in range(len(rest) + 1):
            w = math.factorial(r) * math.factorial(m_count - r - 1) / math.factorial(m_count)
            for sub in itertools.combinations(rest, r):
                s = frozenset(sub)
                total += w * (cache[s | {m}] - cache[s])
        phi[m] = total
    return {"values": phi, "f_all": cache[frozenset(mods)], "f_none": cache[frozenset()]}
