"""Fusion blocks: compact tokens cross-attend to patch tokens; self-attention runs among compact tokens only.

There is no patch-to-patch attention, so the cost is O(N · d) in the number of patches N (DESIGN §6). Patch tokens
serve directly as keys and values (split into heads), which keeps the per-patch cost to the input projection alone;
a learned "sink" key/value is always present so a patient without any patch still gets a well-defined attention.

The queries' attention over patches is computed without copying the patch tokens (:class:`SinkAttention`: per-head
matrix products on views, the sink handled as one extra logit, masks applied only where bags are padded, gradients
written once into an uninitialised buffer) or, in streamed inference, accumulated chunk by chunk with an online
softmax (:class:`OnlineSinkAttention`); both compute the same function as softmax attention over ``[sink, patches]``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from multimodal.registry import register_fusion

Tensor = torch.Tensor


class PatchChunks(Protocol):
    """Patch tokens delivered in chunks (streamed inference): iterating yields ``(tokens (B, c, d), mask (B, c) or
    None when every token of the chunk is real)``; it may be iterated once per cross-attention layer."""

    count: Tensor  # (B,) real patch tokens per patient

    def __iter__(self) -> Iterable[tuple[Tensor, Tensor | None]]: ...


class SinkAttention(torch.autograd.Function):
    """``softmax([s0, q·k_j / √hd]) · [sink, k_j]`` per head, with K = V = the patch tokens ``kv`` (B, N, d).

    ``s0 = q·sink / √hd + log_n`` is the sink's logit. Masked (padded) patches get zero weight; ``mask`` None means
    no padding. Attention dropout (probability ``p``) drops attention weights after the softmax with the same random
    draws as SDPA's on ``[sink, patches]``, so a seeded training run is the same as with SDPA.
    Forward and backward are written out: the patch tokens are laid out head-major once (one copy each way; the
    per-head products then run as plain batched GEMMs), the sink is one extra logit per query instead of a row
    concatenated onto every patient's tokens, and the scores are (B, H, M, N) with M the few queries.
    """

    @staticmethod
    def forward(ctx, q: Tensor, kv: Tensor, sink: Tensor, log_n: Tensor, mask: Tensor | None, h: int,  # noqa: ANN001
                p: float) -> Tensor:
        b, m, d = q.shape
        n, hd = kv.shape[1], d // h
        scale = hd ** -0.5
        k = kv.view(b, n, h, hd).transpose(1, 2).contiguous()  # (B, H, N, hd)
        qs = (q * scale).view(b, m, h, hd).transpose(1, 2)  # (B, H, M, hd)
        sh = sink.view(h, 1, hd)
        s = torch.matmul(qs, k.transpose(2, 3))  # (B, H, M, N)
        s0 = (qs * sh).sum(-1) + log_n.view(b, 1, 1)  # (B, H, M)
        if mask is not None:
            s.masked_fill_(~mask.view(b, 1, 1, n), float("-inf"))
        mx = torch.maximum(s.amax(-1), s0) if n else s0
        s.sub_(mx.unsqueeze(-1)).exp_()
        e0 = (s0 - mx).exp()
        inv = 1.0 / (s.sum(-1) + e0)
        probs = s.mul_(inv.unsqueeze(-1))  # in place
        p0 = e0 * inv
        keep = keep0 = None
        pd, p0d = probs, p0
        if p > 0:
            # the random draws of SDPA's dropout on the (B, H, M, 1 + N) weights of [sink, patches]: the same masks
            keep_all = torch.empty(b, h, m, n + 1, dtype=probs.dtype, device=probs.device).bernoulli_(1.0 - p) > 0
            keep, keep0 = keep_all[..., 1:], keep_all[..., 0]
            pd, p0d = probs * keep / (1.0 - p), p0 * keep0 / (1.0 - p)
        o = torch.matmul(pd, k).add_(p0d.unsqueeze(-1) * sh)  # (B, H, M, hd)
        ctx.save_for_backward(qs, k, sink, probs, p0, o, keep, keep0)
        ctx.h, ctx.p, ctx.scale, ctx.kv_dtype = h, p, scale, kv.dtype
        return o.transpose(1, 2).reshape(b, m, d)

    @staticmethod
    def backward(ctx, do: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        qs, k, sink, probs, p0, o, keep, keep0 = ctx.saved_tensors
        # backward runs outside autocast: under mixed precision the saved tensors and the incoming gradient can differ
        # in dtype (bf16 activations, fp32 sink / gradient); compute in their common type (no copy when they agree)
        dt = functools.reduce(torch.promote_types, (t.dtype for t in (do, qs, k, sink, probs, p0, o)))
        if any(t.dtype != dt for t in (do, qs, k, sink, probs, p0, o)):
            do, qs, k, sink, probs, p0, o = (t.to(dt) for t in (do, qs, k, sink, probs, p0, o))
        h, p, scale = ctx.h, ctx.p, ctx.scale
        b, _, n, hd = k.shape
        m = qs.shape[2]
        sh = sink.view(h, 1, hd)
        do = do.reshape(b, m, h, hd).transpose(1, 2)  # (B, H, M, hd)
        dd = (do * o).sum(-1)  # (B, H, M): Σ_j p_j dp_j = dO·O
        dp = torch.matmul(do, k.transpose(2, 3))  # (B, H, M, N): d loss / d (dropped) weight
        dp0 = (do * sh).sum(-1)
        pd, p0d = probs, p0
        if keep is not None:
            dp.mul_(keep).div_(1.0 - p)
            dp0 = dp0 * keep0 / (1.0 - p)
            pd, p0d = probs * keep / (1.0 - p), p0 * keep0 / (1.0 - p)
        ds = dp.sub_(dd.unsqueeze(-1)).mul_(probs)  # softmax backward, in place
        ds0 = p0 * (dp0 - dd)
        dq = (torch.matmul(ds, k) + ds0.unsqueeze(-1) * sh) * scale  # (B, H, M, hd)
        dsink = (ds0.unsqueeze(-1) * qs).sum((0, 2)) + (p0d.unsqueeze(-1) * do).sum((0, 2))  # (H, hd)
        dkv = None
        if ctx.needs_input_grad[1]:
            # patch j is key and value: d k_j = Σ_m pd_mj dO_m + ds_mj q_m (q already scaled)
            dk = torch.matmul(pd.transpose(2, 3), do)  # (B, H, N, hd)
            dk.view(b * h, n, hd).baddbmm_(ds.transpose(2, 3).reshape(b * h, n, m), qs.reshape(b * h, m, hd))
            dkv = dk.transpose(1, 2).reshape(b, n, h * hd).to(ctx.kv_dtype)
        return dq.transpose(1, 2).reshape(b, m, h * hd), dkv, dsink.reshape(-1), None, None, None, None


class OnlineSinkAttention:
    """:class:`SinkAttention` accumulated over patch chunks (no gradients): a running maximum, normalizer and weighted
    sum per query and head, started from the sink, so memory holds one chunk's scores at a time."""

    def __init__(self, q: Tensor, sink: Tensor, log_n: Tensor, h: int, p: float = 0.0) -> None:
        b, m, d = q.shape
        self.h, self.p = h, p
        self.qs = (q * (d // h) ** -0.5).view(b, m, h, d // h).transpose(1, 2)  # (B, H, M, hd)
        sh = sink.view(h, 1, d // h)
        self.mx = (self.qs * sh).sum(-1) + log_n.view(b, 1, 1)  # (B, H, M)
        self.den = torch.ones_like(self.mx)
        self.acc = self._drop(torch.ones_like(self.mx)).unsqueeze(-1) * sh  # (B, H, M, hd)

    def _drop(self, w: Tensor) -> Tensor:
        return w if self.p <= 0 else w * (torch.rand_like(w) >= self.p) / (1.0 - self.p)

    def update(self, kv: Tensor, mask: Tensor | None) -> None:
        """Add the chunk ``kv`` (B, c, d) (``mask`` (B, c), None = no padding)."""
        b, n, d = kv.shape
        if n == 0:
            return
        k = kv.view(b, n, self.h, d // self.h).transpose(1, 2).contiguous()  # (B, H, c, hd)
        s = torch.matmul(self.qs, k.transpose(2, 3))  # (B, H, M, c)
        if mask is not None:
            s.masked_fill_(~mask.view(b, 1, 1, n), float("-inf"))
        mx = torch.maximum(self.mx, s.amax(-1))
        alpha = (self.mx - mx).exp()
        s.sub_(mx.unsqueeze(-1)).exp_()
        self.den = self.den * alpha + s.sum(-1)
        self.acc = self.acc * alpha.unsqueeze(-1) + torch.matmul(self._drop(s), k)
        self.mx = mx

    def result(self) -> Tensor:
        """The attention output (B, M, d)."""
        o = self.acc / self.den.unsqueeze(-1)  # (B, H, M, hd)
        return o.transpose(1, 2).reshape(o.shape[0], o.shape[2], -1)


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.h = num_heads
        self.q = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.sink = nn.Parameter(torch.zeros(1, 1, d_model))
        self.norm_q = nn.LayerNorm(d_model)
        self.dropout = dropout

    def _p(self) -> float:
        return self.dropout if self.training else 0.0

    def forward(self, x: Tensor, kv: Tensor | PatchChunks, kv_mask: Tensor | None) -> Tensor:
        """Queries ``x`` (B, M, d) attend to ``kv`` (B, N, d) (``kv_mask`` (B, N), None = no padding) or to the chunks
        of a :class:`PatchChunks`. The sink's logit is raised by log(n), n = the patient's real patches, so its share
        of attention does not vanish for large bags."""
        b, m, d = x.shape
        q = self.q(self.norm_q(x))
        if not isinstance(kv, Tensor):
            log_n = torch.log(kv.count.clamp(min=1).to(q.dtype))
            acc = OnlineSinkAttention(q, self.sink.reshape(d).to(q.dtype), log_n, self.h, self._p())
            for chunk, mask in kv:
                acc.update(chunk.to(q.dtype), mask)
                del chunk  # let the source free it before encoding the next
            return self.out(acc.result())
        n = kv_mask.sum(1) if kv_mask is not None else torch.full((b,), kv.shape[1], device=kv.device)
        log_n = torch.log(n.clamp(min=1).to(q.dtype))
        if kv.is_cuda:
            return self.out(self._sdpa(q, kv, kv_mask, log_n))
        o = SinkAttention.apply(q.to(kv.dtype), kv, self.sink.reshape(d).to(kv.dtype), log_n.to(kv.dtype), kv_mask,
                                self.h, self._p())
        return self.out(o.to(q.dtype))

    def _sdpa(self, q: Tensor, kv: Tensor, kv_mask: Tensor | None, log_n: Tensor) -> Tensor:
        """The same attention through ``F.scaled_dot_product_attention`` on ``[sink, patches]`` (fused GPU kernels)."""
        b, m, d = q.shape
        hd = d // self.h
        kv = torch.cat([self.sink.expand(b, 1, d).to(kv.dtype), kv], dim=1)  # (B, 1+N, d)
        bias = torch.zeros(b, kv.shape[1], dtype=q.dtype, device=q.device)
        bias[:, 0] = log_n
        if kv_mask is not None:
            bias[:, 1:].masked_fill_(~kv_mask, float("-inf"))
        qh = q.view(b, m, self.h, hd).transpose(1, 2)  # (B, H, M, hd)
        k = kv.view(b, -1, self.h, hd).transpose(1, 2).to(qh.dtype)  # (B, H, 1+N, hd); K = V = patch tokens
        o = F.scaled_dot_product_attention(qh, k, k, attn_mask=bias[:, None, None, :].to(qh.dtype), dropout_p=self._p())
        return o.transpose(1, 2).reshape(b, m, d)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.h = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, m, d = x.shape
        hd = d // self.h
        q, k, v = self.qkv(self.norm(x)).view(b, m, 3, self.h, hd).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(o.transpose(1, 2).reshape(b, m, d))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model), nn.Linear(d_model, mult * d_model), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(mult * d_model, d_model),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class FusionLayer(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ffn_mult: int, dropout: float, cross: bool) -> None:
        super().__init__()
        self.cross = CrossAttention(d_model, num_heads, dropout) if cross else None
        self.self_attn = SelfAttention(d_model, num_heads, dropout)
        self.ffn = FeedForward(d_model, ffn_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, x_mask: Tensor, patches: Tensor | PatchChunks, patch_mask: Tensor | None,
                n_query: int) -> Tensor:
        if self.cross is not None:
            upd = self.cross(x[:, :n_query], patches, patch_mask)
            x = torch.cat([x[:, :n_query] + self.drop(upd), x[:, n_query:]], dim=1) if n_query < x.shape[1] else x + self.drop(upd)
        x = x + self.drop(self.self_attn(x, x_mask))
        return x + self.drop(self.ffn(x))


@register_fusion("latent_cross_attention")
class LatentCrossAttentionFusion(nn.Module):
    """Perceiver-style fusion over compact tokens ``[CLS, latents, other compact tokens]``.

    Args:
        d_model, num_heads, depth, ffn_mult, dropout: transformer sizes.
        cross_layers: the first ``cross_layers`` layers cross-attend to the patch tokens.
        cross_queries: "latents" → only CLS + latents query the patches; "all" → every compact token does.
    """

    def __init__(
        self, *, d_model: int, num_heads: int, depth: int, ffn_mult: int = 2, dropout: float = 0.1,
        cross_layers: int = 1, cross_queries: str = "latents",
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            FusionLayer(d_model, num_heads, ffn_mult, dropout, cross=i < cross_layers) for i in range(depth)
        )
        self.cross_queries = cross_queries
        self.norm = nn.LayerNorm(d_model)

    def forward(self, compact: Tensor, compact_mask: Tensor, patches: Tensor | PatchChunks, patch_mask: Tensor | None,
                n_latent: int) -> Tensor:
        """compact: (B, M, d) with CLS at 0 and latents at 1..n_latent; patches: (B, N, d) with ``patch_mask`` (B, N)
        (None: no padding), or a :class:`PatchChunks` (streamed inference). Returns (B, M, d)."""
        n_query = 1 + n_latent if self.cross_queries == "latents" else compact.shape[1]
        x = compact
        for layer in self.layers:
            x = layer(x, compact_mask, patches, patch_mask, n_query)
        return self.norm(x)
