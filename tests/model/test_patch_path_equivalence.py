"""The restructured patch path computes the same function as the straightforward one.

The reference below is the textbook computation the model's patch path was first written as: the sin-cos position
code and the slide embedding added to the projected patches, LayerNorm, the modality embedding added, the pooled mean
of the masked tokens, and cross-attention through ``F.scaled_dot_product_attention`` over the patch tokens with the
sink key/value concatenated in front (its logit raised by log n). The model's path (gathered position tables folded
into the projection's GEMM, the sink as one extra logit, masks only where bags are padded, a hand-written backward)
must give the same outputs and the same gradients, in float64 to 1e-10 and in float32 to 1e-5.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_model_contract import STREAMS, make_batch

from multimodal.model import MultimodalConfig, MultimodalModel
from multimodal.model.encoders import PatchEncoder
from multimodal.model.fusion import CrossAttention, SinkAttention
from multimodal.types import Batch, TokenStream

Tensor = torch.Tensor


def ref_sincos(x: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = x.float().unsqueeze(-1) * freqs
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


def ref_patch_encoder(enc: PatchEncoder, s: TokenStream) -> Tensor:
    x = enc.proj(s.features.to(enc.proj.weight.dtype))
    if s.positions is not None:
        q = enc.d_model // 2
        pos = torch.cat([ref_sincos(s.positions[..., 0], q), ref_sincos(s.positions[..., 1], q)], -1)
        x = x + enc.pos_scale * pos.to(x.dtype)
    if s.slide_index is not None:
        x = x + enc.slide_emb(s.slide_index.clamp(0, enc.max_slides - 1))
    return enc.norm(x)


def ref_cross(ca: CrossAttention, x: Tensor, kv: Tensor, kv_mask: Tensor, dropout: float = 0.0) -> Tensor:
    b, m, d = x.shape
    hd = d // ca.h
    kv = torch.cat([ca.sink.expand(b, 1, d).to(kv.dtype), kv], dim=1)
    mask = torch.cat([torch.ones(b, 1, dtype=torch.bool), kv_mask], dim=1)
    q = ca.q(ca.norm_q(x)).view(b, m, ca.h, hd).transpose(1, 2)
    k = kv.view(b, -1, ca.h, hd).transpose(1, 2)
    n = kv_mask.sum(1, keepdim=True).clamp(min=1).to(q.dtype)
    bias = torch.zeros(b, mask.shape[1], dtype=q.dtype)
    bias[:, :1] = torch.log(n)
    am = bias.masked_fill(~mask, float("-inf"))[:, None, None, :]
    o = F.scaled_dot_product_attention(q, k, k, attn_mask=am, dropout_p=dropout)
    return ca.out(o.transpose(1, 2).reshape(b, m, d))


def ref_fused(model: MultimodalModel, batch: Batch) -> Tensor:
    """The fused representation (B, d), computed the straightforward way (eval mode: no dropout)."""
    b = batch.batch_size
    streams = model.input_streams(batch)
    present = {m: s.mask.any(dim=1) for m, s in streams.items()}
    ones = torch.ones(b, 1, dtype=torch.bool)
    compact = [model.cls.expand(b, -1, -1), model.latents.expand(b, -1, -1)]
    cmask = [ones, ones.expand(b, model.latents.shape[1])]
    for m in model.modalities:
        compact.append(model.missing_tokens[m].expand(b, -1, -1))
        cmask.append(~present[m].unsqueeze(1))
    patches, pmask, pooled = [], [], []
    for m in model.modalities:
        s = streams[m]
        enc = ref_patch_encoder(model.encoders[m], s) if model.specs[m]["kind"] == "patches" else model.encoders[m](s)
        tok = enc + model.modality_emb[m]
        mask = s.mask & present[m].unsqueeze(1)
        if tok.shape[1] != mask.shape[1]:
            mask = F.pad(mask, (0, tok.shape[1] - mask.shape[1]), value=False)
        mf = mask.unsqueeze(-1).to(enc.dtype)
        pooled.append(model.pool_proj[m]((enc * mf).sum(1) / mf.sum(1).clamp(min=1)) * present[m].unsqueeze(-1).to(enc.dtype))
        (patches if model.specs[m]["kind"] == "patches" else compact).append(tok)
        (pmask if model.specs[m]["kind"] == "patches" else cmask).append(mask)
    x, x_mask = torch.cat(compact, 1), torch.cat(cmask, 1)
    p, pm = torch.cat(patches, 1), torch.cat(pmask, 1)
    fusion = model.fusion
    n_query = 1 + model.latents.shape[1] if fusion.cross_queries == "latents" else x.shape[1]
    for layer in fusion.layers:
        if layer.cross is not None:
            upd = ref_cross(layer.cross, x[:, :n_query], p, pm)
            x = torch.cat([x[:, :n_query] + upd, x[:, n_query:]], dim=1) if n_query < x.shape[1] else x + upd
        x = x + layer.self_attn(x, x_mask)
        x = x + layer.ffn(x)
    return fusion.norm(x)[:, 0] + sum(pooled)


def _model(dtype: torch.dtype = torch.float64, **kw) -> MultimodalModel:
    torch.manual_seed(0)
    cfg = MultimodalConfig(streams=STREAMS, d_model=32, num_heads=4, num_latents=4, depth=2, bin_edges=[1.0, 2.0],
                           dropout=0.0, **kw)
    model = MultimodalModel(cfg).to(dtype)
    with torch.no_grad():  # move the neutral-at-init parameters off zero so every term of the path is exercised
        for name, prm in model.named_parameters():
            if name.endswith(("pos_scale", "sink", "modality_emb.pathology")):
                prm.normal_()
    return model


def _batch(dtype: torch.dtype, padded: bool = True, **kw) -> Batch:
    b = make_batch(**kw)
    s = b.streams["pathology"]
    mask = s.mask if padded else torch.ones_like(s.mask)
    b.streams["pathology"] = TokenStream("pathology", mask, features=s.features.to(dtype),
                                         positions=s.positions + 0.5, slide_index=torch.arange(s.num_tokens).expand(
                                             s.batch_size, -1) % 3)
    return b


@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize(("cross_layers", "cross_queries"), [(1, "latents"), (2, "all")])
def test_model_matches_the_straightforward_computation_and_its_gradients(padded, cross_layers, cross_queries):
    model = _model(cross_layers=cross_layers, cross_queries=cross_queries).eval()
    batch = _batch(torch.float64, padded=padded)
    fast = model.encode(batch)[0]
    ref = ref_fused(model, batch)
    assert (fast - ref).abs().max() < 1e-10
    g_fast = torch.autograd.grad(fast.square().sum(), list(model.parameters()), allow_unused=True)
    g_ref = torch.autograd.grad(ref.square().sum(), list(model.parameters()), allow_unused=True)
    for (name, _), a, r in zip(model.named_parameters(), g_fast, g_ref, strict=True):
        if r is None:
            assert a is None or not a.any(), name
            continue
        assert a is not None, f"{name}: no gradient on the fast path"
        assert (a - r).abs().max() < 1e-9 * max(1.0, float(r.abs().max())), name


def test_float32_matches_within_1e_5_with_a_missing_patch_modality():
    model = _model(torch.float32).eval()
    for missing in [(), ("pathology",)]:
        batch = _batch(torch.float32, missing=missing)
        with torch.no_grad():
            assert (model.encode(batch)[0] - ref_fused(model, batch)).abs().max() < 1e-5


def test_encoder_without_positions_or_slides_is_a_linear_map_and_norm():
    torch.manual_seed(0)
    enc = PatchEncoder(6, 8).double()
    s = TokenStream("pathology", torch.ones(2, 5, dtype=torch.bool), features=torch.randn(2, 5, 6, dtype=torch.float64))
    assert torch.allclose(enc(s), ref_patch_encoder(enc, s), atol=1e-12)
    shift = torch.randn(8, dtype=torch.float64)
    assert torch.allclose(enc(s, shift=shift), ref_patch_encoder(enc, s) + shift, atol=1e-12)


@pytest.mark.parametrize("with_mask", [True, False])
def test_sink_attention_gradients_match_finite_differences(with_mask):
    torch.manual_seed(0)
    b, m, n, d, h = 3, 5, 11, 16, 4
    q = torch.randn(b, m, d, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(b, n, d, dtype=torch.float64, requires_grad=True)
    sink = torch.randn(d, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(b, n) > 0.3
    mask[2] = False  # a patient without any patch: the sink takes all the attention
    log_n = torch.log(mask.sum(1).clamp(min=1).double())

    def f(q: Tensor, kv: Tensor, sink: Tensor) -> Tensor:
        return SinkAttention.apply(q, kv, sink, log_n, mask if with_mask else None, h, 0.0)

    assert torch.autograd.gradcheck(f, (q, kv, sink))


def test_sink_attention_dropout_gradients_are_those_of_its_own_forward():
    torch.manual_seed(0)
    b, m, n, d, h = 2, 3, 7, 8, 2
    args = (torch.randn(b, m, d, dtype=torch.float64, requires_grad=True),
            torch.randn(b, n, d, dtype=torch.float64, requires_grad=True),
            torch.randn(d, dtype=torch.float64, requires_grad=True))
    log_n = torch.full((b,), math.log(n), dtype=torch.float64)

    def f(q: Tensor, kv: Tensor, sink: Tensor) -> Tensor:
        torch.manual_seed(5)  # the same dropout pattern on every evaluation
        return SinkAttention.apply(q, kv, sink, log_n, None, h, 0.4)

    out = f(*args)
    assert not torch.allclose(out, SinkAttention.apply(*args, log_n, None, h, 0.0))  # dropout acts
    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize(("positions", "slides"), [(True, False), (False, True), (True, True)])
def test_encoder_gradients_match_with_positions_or_slides_alone(positions, slides):
    torch.manual_seed(0)
    enc = PatchEncoder(6, 8, max_slides=3).double()
    with torch.no_grad():
        enc.pos_scale.fill_(0.7)
    g = torch.Generator().manual_seed(1)
    s = TokenStream("pathology", torch.ones(2, 9, dtype=torch.bool),
                    features=torch.randn(2, 9, 6, generator=g, dtype=torch.float64),
                    positions=torch.randint(0, 4, (2, 9, 2), generator=g).float() if positions else None,
                    slide_index=torch.randint(0, 5, (2, 9), generator=g) if slides else None)  # 3, 4 clamp to 2
    fast, ref = enc(s), ref_patch_encoder(enc, s)
    assert (fast - ref).abs().max() < 1e-12
    w = torch.randn_like(ref)
    g_fast = torch.autograd.grad((fast * w).sum(), list(enc.parameters()), allow_unused=True)
    g_ref = torch.autograd.grad((ref * w).sum(), list(enc.parameters()), allow_unused=True)
    for (name, _), a, r in zip(enc.named_parameters(), g_fast, g_ref, strict=True):
        if r is None:
            assert a is None or not a.any(), name
        else:
            assert a is not None and (a - r).abs().max() < 1e-10, name


def test_attention_dropout_draws_what_sdpa_draws():
    """Training with attention dropout consumes the random stream as SDPA did: a seeded run is unchanged."""
    torch.manual_seed(0)
    ca = CrossAttention(16, 4, 0.3).double().train()
    x, kv = torch.randn(2, 3, 16, dtype=torch.float64), torch.randn(2, 9, 16, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, 9) > 0.3
    torch.manual_seed(7)
    fast = ca(x, kv, mask)
    after_fast = torch.rand(1)
    torch.manual_seed(7)
    ref = ref_cross(ca, x, kv, mask, dropout=0.3)
    assert torch.equal(after_fast, torch.rand(1))
    assert (fast - ref).abs().max() < 1e-12
    (g_fast,) = torch.autograd.grad(fast.sum(), kv)
    (g_ref,) = torch.autograd.grad(ref.sum(), kv)
    assert (g_fast - g_ref).abs().max() < 1e-12
