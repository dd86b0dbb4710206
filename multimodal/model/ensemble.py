"""``MultimodalEnsemble``: independently trained copies of one architecture whose predictions are averaged.

A deep ensemble (Lakshminarayanan et al., NeurIPS 2017): each member is a :class:`MultimodalModel` with the same
configuration, trained from its own seed (initialisation, data order, patch sampling, dropout) on the same patients,
each with its own early stopping. On the synthetic development cohorts single trainings' per-arm response predictions
varied a lot with the seed alone, and the average of a few trainings was closer to the truth than any typical member
(docs/explainability.md).

The ensemble is used wherever a model is — prediction, reports, explanations — through the same interface:

* outputs are member means: risk score, survival S(t) at each bin end (the survival of the mixture), response
  probabilities (overall and per arm); hazards are re-derived from the mean survival, response logits are the log of
  the mean probabilities;
* :meth:`encode_tokens` concatenates the members' encoder outputs along the feature axis and ``token_overrides`` are
  split back per member, so attributions taken at the token embeddings (patches, EHR codes) are attributions of the
  averaged function: integrated gradients stay complete (sum = F(x) − F(baseline)) and modality Shapley values sum
  to F(all) − F(none) for the ensemble's own output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from multimodal.model.configuration import MultimodalConfig
from multimodal.model.modeling import MultimodalModel, MultimodalOutput
from multimodal.types import Batch

Tensor = torch.Tensor


def member_seed(seed: int, k: int) -> int:
    """Seed of ensemble member ``k``: member 0 keeps ``seed`` (an ensemble of one is the single model)."""
    return seed + 1000 * k


def _mean(values: Sequence[Tensor | None]) -> Tensor | None:
    return None if values[0] is None else torch.stack(list(values)).mean(0)


def _hazards_from_survival(s: Tensor) -> Tensor:
    """Discrete-time hazards h_j = 1 − S_j / S_{j−1} (S_0 = 1) of a survival curve (..., bins)."""
    prev = torch.cat([torch.ones_like(s[..., :1]), s[..., :-1]], dim=-1)
    return (1.0 - s / prev.clamp(min=1e-12)).clamp(0.0, 1.0)


class MultimodalEnsemble(nn.Module):
    """``members`` (same configuration) behind the :class:`MultimodalModel` interface; outputs are member means."""

    def __init__(self, members: Sequence[MultimodalModel]) -> None:
        super().__init__()
        if len(members) < 1:
            msg = "MultimodalEnsemble: expected at least one member"
            raise ValueError(msg)
        first = members[0].config.to_dict()
        for i, m in enumerate(members[1:], start=1):
            if m.config.to_dict() != first:
                msg = f"MultimodalEnsemble: member {i} has a different configuration from member 0"
                raise ValueError(msg)
        self.members = nn.ModuleList(members)

    @classmethod
    def from_config(cls, config: MultimodalConfig, num_members: int) -> MultimodalEnsemble:
        """``num_members`` freshly initialised members (weights to be loaded or trained)."""
        return cls([MultimodalModel(config) for _ in range(num_members)])

    def save_pretrained(self, directory: str | Path) -> None:
        """``config.json`` (the members' shared configuration) + ``model.safetensors`` (members under ``members.<k>.``)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(d)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})

    # ---- the MultimodalModel interface -----------------------------------------------------------------------------
    @property
    def config(self) -> MultimodalConfig:
        return self.members[0].config

    @property
    def modalities(self) -> list[str]:
        return self.members[0].modalities

    @property
    def specs(self) -> dict[str, dict]:
        return self.members[0].specs

    @property
    def num_members(self) -> int:
        return len(self.members)

    def encode_tokens(self, batch: Batch) -> dict[str, Tensor]:
        """Each modality's member encoder outputs, concatenated along the feature axis: (B, N, members × d)."""
        per = [m.encode_tokens(batch) for m in self.members]
        return {mod: torch.cat([p[mod] for p in per], dim=-1) for mod in per[0]}

    def member_tokens(self, token_overrides: dict[str, Tensor] | None, k: int) -> dict[str, Tensor] | None:
        """Member ``k``'s slice of concatenated encoder outputs (as :meth:`encode_tokens` returns them)."""
        if not token_overrides:
            return None
        d = int(self.config.d_model)
        return {mod: t[..., k * d:(k + 1) * d] for mod, t in token_overrides.items()}

    def forward(
        self, batch: Batch, *, per_arm: bool = False, token_overrides: dict[str, Tensor] | None = None,
    ) -> MultimodalOutput:
        outs = [m(batch, per_arm=per_arm, token_overrides=self.member_tokens(token_overrides, k))
                for k, m in enumerate(self.members)]
        survival = _mean([o.survival for o in outs])
        response_prob = _mean([o.response_prob for o in outs])
        out = MultimodalOutput(
            risk=_mean([o.risk for o in outs]),
            fused=torch.cat([o.fused for o in outs], dim=-1),
            survival=survival,
            hazards=None if survival is None else _hazards_from_survival(survival),
            response_prob=response_prob,
            response_logits=None if response_prob is None else torch.log(response_prob.clamp(min=1e-12)),
            risk_per_arm=_mean([o.risk_per_arm for o in outs]),
            survival_per_arm=_mean([o.survival_per_arm for o in outs]),
            response_prob_per_arm=_mean([o.response_prob_per_arm for o in outs]),
            present=outs[0].present,
        )
        if all(o.loss is not None for o in outs):  # evaluation of the ensemble on targets: the members' mean loss
            out.loss = _mean([o.loss for o in outs])
            out.losses = {k: _mean([o.losses[k] for o in outs]) for k in outs[0].losses}
        return out
