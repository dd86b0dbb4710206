"""The wide path: a penalized linear log-hazard term beside the fusion trunk."""

from __future__ import annotations

import torch

from multimodal.model.wide import WidePath
from tests.model.test_model_contract import STREAMS, make_batch, make_model


def test_zero_at_start_so_the_model_starts_as_the_deep_model() -> None:
    batch = make_batch()
    deep, wide = make_model().eval(), make_model(wide=True, wide_l2=0.1).eval()
    wide.load_state_dict(deep.state_dict(), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(wide(batch).risk, deep(batch).risk)


def test_wide_term_shifts_the_risk_linearly_and_is_penalized_in_training_only() -> None:
    model = make_model(wide=True, wide_l2=0.5)
    with torch.no_grad():
        model.wide.parts["genomics"].w.fill_(0.1)
    batch = make_batch()
    model.eval()
    with torch.no_grad():
        out = model(batch)
        base = model.wide(batch.streams, {m: s.mask.any(1) for m, s in batch.streams.items()})
    g = batch.streams["genomics"].features
    torch.testing.assert_close(base, 0.1 * g.sum((1, 2)) + 0.0, rtol=1e-5, atol=1e-5)
    assert "wide_l2" not in out.losses
    model.train()
    out = model(batch)
    torch.testing.assert_close(out.losses["wide_l2"], torch.tensor(0.5 * 0.01 * g.shape[1] * g.shape[2]))
    out.loss.backward()
    assert model.wide.parts["pathology"].w.grad is not None and model.wide.parts["ehr"].code.grad is not None


def test_absent_modality_gives_its_learned_offset() -> None:
    wide = WidePath({s["modality"]: s for s in STREAMS})
    with torch.no_grad():
        for p in wide.parts.parameters():
            p.fill_(1.0)
        wide.absent["pathology"].fill_(-3.0)
    batch = make_batch(missing=("pathology",))
    present = {m: s.mask.any(1) for m, s in batch.streams.items()}
    full = wide(batch.streams, present)
    only_other = WidePath({s["modality"]: s for s in STREAMS if s["modality"] != "pathology"})
    only_other.load_state_dict({k: v for k, v in wide.state_dict().items() if "pathology" not in k})
    torch.testing.assert_close(full, only_other(batch.streams, present) - 3.0)


def test_per_arm_predictions_carry_the_wide_term() -> None:
    model = make_model(wide=True).eval()
    with torch.no_grad():
        model.wide.absent["pathology"].fill_(2.0)
        model.wide.parts["genomics"].w.fill_(0.2)
        out = model(make_batch(missing=("pathology",)), per_arm=True)
    ref = make_model().eval()
    ref.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        r = ref(make_batch(missing=("pathology",)), per_arm=True)
    diff = out.risk_per_arm - r.risk_per_arm
    torch.testing.assert_close(diff[:, 0], diff[:, 1])
    assert (diff.abs() > 0.1).all()
