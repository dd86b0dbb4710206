"""Per-modality input encoders: each turns a TokenStream into (B, N, d_model) tokens + mask."""

from __future__ import annotations

import math

import torch
from torch import nn

from multimodal.types import TokenStream

Tensor = torch.Tensor


def sincos_features(x: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sin-cos features of a scalar field ``x`` (..., ) → (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    ang = x.float().unsqueeze(-1) * freqs
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class PatchEncoder(nn.Module):
    """Patch embeddings (B, N, D) → (B, N, d) with a 2-D sin-cos encoding of grid positions and the slide index."""

    def __init__(self, feature_dim: int, d_model: int, max_slides: int = 16) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_dim, d_model)
        self.pos_scale = nn.Parameter(torch.zeros(1))  # learned gate on the position code, starts neutral
        self.slide_emb = nn.Embedding(max_slides, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.d_model = d_model
        self.max_slides = max_slides

    def forward(self, stream: TokenStream) -> Tensor:
        assert stream.features is not None
        x = self.proj(stream.features.to(self.proj.weight.dtype))
        if stream.positions is not None:
            q = self.d_model // 2
            pos = torch.cat([sincos_features(stream.positions[..., 0], q), sincos_features(stream.positions[..., 1], q)], -1)
            x = x + self.pos_scale * pos.to(x.dtype)
        if stream.slide_index is not None:
            x = x + self.slide_emb(stream.slide_index.clamp(0, self.max_slides - 1))
        return self.norm(x)


class SlotEncoder(nn.Module):
    """Fixed slots (pathways / gene families / genes): slot p has its own linear map of its F member values.

    (B, P, F) → per-slot (B, P, h) via a grouped einsum → ELU → shared Linear(h, d) + slot identity embedding.
    """

    def __init__(self, num_slots: int, feature_dim: int, d_model: int, hidden: int = 32) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_slots, feature_dim, hidden) / math.sqrt(max(feature_dim, 1)))
        self.bias = nn.Parameter(torch.zeros(num_slots, hidden))
        self.out = nn.Linear(hidden, d_model)
        self.slot_emb = nn.Parameter(torch.randn(num_slots, d_model) * 0.02)
        self.norm = nn.LayerNorm(d_model)
        self.num_slots = num_slots

    def forward(self, stream: TokenStream) -> Tensor:
        assert stream.features is not None
        x = stream.features.to(self.weight.dtype)
        p = x.shape[1]
        if p != self.num_slots:
            # An all-missing (padded) stream may arrive with fewer tokens; pad to the slot count.
            x = torch.nn.functional.pad(x, (0, 0, 0, self.num_slots - p)) if p < self.num_slots else x[:, : self.num_slots]
        h = torch.einsum("bpf,pfh->bph", x, self.weight) + self.bias
        return self.norm(self.out(nn.functional.elu(h)) + self.slot_emb)


class EventEncoder(nn.Module):
    """Coded events: code embedding + value encoding (where measured) + time encoding (days before prediction)."""

    def __init__(self, vocab_size: int, d_model: int, time_dim: int = 16) -> None:
        super().__init__()
        self.vocab_size = max(vocab_size, 2)
        self.code_emb = nn.Embedding(self.vocab_size, d_model, padding_idx=0)
        # per-code value direction, and a per-code value x time direction (lets the fusion read trends)
        self.value_w = nn.Parameter(torch.randn(self.vocab_size, d_model))  # unit scale, like the normed code part
        self.vt_w = nn.Parameter(torch.randn(self.vocab_size, d_model) * 0.02)
        self.time_proj = nn.Linear(time_dim, d_model)
        self.time_dim = time_dim
        self.norm = nn.LayerNorm(d_model)

    def forward(self, stream: TokenStream) -> Tensor:
        assert stream.codes is not None
        codes = stream.codes.long().clamp(0, self.vocab_size - 1)
        x = self.code_emb(codes)
        v = torch.zeros(codes.shape, dtype=x.dtype, device=x.device)
        if stream.values is not None:
            vm = stream.value_mask if stream.value_mask is not None else torch.ones_like(stream.values, dtype=torch.bool)
            v = stream.values.to(x.dtype) * vm.to(x.dtype)
        t = torch.zeros(codes.shape, dtype=x.dtype, device=x.device) if stream.times is None else stream.times.to(x.dtype)
        # signed log-days: resolves both "yesterday" and "three years ago"
        x = x + self.time_proj(sincos_features(torch.sign(t) * torch.log1p(t.abs()), self.time_dim, max_period=100.0).to(x.dtype))
        ty = (t / 365.25).clamp(-5.0, 5.0)
        val = self.value_w[codes] * v.unsqueeze(-1) + self.vt_w[codes] * (v * ty).unsqueeze(-1)
        # values are added after the norm so their scale (standardized per code) survives
        return self.norm(x) + val


def build_encoder(spec: dict, d_model: int, slot_hidden: int, max_slides: int) -> nn.Module:
    kind = spec["kind"]
    if kind == "patches":
        return PatchEncoder(int(spec["feature_dim"]), d_model, max_slides)
    if kind == "slots":
        return SlotEncoder(int(spec["num_slots"]), int(spec["feature_dim"]), d_model, slot_hidden)
    if kind == "events":
        return EventEncoder(int(spec["vocab_size"]), d_model)
    msg = f"stream {spec.get('modality')!r}: unknown kind {kind!r} (expected patches, slots or events)"
    raise ValueError(msg)
