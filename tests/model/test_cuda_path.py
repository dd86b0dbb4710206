"""The GPU path: SDPA attention on CUDA equals the CPU path, bf16 autocast trains, batches pin. CUDA tests skip
without a CUDA device; the loader options are checked everywhere."""

from __future__ import annotations

import pytest
import torch
from test_model_contract import make_batch, make_model

from multimodal.data import cuda_loader_kwargs, pin_batch
from multimodal.model.fusion import CrossAttention

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_loader_options_pin_and_keep_workers_only_where_they_help():
    kw = cuda_loader_kwargs(4)
    assert kw["num_workers"] == 4 and kw["persistent_workers"] is True
    assert cuda_loader_kwargs(4, persistent=False)["persistent_workers"] is False
    assert kw["pin_memory"] is torch.cuda.is_available()
    assert cuda_loader_kwargs(0) == {"num_workers": 0, "pin_memory": torch.cuda.is_available()}


def test_pin_batch_keeps_every_value():
    b = make_batch()
    p = pin_batch(b)
    assert p.patient_ids == b.patient_ids
    for m, s in b.streams.items():
        for k, v in s.tensor_fields().items():
            assert torch.equal(p.streams[m].tensor_fields()[k], v)
            assert p.streams[m].tensor_fields()[k].is_pinned() is torch.cuda.is_available()
    assert torch.equal(p.survival.time, b.survival.time) and torch.equal(p.treatment, b.treatment)


def test_sdpa_path_equals_the_written_out_attention_on_cpu():
    torch.manual_seed(0)
    ca = CrossAttention(16, 4, 0.0).double()
    with torch.no_grad():
        ca.sink.normal_()
    x, kv = torch.randn(2, 3, 16, dtype=torch.float64), torch.randn(2, 9, 16, dtype=torch.float64)
    mask = torch.rand(2, 9) > 0.3
    log_n = torch.log(mask.sum(1).clamp(min=1).double())
    ref = ca.out(ca._sdpa(ca.q(ca.norm_q(x)), kv, mask, log_n))
    assert (ca(x, kv, mask) - ref).abs().max() < 1e-12


@cuda
def test_cuda_forward_matches_cpu_and_bf16_autocast_trains():
    model = make_model().eval()
    batch = make_batch()
    with torch.no_grad():
        cpu = model(batch).risk
        gpu = model.cuda()(pin_batch(batch).to("cuda")).risk.cpu()
    assert (cpu - gpu).abs().max() < 1e-4
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(batch.to("cuda")).loss
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
