"""Streamed inference: a bag longer than ``inference_chunk`` is encoded and attended chunk by chunk (online softmax)
and gives the same predictions as the unchunked path (max abs difference <= 1e-5)."""

from __future__ import annotations

import math

import pytest
import torch
from test_model_contract import STREAMS

from multimodal.model import MultimodalConfig, MultimodalModel
from multimodal.model.fusion import OnlineSinkAttention, SinkAttention
from multimodal.types import Batch, TokenStream


def _model(**kw) -> MultimodalModel:
    torch.manual_seed(0)
    cfg = MultimodalConfig(streams=STREAMS + [{"modality": "radiology", "kind": "patches", "feature_dim": 6}],
                           d_model=32, num_heads=4, num_latents=4, depth=2, bin_edges=[1.0, 2.0], response_classes=2,
                           **kw)
    model = MultimodalModel(cfg).eval()
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if name.endswith(("pos_scale", "sink")) or "modality_emb" in name:
                prm.normal_()
    return model


def _batch(n: int = 50, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    b = 3
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, n // 3:] = False  # padded bag
    mask[2] = False  # no slides
    rmask = torch.ones(b, 7, dtype=torch.bool)
    return Batch(
        streams={
            "pathology": TokenStream("pathology", mask, features=torch.randn(b, n, 12, generator=g),
                                     positions=torch.randint(0, 40, (b, n, 2), generator=g).float(),
                                     slide_index=torch.randint(0, 3, (b, n), generator=g)),
            "radiology": TokenStream("radiology", rmask, features=torch.randn(b, 7, 6, generator=g)),
            "genomics": TokenStream("genomics", torch.ones(b, 5, dtype=torch.bool),
                                    features=torch.randn(b, 5, 7, generator=g)),
        },
        patient_ids=("a", "b", "c"),
    )


def _predict(model: MultimodalModel, batch: Batch, chunk: int) -> tuple[torch.Tensor, ...]:
    model.config.inference_chunk = chunk
    with torch.no_grad():
        out = model(batch)
    return out.risk, out.fused, out.survival, out.response_prob


@pytest.mark.parametrize(("cross_layers", "cross_queries"), [(1, "latents"), (2, "all"), (0, "latents")])
@pytest.mark.parametrize("chunk", [1, 7, 16])
def test_chunked_predictions_equal_unchunked(cross_layers, cross_queries, chunk):
    model = _model(cross_layers=cross_layers, cross_queries=cross_queries)
    batch = _batch()
    calls = []
    hook = model.encoders["pathology"].register_forward_hook(lambda mod, args, out: calls.append(out.shape[1]))
    whole = _predict(model, batch, 0)
    assert calls == [50]
    calls.clear()
    streamed = _predict(model, batch, chunk)
    hook.remove()
    assert max(calls) == chunk and sum(calls) == 50 * max(cross_layers, 1)  # really chunked, each layer re-encodes
    for a, b in zip(whole, streamed, strict=True):
        assert (a - b).abs().max() <= 1e-5


def test_no_streaming_with_gradients_or_short_bags():
    model = _model()
    model.config.inference_chunk = 8
    calls = []
    model.encoders["pathology"].register_forward_hook(lambda mod, args, out: calls.append(out.shape[1]))
    model(_batch())  # gradients on: the whole bag at once (training / attribution)
    assert calls == [50]
    calls.clear()
    with torch.no_grad():
        model(_batch(n=8))
    assert calls == [8]


def test_online_attention_equals_the_one_shot_softmax():
    torch.manual_seed(0)
    b, m, n, d, h = 2, 3, 40, 16, 4
    q, kv, sink = torch.randn(b, m, d), torch.randn(b, n, d) * 3, torch.randn(d)
    mask = torch.rand(b, n) > 0.2
    log_n = torch.log(mask.sum(1).float())
    acc = OnlineSinkAttention(q, sink, log_n, h)
    for start in range(0, n, 9):
        acc.update(kv[:, start:start + 9], mask[:, start:start + 9])
    assert (acc.result() - SinkAttention.apply(q, kv, sink, log_n, mask, h, 0.0)).abs().max() < 1e-5


def test_inference_chunk_must_not_be_negative():
    cfg = MultimodalConfig(streams=STREAMS)
    cfg.inference_chunk = -1
    with pytest.raises(ValueError, match=r"MultimodalConfig.inference_chunk: expected >= 0"):
        cfg.validate_architecture()


def test_default_chunk_streams_large_bags():
    assert MultimodalConfig().inference_chunk > 0 and math.log2(MultimodalConfig().inference_chunk) >= 10
