"""Contract tests of the fusion model: every head / fusion entry, missing modalities, gradients, persistence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel

from multimodal.model import MultimodalConfig, MultimodalModel
from multimodal.model.losses import discrete_time_nll, discretize_times, neg_partial_log_likelihood
from multimodal.registry import list_fusion, list_heads
from multimodal.types import Batch, ResponseTarget, SurvivalTarget, TokenStream

STREAMS = [
    {"modality": "pathology", "kind": "patches", "feature_dim": 12},
    {"modality": "genomics", "kind": "slots", "num_slots": 5, "feature_dim": 7},
    {"modality": "ehr", "kind": "events", "vocab_size": 30},
]


def make_batch(b: int = 4, n: int = 9, missing: tuple[str, ...] = (), seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    pm = torch.ones(b, n, dtype=torch.bool)
    pm[0, n // 2 :] = False
    streams = {
        "pathology": TokenStream("pathology", pm, features=torch.randn(b, n, 12, generator=g),
                                 positions=torch.randint(0, 50, (b, n, 2), generator=g).float(),
                                 slide_index=torch.zeros(b, n, dtype=torch.long)),
        "genomics": TokenStream("genomics", torch.ones(b, 5, dtype=torch.bool), features=torch.randn(b, 5, 7, generator=g)),
        "ehr": TokenStream("ehr", torch.ones(b, 6, dtype=torch.bool), codes=torch.randint(2, 30, (b, 6), generator=g),
                           values=torch.randn(b, 6, generator=g), value_mask=torch.rand(b, 6, generator=g) > 0.5,
                           times=-torch.rand(b, 6, generator=g) * 100),
    }
    for m in missing:
        s = streams[m]
        streams[m] = TokenStream(m, torch.zeros_like(s.mask), **{k: v for k, v in s.tensor_fields().items() if k != "mask"})
    return Batch(
        streams=streams, patient_ids=tuple(f"p{i}" for i in range(b)),
        survival=SurvivalTarget(torch.rand(b, generator=g) * 5, torch.tensor([True, False] * (b // 2))),
        response=ResponseTarget(torch.randint(0, 2, (b,), generator=g), torch.ones(b, dtype=torch.bool)),
        treatment=torch.randint(0, 2, (b,), generator=g),
    )


def make_model(survival: str = "discrete", **kw) -> MultimodalModel:
    torch.manual_seed(0)
    cfg = MultimodalConfig(streams=STREAMS, d_model=32, num_heads=4, num_latents=4, depth=2, survival=survival,
                           bin_edges=[1.0, 2.0, 3.0], response_classes=2, num_arms=2, **kw)
    return MultimodalModel(cfg)


def test_registries_list_builtins():
    assert "latent_cross_attention" in list_fusion()
    assert {"discrete_survival", "cox", "response"} <= set(list_heads())


@pytest.mark.parametrize("survival", ["discrete", "cox"])
@pytest.mark.parametrize("missing", [(), ("pathology",), ("genomics",), ("ehr",), ("pathology", "ehr")])
def test_every_parameter_gets_a_gradient(survival, missing):
    model = make_model(survival, modality_dropout=0.5)
    model.train()
    out = model(make_batch(missing=missing))
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == [], f"parameters without gradient: {no_grad}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_missing_modality_changes_prediction_and_stays_finite():
    model = make_model().eval()
    full = model(make_batch()).risk
    miss = model(make_batch(missing=("pathology",))).risk
    assert torch.isfinite(miss).all()
    assert not torch.allclose(full, miss)


def test_absent_stream_equals_all_masked_stream():
    model = make_model().eval()
    b = make_batch(missing=("ehr",))
    b2 = Batch(streams={k: v for k, v in b.streams.items() if k != "ehr"}, patient_ids=b.patient_ids,
               treatment=b.treatment)
    assert torch.allclose(model(b).risk, model(b2).risk, atol=1e-6)


def test_padding_does_not_change_prediction():
    model = make_model().eval()
    b = make_batch(b=2, n=5)
    s = b.streams["pathology"]
    pad = 7
    padded = TokenStream("pathology", torch.cat([s.mask, torch.zeros(2, pad, dtype=torch.bool)], 1),
                         features=torch.cat([s.features, torch.randn(2, pad, 12) * 100], 1),
                         positions=torch.cat([s.positions, torch.zeros(2, pad, 2)], 1),
                         slide_index=torch.cat([s.slide_index, torch.zeros(2, pad, dtype=torch.long)], 1))
    b2 = Batch(streams={**b.streams, "pathology": padded}, patient_ids=b.patient_ids, treatment=b.treatment)
    assert torch.allclose(model(b).risk, model(b2).risk, atol=1e-5)


def test_per_arm_predictions():
    model = make_model().eval()
    out = model(make_batch(), per_arm=True)
    assert out.risk_per_arm.shape == (4, 2)
    assert out.response_prob_per_arm.shape == (4, 2, 2)
    assert out.survival_per_arm.shape == (4, 2, 4)
    # the prediction under the patient's own arm equals the plain prediction
    arm = make_batch().treatment
    assert torch.allclose(out.risk_per_arm[torch.arange(4), arm], out.risk, atol=1e-6)


def test_survival_curve_properties():
    model = make_model().eval()
    s = model(make_batch()).survival
    assert ((s >= 0) & (s <= 1)).all()
    assert (s[:, 1:] <= s[:, :-1] + 1e-7).all()


def test_save_and_auto_load_roundtrip(tmp_path):
    model = make_model().eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    cfg = AutoConfig.from_pretrained(tmp_path, local_files_only=True)
    assert isinstance(cfg, MultimodalConfig)
    loaded = AutoModel.from_pretrained(tmp_path, local_files_only=True).eval()
    b = make_batch()
    assert torch.equal(model(b).risk, loaded(b).risk)


def test_discrete_nll_matches_manual():
    logits = torch.tensor([[0.1, -0.3, 0.5], [1.0, 0.2, -1.0]])
    bins = torch.tensor([1, 2])
    event = torch.tensor([True, False])
    h = torch.sigmoid(logits).numpy()
    s = np.cumprod(1 - h, axis=1)
    l0 = -(np.log(s[0, 0]) + np.log(h[0, 1]))  # event in bin 1
    l1 = -np.log(s[1, 2])  # censored in bin 2
    for alpha in (0.0, 0.4):
        want = ((1 - alpha) * (l0 + l1) + alpha * l0) / 2
        got = discrete_time_nll(logits, bins, event, alpha=alpha).item()
        assert got == pytest.approx(want, rel=1e-5)


def test_discretize_times():
    edges = torch.tensor([1.0, 2.0])
    assert discretize_times(torch.tensor([0.5, 1.0, 1.5, 2.5]), edges).tolist() == [0, 0, 1, 2]


def test_cox_loss_matches_breslow_manual_and_zero_without_events():
    log_hz = torch.tensor([0.2, -0.1, 0.5, 0.0], requires_grad=True)
    time = torch.tensor([3.0, 1.0, 1.0, 2.0])
    event = torch.tensor([True, True, False, True])
    lh = log_hz.detach().numpy()
    t = time.numpy()
    want = 0.0
    for i in np.where(event.numpy())[0]:
        risk = t >= t[i]
        want -= lh[i] - np.log(np.exp(lh[risk]).sum())
    want /= event.sum().item()
    assert neg_partial_log_likelihood(log_hz, event, time).item() == pytest.approx(want, rel=1e-6)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        z = neg_partial_log_likelihood(log_hz, torch.zeros(4, dtype=torch.bool), time)
    assert z.item() == 0.0 and any("without events" in str(x.message) for x in w)
    z.backward()
    assert log_hz.grad is not None and torch.all(log_hz.grad == 0)


def test_bad_architecture_is_named():
    # transformers' strict dataclass runs validate_architecture at construction and wraps the ValueError
    with pytest.raises(Exception, match="d_model"):
        MultimodalModel(MultimodalConfig(streams=STREAMS, d_model=30, num_heads=4))
    with pytest.raises(ValueError, match="streams"):
        MultimodalModel(MultimodalConfig(streams=[], d_model=32, num_heads=4))


def _response_grads(g: float, train: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = make_model(response_trunk_grad=g, dropout=0.0)  # no dropout, no modality dropout: a deterministic forward
    model.train(train)
    out = model(make_batch())
    out.losses["response"].backward()
    return out.response_prob.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_response_trunk_grad_scales_only_the_gradient_into_shared_layers():
    """response_trunk_grad=g: same predictions; the response loss reaches the trunk with g x its gradient."""
    p1, full = _response_grads(1.0)
    pg, part = _response_grads(0.1)
    p0, none = _response_grads(0.0)
    assert torch.allclose(p1, pg) and torch.allclose(p1, p0)
    heads = [n for n in full if n.startswith("response_heads")]
    trunk = [n for n in full if n.startswith(("encoders", "fusion", "latents"))]
    assert heads and trunk
    for n in heads:  # the response heads always learn at full strength
        assert torch.allclose(full[n], part[n], atol=1e-6) and torch.allclose(full[n], none[n], atol=1e-6)
    for n in trunk:
        assert torch.allclose(part[n], 0.1 * full[n], atol=1e-6, rtol=1e-4), n
        assert n not in none or torch.count_nonzero(none[n]) == 0, n
    assert any(torch.count_nonzero(full[n]) for n in trunk)


def test_response_trunk_grad_leaves_eval_gradients_exact():
    """Attributions run in eval mode and need the response's true gradients: no scaling there."""
    _, full = _response_grads(1.0, train=False)
    _, part = _response_grads(0.1, train=False)
    assert full.keys() == part.keys()
    for n in full:
        assert torch.allclose(full[n], part[n], atol=1e-6), n
