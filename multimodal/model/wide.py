"""The wide path: a penalized linear log-hazard term on each modality's raw inputs, beside the fusion trunk.

Wide & deep (Cheng et al. 2016, "Wide & Deep Learning for Recommender Systems"): the linear part fits what a linear
model can fit — on small cohorts an elastic-net Cox is hard to beat — and the deep part (fusion transformer) learns
what is left: interactions, spatial context, trajectories. Each modality contributes

* patches: ``w · mean(features over the bag)``;
* slots (pathways / gene families / genes): ``Σ_p Σ_f W[p, f] · x[p, f]`` over the present slots;
* events (EHR, clinical): the mean over the patient's tokens of ``a[code] + b[code] · value + c[code] · value · years``
  (``years`` = signed time from the prediction time, so a code's trend can enter linearly);

and a learned offset when the modality is absent (or hidden by modality dropout). Weights start at zero (the model
begins as the deep model alone) and carry their own L2 penalty, ``wide_l2 · Σ w²``, added to the training loss only.
"""

from __future__ import annotations

import torch
from torch import nn

from multimodal.types import TokenStream

Tensor = torch.Tensor


class _PatchWide(nn.Module):
    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(feature_dim))

    def forward(self, s: TokenStream, mask: Tensor) -> Tensor:
        assert s.features is not None
        m = mask.unsqueeze(-1).to(self.w.dtype)
        mean = (s.features.to(self.w.dtype) * m).sum(1) / m.sum(1).clamp(min=1.0)
        return mean @ self.w


class _SlotWide(nn.Module):
    def __init__(self, num_slots: int, feature_dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(num_slots, feature_dim))

    def forward(self, s: TokenStream, mask: Tensor) -> Tensor:
        assert s.features is not None
        x = s.features.to(self.w.dtype)
        p = min(x.shape[1], self.w.shape[0])
        x = x[:, :p] * mask[:, :p].unsqueeze(-1).to(x.dtype)
        return torch.einsum("bpf,pf->b", x, self.w[:p])


class _EventWide(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        v = max(vocab_size, 2)
        self.code = nn.Parameter(torch.zeros(v))
        self.value = nn.Parameter(torch.zeros(v))
        self.trend = nn.Parameter(torch.zeros(v))

    def forward(self, s: TokenStream, mask: Tensor) -> Tensor:
        assert s.codes is not None
        codes = s.codes.long().clamp(0, self.code.shape[0] - 1)
        m = mask.to(self.code.dtype)
        v = torch.zeros_like(m) if s.values is None else s.values.to(m.dtype)
        if s.value_mask is not None:
            v = v * s.value_mask.to(m.dtype)
        years = torch.zeros_like(m) if s.times is None else (s.times.to(m.dtype) / 365.25).clamp(-5.0, 5.0)
        per_token = self.code[codes] + self.value[codes] * v + self.trend[codes] * v * years
        return (per_token * m).sum(1) / m.sum(1).clamp(min=1.0)


class WidePath(nn.Module):
    """Sum over modalities of a linear term on the raw inputs (see the module docstring); shape (B,)."""

    def __init__(self, specs: dict[str, dict]) -> None:
        super().__init__()
        parts: dict[str, nn.Module] = {}
        for m, spec in specs.items():
            kind = spec["kind"]
            if kind == "patches":
                parts[m] = _PatchWide(int(spec["feature_dim"]))
            elif kind == "slots":
                parts[m] = _SlotWide(int(spec["num_slots"]), int(spec["feature_dim"]))
            elif kind == "events":
                parts[m] = _EventWide(int(spec["vocab_size"]))
        self.parts = nn.ModuleDict(parts)
        self.absent = nn.ParameterDict({m: nn.Parameter(torch.zeros(1)) for m in parts})

    def forward(self, streams: dict[str, TokenStream], present: dict[str, Tensor]) -> Tensor:
        out: Tensor | None = None
        for m, part in self.parts.items():
            s = streams[m]
            pres = present[m]
            mask = s.mask & pres.unsqueeze(1)
            term = torch.where(pres, part(s, mask), self.absent[m].expand(pres.shape[0]))
            out = term if out is None else out + term
        assert out is not None
        return out

    def penalty(self) -> Tensor:
        """Σ w² over the linear weights (the absence offsets are not penalized)."""
        return sum((p.pow(2).sum() for p in self.parts.parameters()), torch.zeros(()))


# ---- the wide path as a linear model: design matrix and flat weights (for a closed-form start) ---------------------
def _part_design(part: nn.Module, s: TokenStream, mask: Tensor) -> Tensor:
    """The inputs of one part such that ``part(s, mask) == design @ flat(part's weights)`` (B, P_part)."""
    if isinstance(part, _PatchWide):
        assert s.features is not None
        m = mask.unsqueeze(-1).to(part.w.dtype)
        return (s.features.to(part.w.dtype) * m).sum(1) / m.sum(1).clamp(min=1.0)
    if isinstance(part, _SlotWide):
        assert s.features is not None
        p_all, f = part.w.shape
        x = s.features.to(part.w.dtype)
        p = min(x.shape[1], p_all)
        out = torch.zeros(x.shape[0], p_all, f, dtype=x.dtype, device=x.device)
        out[:, :p] = x[:, :p] * mask[:, :p].unsqueeze(-1).to(x.dtype)
        return out.flatten(1)
    assert isinstance(part, _EventWide) and s.codes is not None
    v_size = part.code.shape[0]
    codes = s.codes.long().clamp(0, v_size - 1)
    m = mask.to(part.code.dtype)
    v = torch.zeros_like(m) if s.values is None else s.values.to(m.dtype)
    if s.value_mask is not None:
        v = v * s.value_mask.to(m.dtype)
    years = torch.zeros_like(m) if s.times is None else (s.times.to(m.dtype) / 365.25).clamp(-5.0, 5.0)
    n = m.sum(1, keepdim=True).clamp(min=1.0)
    onehot = torch.nn.functional.one_hot(codes, v_size).to(m.dtype) * m.unsqueeze(-1)  # (B, N, V)
    blocks = [onehot.sum(1), (onehot * v.unsqueeze(-1)).sum(1), (onehot * (v * years).unsqueeze(-1)).sum(1)]
    return torch.cat([b / n for b in blocks], dim=1)


def wide_design(wide: WidePath, streams: dict[str, TokenStream], present: dict[str, Tensor]) -> Tensor:
    """(B, P) design matrix with ``wide(streams, present) == wide_design(...) @ flat_weights(wide)``."""
    cols = []
    for m, part in wide.parts.items():
        pres = present[m]
        mask = streams[m].mask & pres.unsqueeze(1)
        d = _part_design(part, streams[m], mask) * pres.unsqueeze(1).to(torch.float32)
        cols += [d, (~pres).unsqueeze(1).to(d.dtype)]
    return torch.cat(cols, dim=1)


def _flat_params(wide: WidePath) -> list[nn.Parameter]:
    out: list[nn.Parameter] = []
    for m, part in wide.parts.items():
        out += [part.w] if isinstance(part, (_PatchWide, _SlotWide)) else [part.code, part.value, part.trend]
        out.append(wide.absent[m])
    return out


def flat_weights(wide: WidePath) -> Tensor:
    """Every weight of the wide path, in :func:`wide_design`'s column order."""
    return torch.cat([p.detach().flatten() for p in _flat_params(wide)])


def load_flat_weights(wide: WidePath, theta: Tensor) -> None:
    """Set the wide path's weights from a flat vector in :func:`wide_design`'s column order."""
    i = 0
    with torch.no_grad():
        for p in _flat_params(wide):
            n = p.numel()
            p.copy_(theta[i : i + n].view_as(p).to(p.dtype))
            i += n
    if i != theta.numel():
        raise ValueError(f"expected {i} wide weights, got {theta.numel()}")
