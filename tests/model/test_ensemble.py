"""MultimodalEnsemble: member means through the model interface, and explanations of the averaged function."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from multimodal.explain.attribution import integrated_gradients, modality_shapley
from multimodal.model import MultimodalConfig, MultimodalEnsemble, MultimodalModel
from multimodal.model.ensemble import member_seed
from multimodal.types import Batch
from tests.model.test_model_contract import STREAMS, make_batch


def _members(k: int = 3, survival: str = "discrete") -> list[MultimodalModel]:
    cfg = MultimodalConfig(streams=STREAMS, d_model=16, num_heads=4, num_latents=4, depth=1, survival=survival,
                           bin_edges=[1.0, 2.0, 3.0], response_classes=2, num_arms=2)
    out = []
    for i in range(k):
        torch.manual_seed(100 + i)
        out.append(MultimodalModel(cfg).eval())
    return out


def _single(batch: Batch) -> Batch:
    """The first patient of ``batch`` (no targets: explanations ignore them)."""
    streams = {m: replace(s, **{n: v[:1] for n, v in s.tensor_fields().items()}) for m, s in batch.streams.items()}
    return Batch(streams=streams, patient_ids=batch.patient_ids[:1], treatment=batch.treatment[:1])


@torch.no_grad()
def test_outputs_are_member_means_and_hazards_match_the_mean_survival():
    members = _members()
    ens = MultimodalEnsemble(members).eval()
    batch = make_batch(missing=("ehr",))
    out = ens(batch, per_arm=True)
    per = [m(batch, per_arm=True) for m in members]
    for name in ("risk", "survival", "response_prob", "risk_per_arm", "survival_per_arm", "response_prob_per_arm"):
        expected = torch.stack([getattr(o, name) for o in per]).mean(0)
        torch.testing.assert_close(getattr(out, name), expected, msg=name)
    # no member reproduces the mean: the members differ
    assert not torch.allclose(per[0].risk, out.risk)
    s = out.survival
    torch.testing.assert_close(torch.cumprod(1 - out.hazards, dim=-1), s)
    torch.testing.assert_close(out.response_logits.softmax(-1), out.response_prob)
    assert out.fused.shape == (batch.batch_size, 3 * 16)
    assert {m: bool(v.all()) for m, v in out.present.items()} == {"pathology": True, "genomics": True, "ehr": False}


@torch.no_grad()
def test_loss_is_the_members_mean_loss():
    members = _members(2)
    batch = make_batch()
    ens = MultimodalEnsemble(members).eval()
    torch.testing.assert_close(ens(batch).loss, (members[0](batch).loss + members[1](batch).loss) / 2)


@torch.no_grad()
def test_encoder_outputs_round_trip_through_token_overrides():
    ens = MultimodalEnsemble(_members()).eval()
    batch = make_batch()
    tokens = ens.encode_tokens(batch)
    assert {m: t.shape[-1] for m, t in tokens.items()} == {m: 3 * 16 for m in ens.modalities}
    torch.testing.assert_close(ens(batch, token_overrides=tokens).risk, ens(batch).risk)
    # each member reads its own slice: zeroing member 1's slice changes only member 1's part of the mean
    cut = {m: t.clone() for m, t in tokens.items()}
    for t in cut.values():
        t[..., 16:32] = 0
    changed = ens(batch, token_overrides=cut).risk
    m1 = ens.members[1](batch, token_overrides={m: t[..., 16:32] for m, t in cut.items()}).risk
    expected = (ens.members[0](batch).risk + m1 + ens.members[2](batch).risk) / 3
    torch.testing.assert_close(changed, expected)


@pytest.mark.parametrize("target", ["risk", "response"])
def test_attributions_are_the_members_mean_and_complete(target):
    members = _members()
    ens = MultimodalEnsemble(members).eval()
    batch = _single(make_batch(b=2))
    # genomics at its raw features, patches + EHR at their embeddings (the explanation defaults)
    res = integrated_gradients(ens, batch, target=target, n_steps=128, response_class=-1)
    per = [integrated_gradients(m, batch, target=target, n_steps=128, response_class=-1) for m in members]
    assert set(res.tokens) == {"pathology", "genomics", "ehr"}
    for mod, t in res.tokens.items():
        np.testing.assert_allclose(t.scores, np.mean([p.tokens[mod].scores for p in per], axis=0), rtol=1e-4,
                                   atol=1e-6)
    assert res.f_x == pytest.approx(np.mean([p.f_x for p in per]), rel=1e-5)
    assert res.completeness_error < 0.01


def test_modality_shapley_of_the_ensemble_is_the_members_mean():
    members = _members()
    ens = MultimodalEnsemble(members).eval()
    batch = _single(make_batch(b=2))
    shap = modality_shapley(ens, batch)
    per = [modality_shapley(m, batch) for m in members]
    for mod, v in shap["values"].items():
        assert v == pytest.approx(np.mean([p["values"][mod] for p in per]), abs=1e-6)
    assert sum(shap["values"].values()) == pytest.approx(shap["f_all"] - shap["f_none"], abs=1e-6)


def test_members_must_share_one_configuration():
    a = _members(1)[0]
    cfg = MultimodalConfig(streams=STREAMS, d_model=32, num_heads=4, num_latents=4, depth=1, bin_edges=[1.0],
                           response_classes=2, num_arms=2)
    with pytest.raises(ValueError, match="member 1 has a different configuration"):
        MultimodalEnsemble([a, MultimodalModel(cfg)])
    with pytest.raises(ValueError, match="at least one member"):
        MultimodalEnsemble([])


def test_member_zero_keeps_the_seed():
    assert [member_seed(7, k) for k in range(3)] == [7, 1007, 2007]
