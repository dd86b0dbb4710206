r"""Survival and response losses as plain functions with mathematical names (torchsurv style).

Conventions: ``event`` True = observed; higher risk = worse.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def discretize_times(time: Tensor, edges: Tensor) -> Tensor:
    """Bin index in ``[0, len(edges)]`` of each time given interior cut points ``edges`` (sorted)."""
    return torch.bucketize(time.contiguous(), edges.to(time.dtype).contiguous(), right=False)


def discrete_time_nll(hazard_logits: Tensor, bins: Tensor, event: Tensor, alpha: float = 0.0, eps: float = 1e-7) -> Tensor:
    r"""Negative log-likelihood of the discrete-time hazard model (Zadeh & Schmid 2020), averaged over the batch.

    With hazards :math:`h_k = \sigma(\text{logit}_k)` and :math:`S_k = \prod_{j \le k} (1 - h_j)`, :math:`S_{-1}=1`,
    a patient with bin :math:`y` contributes :math:`-\log S_{y-1} - \log h_y` when the event is observed and
    :math:`-\log S_y` when censored. The total is :math:`(1-\alpha)\,\ell + \alpha\,\ell_{\text{uncensored}}`.

    Args:
        hazard_logits: (B, K) logits of the per-bin hazards.
        bins: (B,) int bin index of the observed/censoring time.
        event: (B,) bool, True = event observed.
        alpha: weight that up-weights the uncensored term (0 = plain NLL).
    """
    log_h = F.logsigmoid(hazard_logits)  # log h_k
    log_1mh = F.logsigmoid(-hazard_logits)  # log (1 - h_k)
    log_s = torch.cumsum(log_1mh, dim=1)  # log S_k
    log_s_pad = torch.cat([torch.zeros_like(log_s[:, :1]), log_s], dim=1)  # log S_{k-1}, index shifted by one
    y = bins.long().unsqueeze(1)
    ev = event.to(hazard_logits.dtype)
    log_s_prev = log_s_pad.gather(1, y).squeeze(1)
    log_h_y = log_h.gather(1, y).squeeze(1)
    log_s_y = log_s_pad.gather(1, y + 1).squeeze(1)
    uncensored = -ev * (log_s_prev + log_h_y)
    censored = -(1.0 - ev) * log_s_y
    loss = (1.0 - alpha) * (uncensored + censored) + alpha * uncensored
    return loss.mean()


def neg_partial_log_likelihood(log_hz: Tensor, event: Tensor, time: Tensor) -> Tensor:
    r"""Cox negative partial log-likelihood with Breslow ties, divided by the number of events.

    A batch without any event carries no information for the Cox likelihood: we warn and return a zero that stays
    connected to the graph (so every parameter still receives a — zero — gradient and DDP does not complain).
    Use an event-guaranteeing batch sampler or larger batches to avoid it.
    """
    n_events = int(event.sum())
    if n_events == 0:
        warnings.warn("Cox loss: batch without events; returning zero loss", stacklevel=2)
        return log_hz.sum() * 0.0
    order = torch.argsort(time, descending=True)
    lh = log_hz[order]
    ev = event[order]
    t = time[order]
    log_cum = torch.logcumsumexp(lh, dim=0)
    # Breslow: for tied times every member of the tie uses the risk set of the whole tie (last index of the tie).
    uniq, inverse, counts = torch.unique_consecutive(t, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0) - 1
    log_risk = log_cum[last[inverse]]
    return -((lh - log_risk) * ev.to(lh.dtype)).sum() / n_events


def response_cross_entropy(logits: Tensor, label: Tensor, observed: Tensor) -> Tensor:
    """Cross-entropy over patients whose response is known; zero (graph-connected) when none is."""
    if not bool(observed.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[observed], label[observed].long())
