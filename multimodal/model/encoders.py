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


class _PatchAdditive(torch.autograd.Function):
    """Per token ``bias + pos_scale · codes[pos_index].sum(1) + slide_emb[slide]`` (M, d), gathered in one
    ``embedding_bag`` sum over a small table; ``codes`` (U, d) holds each distinct grid coordinate's sin-cos code.

    Written out because autograd's scatter of the gradient into the table (``embedding_bag`` sorts every index each
    step; ``index_add_`` scatters row by row) costs more than the projection's weight gradient. Here ``pos_scale``'s
    gradient is one dot product with the re-gathered codes, and the slide embedding's and the bias's gradients one
    thin GEMM with the slides' one-hot matrix."""

    @staticmethod
    def forward(ctx, pos_scale: Tensor, codes: Tensor | None, pos_index: Tensor | None,  # noqa: ANN001
                slide_emb: Tensor | None, slide: Tensor | None, bias: Tensor) -> Tensor:
        tables, index, rows = [], [], 0
        if codes is not None and pos_index is not None:
            tables.append(pos_scale * codes)
            index.append(pos_index)
            rows += codes.shape[0]
        if slide_emb is not None and slide is not None:
            tables.append(slide_emb)
            index.append(slide.unsqueeze(1) + rows)
            rows += slide_emb.shape[0]
        tables.append(bias.unsqueeze(0))
        m = (pos_index if pos_index is not None else slide).shape[0]
        index.append(torch.full((m, 1), rows, dtype=torch.long, device=bias.device))
        ctx.save_for_backward(codes, pos_index, slide)
        ctx.slides = 0 if slide_emb is None else slide_emb.shape[0]
        return nn.functional.embedding_bag(torch.cat(index, 1), torch.cat(tables), mode="sum")

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        codes, pos_index, slide = ctx.saved_tensors
        grad = grad.contiguous()
        d_scale = None
        if codes is not None and ctx.needs_input_grad[0]:
            pos = nn.functional.embedding_bag(pos_index, codes, mode="sum")
            d_scale = torch.dot(grad.reshape(-1), pos.reshape(-1)).reshape(1)
        s = ctx.slides
        onehot = grad.new_zeros(grad.shape[0], s + 1)  # slides' one-hot, and a column of ones for the bias
        onehot[:, s] = 1.0
        if slide is not None:
            onehot.scatter_(1, slide.unsqueeze(1), 1.0)
        table_grad = onehot.t() @ grad  # (S + 1, d)
        d_emb = table_grad[:s] if slide is not None else None
        return d_scale, None, None, d_emb, None, table_grad[s]


class PatchEncoder(nn.Module):
    """Patch embeddings (B, N, D) → (B, N, d) with a 2-D sin-cos encoding of grid positions and the slide index.

    ``LayerNorm(W f + b + pos_scale · [sincos(x), sincos(y)] + slide_emb[slide])``. Per patch only the projection
    runs at full size: the position codes are computed once per distinct grid coordinate (a slide's grid has few) and
    gathered together with the slide embedding and the bias in one ``embedding_bag`` sum that the projection's GEMM
    adds to (``addmm``). ``shift`` (d,) is added after the norm (folded into its bias).
    """

    def __init__(self, feature_dim: int, d_model: int, max_slides: int = 16) -> None:
        super().__init__()
        self.proj = nn.Linear(feature_dim, d_model)
        self.pos_scale = nn.Parameter(torch.zeros(1))  # learned gate on the position code, starts neutral
        self.slide_emb = nn.Embedding(max_slides, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.d_model = d_model
        self.max_slides = max_slides

    def position_codes(self, stream: TokenStream) -> tuple[Tensor, Tensor, Tensor] | None:
        """The sin-cos codes of the distinct grid coordinates (Ux + Uy, d) with those distinct x (Ux,) and y (Uy,)
        values, or None without positions. Computed once per bag: streamed inference reuses them for every chunk."""
        if stream.positions is None:
            return None
        q, parts, values = self.d_model // 2, [], []
        for axis in (0, 1):
            v = torch.unique(stream.positions[..., axis])
            code = sincos_features(v, q).to(self.proj.weight.dtype)  # (U, q): once per distinct coordinate
            pad = (0, self.d_model - code.shape[1]) if axis == 0 else (self.d_model - code.shape[1], 0)
            parts.append(nn.functional.pad(code, pad))
            values.append(v)
        return torch.cat(parts), values[0], values[1]

    @staticmethod
    def _code_rows(positions: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
        """Each token's two rows (x, y) in :meth:`position_codes`' table: (B·N, 2)."""
        p = positions.reshape(-1, 2)
        return torch.stack([torch.searchsorted(xs, p[:, 0].contiguous()),
                            torch.searchsorted(ys, p[:, 1].contiguous()) + xs.shape[0]], 1)

    def forward(self, stream: TokenStream, shift: Tensor | None = None,
                codes: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """(B, N, d) tokens; ``shift`` (d,) is added after the norm; ``codes``: :meth:`position_codes` of these
        tokens, when already computed (a chunk of a bag)."""
        assert stream.features is not None
        b, n, f = stream.features.shape
        feats = stream.features.reshape(b * n, f)
        gpu_amp = feats.is_cuda and torch.is_autocast_enabled("cuda")  # bf16 features stay bf16 under autocast
        if not gpu_amp:
            feats = feats.to(self.proj.weight.dtype)
        if codes is None:
            codes = self.position_codes(stream)
        table = None if codes is None or stream.positions is None else \
            (codes[0], self._code_rows(stream.positions, codes[1], codes[2]))
        slide = None if stream.slide_index is None else stream.slide_index.reshape(-1).clamp(0, self.max_slides - 1)
        if table is None and slide is None:
            x = self.proj(feats)
        else:
            add = _PatchAdditive.apply(self.pos_scale, *(table or (None, None)),
                                       self.slide_emb.weight if slide is not None else None, slide, self.proj.bias)
            # the GEMM accumulates onto the gathered additive term in place: no copy of it, no second (B·N, d) buffer
            # (under GPU autocast out of place, so that the GEMM runs in bf16)
            x = torch.addmm(add, feats, self.proj.weight.t()) if gpu_amp else add.addmm_(feats, self.proj.weight.t())
        bias = self.norm.bias if shift is None else self.norm.bias + shift.reshape(-1)
        return nn.functional.layer_norm(x, (self.d_model,), self.norm.weight, bias, self.norm.eps).view(b, n, -1)


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
