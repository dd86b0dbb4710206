"""Fusion blocks: compact tokens cross-attend to patch tokens; self-attention runs among compact tokens only.

There is no patch-to-patch attention, so the cost is O(N · d) in the number of patches N (DESIGN §6). Patch tokens
serve directly as keys and values (split into heads), which keeps the per-patch cost to the input projection alone;
a learned "sink" key/value is always present so a patient without any patch still gets a well-defined attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from multimodal.registry import register_fusion

Tensor = torch.Tensor


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.h = num_heads
        self.q = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.sink = nn.Parameter(torch.zeros(1, 1, d_model))
        self.norm_q = nn.LayerNorm(d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, kv: Tensor, kv_mask: Tensor) -> Tensor:
        b, m, d = x.shape
        hd = d // self.h
        kv = torch.cat([self.sink.expand(b, 1, d).to(kv.dtype), kv], dim=1)  # (B, 1+N, d)
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=kv_mask.device), kv_mask], dim=1)
        q = self.q(self.norm_q(x)).view(b, m, self.h, hd).transpose(1, 2)  # (B, H, M, hd)
        k = kv.view(b, -1, self.h, hd).transpose(1, 2)  # (B, H, 1+N, hd); K = V = patch tokens
        # the sink's logit is raised by log(n): its share of attention does not vanish for large bags
        n = kv_mask.sum(1, keepdim=True).clamp(min=1).to(q.dtype)
        bias = torch.zeros(b, mask.shape[1], dtype=q.dtype, device=q.device)
        bias[:, :1] = torch.log(n)
        am = bias.masked_fill(~mask, float("-inf"))[:, None, None, :]
        o = F.scaled_dot_product_attention(
            q, k, k, attn_mask=am, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(o.transpose(1, 2).reshape(b, m, d))


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

    def forward(self, x: Tensor, x_mask: Tensor, patches: Tensor, patch_mask: Tensor, n_query: int) -> Tensor:
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

    def forward(self, compact: Tensor, compact_mask: Tensor, patches: Tensor, patch_mask: Tensor, n_latent: int) -> Tensor:
        """compact: (B, M, d) with CLS at 0 and latents at 1..n_latent; patches: (B, N, d). Returns (B, M, d)."""
        n_query = 1 + n_latent if self.cross_queries == "latents" else compact.shape[1]
        x = compact
        for layer in self.layers:
            x = layer(x, compact_mask, patches, patch_mask, n_query)
        return self.norm(x)
