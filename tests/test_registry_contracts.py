"""Every registered extension point keeps its contract (issue 20): each entry of the adapter, fusion and head
registries is built from the registry, run, saved and loaded back to the same outputs, and refuses bad input; a
registered baseline must be one the baseline tests loop over. A new registration inherits these checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from multimodal.adapters.base import Adapter
from multimodal.cohorts.cohort import Cohort
from multimodal.registry import ADAPTERS, FUSION, HEADS, list_adapters, list_fusion, list_heads

sys.path.insert(0, str(Path(__file__).parent / "cohorts"))
from fixtures_cohort import PATIENTS, write_tiny_cohort  # noqa: E402

D = 8


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return Cohort.from_manifest(write_tiny_cohort(tmp_path_factory.mktemp("contracts") / "cohort").manifest_path)


def _same_stream(a, b) -> None:  # noqa: ANN001
    assert a.modality == b.modality and a.names == b.names
    fa, fb = a.tensor_fields(), b.tensor_fields()
    assert fa.keys() == fb.keys()
    for k, v in fa.items():
        assert torch.equal(v, fb[k]), k


@pytest.mark.parametrize("name", list_adapters())
def test_every_adapter_fits_transforms_round_trips_and_refuses_misuse(name: str, cohort: Cohort, tmp_path: Path):
    assert name in cohort.modalities, f"the tiny cohort has no {name!r} modality to test the adapter on"
    unfitted = ADAPTERS.create(name)
    with pytest.raises(RuntimeError, match="not fitted"):
        unfitted.transform(PATIENTS[0])
    adapter = ADAPTERS.create(name).fit(cohort, PATIENTS[:6])
    spec = adapter.stream_spec()
    assert spec.modality == name
    streams = {p: adapter.transform(p) for p in PATIENTS}
    for p, s in streams.items():
        assert s.modality == name and s.batch_size == 1, p
        if s.features is not None:
            assert s.features.shape[-1] == spec.feature_dim and torch.isfinite(s.features).all(), p
    adapter.save(tmp_path / name)
    loaded = Adapter.load(tmp_path / name)
    assert type(loaded) is type(adapter)
    loaded.bind(cohort)
    for p, s in streams.items():
        _same_stream(s, loaded.transform(p))


HEAD_ARGS = {"discrete_survival": {"bin_edges": [1.0, 2.0, 3.0]}, "response": {"num_classes": 2}}


@pytest.mark.parametrize("name", list_heads())
def test_every_head_maps_the_fused_token_and_round_trips(name: str):
    torch.manual_seed(0)
    head = HEADS.create(name, d_model=D, **HEAD_ARGS.get(name, {})).eval()
    h = torch.randn(5, D)
    out = head(h)
    assert out and all(v.shape[0] == 5 and torch.isfinite(v).all() for v in out.values())
    again = HEADS.create(name, d_model=D, **HEAD_ARGS.get(name, {})).eval()
    again.load_state_dict(head.state_dict())
    for k, v in again(h).items():
        assert torch.equal(v, out[k]), k
    with pytest.raises(RuntimeError):
        head(torch.randn(5, D + 1))  # a fused token of the wrong width


@pytest.mark.parametrize("name", list_fusion())
def test_every_fusion_block_fuses_with_and_without_padding_and_round_trips(name: str):
    torch.manual_seed(0)
    kw = {"d_model": D, "num_heads": 2, "depth": 2}
    block = FUSION.create(name, **kw).eval()
    compact, cmask = torch.randn(3, 6, D), torch.ones(3, 6, dtype=torch.bool)
    patches = torch.randn(3, 11, D)
    pmask = torch.ones(3, 11, dtype=torch.bool)
    pmask[1, 7:] = False
    out = block(compact, cmask, patches, pmask, 2)
    assert out.shape == compact.shape and torch.isfinite(out).all()
    # padding is invisible: patient 1 alone, without its padded patches, gets the same output
    alone = block(compact[1:2], cmask[1:2], patches[1:2, :7], None, 2)
    assert torch.allclose(alone, out[1:2], atol=1e-5)
    again = FUSION.create(name, **kw).eval()
    again.load_state_dict(block.state_dict())
    assert torch.equal(again(compact, cmask, patches, pmask, 2), out)
    with pytest.raises(RuntimeError):
        block(compact, cmask, torch.randn(3, 11, D + 2), pmask, 2)  # patch tokens of the wrong width


def test_every_registered_baseline_is_under_a_contract_test():
    """Tabular baselines are looped over by tests/eval/test_baselines.py (fit, predict, signal, leakage, errors);
    attention_mil, which reads the cohort's patches, by tests/eval/test_mil_baseline.py."""
    from multimodal.baselines import list_baselines

    sys.path.insert(0, str(Path(__file__).parent / "eval"))
    from test_baselines import TABULAR_RESPONSE, TABULAR_SURVIVAL

    covered = set(TABULAR_SURVIVAL) | set(TABULAR_RESPONSE) | {"attention_mil"}
    assert set(list_baselines()) <= covered
