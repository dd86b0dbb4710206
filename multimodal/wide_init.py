"""A closed-form start for the wide path: fit it as an elastic-net Cox model, then train the fusion trunk on top.

``model.wide_init: cox``. The wide path (:mod:`multimodal.model.wide`) is linear in its weights, so its inputs over the
training patients form a design matrix (:func:`~multimodal.model.wide.wide_design`). An elastic-net Cox model
(:class:`~multimodal.baselines.CoxnetBaseline`, penalty chosen by inner cross-validation on the training patients
only) is fitted on it; its coefficients, mapped back from the standardized scale, become the wide path's weights,
which are then frozen. The survival head's last layer starts at zero, so the model begins exactly as that linear model
and the fusion trunk learns what it leaves (with early stopping on the inner validation patients, as always). This is
stacking inside one model: predictions, checkpoints and explanations are those of the model's own forward.

A discrete-time head also gets its per-bin baseline logits fitted (:func:`fit_start_baseline`: the head's own loss,
minimized over the K baseline logits with the linear term as a fixed offset), so the start is a complete survival
model — its loss and curves are those of the fitted linear model, and the selection rule can compare it with every
trained epoch (:func:`multimodal.training.fit_model`, ``select_start``).

The trunk trains against *cross-fitted* linear terms (:func:`cross_fitted_offsets`: each training patient's term from
a fit without that patient, passed as ``Batch.offset`` and used in place of the wide path in training only); at
inference the wide path is the full fit on every training patient of the fold (inner validation included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.adapters.base import Adapter
from multimodal.baselines import create_baseline
from multimodal.cohorts.cohort import Cohort
from multimodal.data import PatientDataset, collate_patients
from multimodal.model.heads import DiscreteSurvivalHead
from multimodal.model.losses import discrete_time_nll, discretize_times
from multimodal.model.modeling import MultimodalModel
from multimodal.model.wide import load_flat_weights, wide_design

#: Scales of the trunk's term tried after training (:func:`choose_trunk_scale`): 0 = the fitted start, 1 = as trained.
TRUNK_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Folds of the cross-fitting that gives each training patient its out-of-fold linear term (:func:`cross_fitted_offsets`).
CROSS_FIT_FOLDS = 5

__all__ = ["CROSS_FIT_FOLDS", "TRUNK_SCALES", "WideStart", "choose_trunk_scale", "one_se_choice", "cross_fitted_offsets", "fit_offset_baseline", "fit_start_baseline",
           "fit_wide_cox", "fit_wide_start", "start_from_wide", "start_trunk_at_zero",
           "trunk_layers"]


@torch.no_grad()
def _design(model: MultimodalModel, cohort: Cohort, adapters: Mapping[str, Adapter], ids: Sequence[str],
            batch_size: int) -> np.ndarray:
    assert model.wide is not None
    ds = PatientDataset(cohort, adapters, ids, train=False)
    rows = []
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(len(ds), start + batch_size))]
        batch = collate_patients(items, num_response_classes=max(cohort.response_classes, 2),
                                 time_unit=cohort.time_unit)
        streams = model.input_streams(batch)
        present = {m: s.mask.any(dim=1) for m, s in streams.items()}
        rows.append(wide_design(model.wide, streams, present).cpu().numpy())
    return np.concatenate(rows).astype(np.float64)


def _fit_theta(x: np.ndarray, time: np.ndarray, event: np.ndarray, seed: int) -> np.ndarray:
    """Coefficients on the raw scale of the design columns of an elastic-net Cox fit (inner-CV penalty)."""
    cols = [f"wide:{j}" for j in range(x.shape[1])]
    cox = create_baseline("coxnet", clip=None, seed=seed, modalities=None)
    cox.fit(pd.DataFrame(x, columns=cols), time, event)
    prep = cox.preprocessor_
    theta = np.zeros(x.shape[1])
    theta[prep.kept_indices] = cox.coefficients() / np.asarray(prep.std_)
    return theta


def fit_wide_cox(model: MultimodalModel, cohort: Cohort, adapters: Mapping[str, Adapter], train_ids: Sequence[str],
                 *, seed: int = 0, batch_size: int = 16, design: np.ndarray | None = None) -> torch.Tensor:
    """Flat wide-path weights (the column order of :func:`wide_design`) of an elastic-net Cox model fitted on the
    training patients' wide-path inputs; the penalty is chosen by inner CV on those patients only."""
    if model.wide is None:
        raise ValueError("fit_wide_cox: the model has no wide path (model.wide: true)")
    x = _design(model, cohort, adapters, list(train_ids), batch_size) if design is None else design
    time, event = cohort.survival_arrays(list(train_ids))
    return torch.from_numpy(_fit_theta(x, time, event, seed)).float()


def cross_fitted_offsets(model: MultimodalModel, cohort: Cohort, adapters: Mapping[str, Adapter], ids: Sequence[str],
                         *, seed: int = 0, folds: int = CROSS_FIT_FOLDS, batch_size: int = 16,
                         design: np.ndarray | None = None) -> dict[str, float]:
    """Each patient's linear term from an elastic-net Cox model fitted without that patient (``folds``-fold
    cross-fitting, stratified by event, seeded): the offsets the trunk trains against (stacking, Wolpert 1992;
    van der Laan et al. 2007, "Super Learner"). In-sample, the full fit's term explains the training patients better
    than it will explain new ones, which leaves the trunk too little to learn."""
    from sklearn.model_selection import StratifiedKFold

    if model.wide is None:
        raise ValueError("cross_fitted_offsets: the model has no wide path (model.wide: true)")
    ids = list(ids)
    x = _design(model, cohort, adapters, ids, batch_size) if design is None else design
    time, event = cohort.survival_arrays(ids)
    out = np.zeros(len(ids))
    counts = [int(np.sum(event)), int(np.sum(~event.astype(bool)))]
    k = max(2, min([folds] + [c for c in counts if c > 0]))
    for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, event.astype(int)):
        out[te] = x[te] @ _fit_theta(x[tr], time[tr], event[tr], seed)
    return dict(zip(ids, out.tolist(), strict=True))


def fit_start_baseline(model: MultimodalModel, cohort: Cohort, adapters: Mapping[str, Adapter],
                       ids: Sequence[str], theta: torch.Tensor, *, batch_size: int = 16,
                       design: np.ndarray | None = None) -> torch.Tensor | None:
    """The per-bin baseline logits of a proportional discrete-time head that minimize its own loss over ``ids`` with
    the linear term ``design @ theta`` as a fixed offset (None for a head without a baseline, e.g. Cox)."""
    head = model.survival_head
    if not isinstance(head, DiscreteSurvivalHead) or not head.prop:
        return None
    x = _design(model, cohort, adapters, list(ids), batch_size) if design is None else design
    return fit_offset_baseline(model, cohort, ids, x @ theta.double().numpy())


def fit_offset_baseline(model: MultimodalModel, cohort: Cohort, ids: Sequence[str],
                        offset: np.ndarray) -> torch.Tensor | None:
    """The per-bin baseline logits of a proportional discrete-time head that minimize its own loss over ``ids`` with
    ``offset`` (one log-hazard term per patient of ``ids``) fixed (None for a head without a baseline, e.g. Cox)."""
    head = model.survival_head
    if not isinstance(head, DiscreteSurvivalHead) or not head.prop:
        return None
    offset = torch.as_tensor(np.asarray(offset, dtype=np.float64))
    time, event = cohort.survival_arrays(list(ids))
    # binned exactly as the head's loss bins its (float32) targets: times on a bin edge fall on the same side
    bins = discretize_times(torch.as_tensor(time, dtype=torch.float32), head.edges.float())
    ev = torch.as_tensor(event, dtype=torch.bool)
    b = torch.zeros(head.baseline.numel(), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([b], lr=1.0, max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = discrete_time_nll(b.unsqueeze(0) + offset.unsqueeze(1), bins, ev, alpha=head.alpha)
        loss.backward()
        return loss

    opt.step(closure)
    out = b.detach().float()
    if not torch.isfinite(out).all():  # a bin without events or patients at risk: keep the head's own start
        return None
    return out


@dataclass(frozen=True)
class WideStart:
    """Everything the closed-form start fits once per fold (shared by every ensemble member)."""

    theta: torch.Tensor  # flat wide-path weights (:func:`fit_wide_cox`)
    baseline: torch.Tensor | None  # per-bin baseline logits (:func:`fit_start_baseline`)
    offsets: dict[str, float]  # cross-fitted linear terms the trunk trains against (:func:`cross_fitted_offsets`)


def fit_wide_start(model: MultimodalModel, cohort: Cohort, adapters: Mapping[str, Adapter], ids: Sequence[str],
                   *, seed: int = 0, batch_size: int = 16) -> WideStart:
    """:func:`fit_wide_cox`, :func:`fit_start_baseline` and :func:`cross_fitted_offsets` on ``ids``, from one pass of
    the wide-path design over the patients."""
    if model.wide is None:
        raise ValueError("fit_wide_start: the model has no wide path (model.wide: true)")
    ids = list(ids)
    x = _design(model, cohort, adapters, ids, batch_size)
    theta = fit_wide_cox(model, cohort, adapters, ids, seed=seed, design=x)
    return WideStart(theta, fit_start_baseline(model, cohort, adapters, ids, theta, design=x),
                     cross_fitted_offsets(model, cohort, adapters, ids, seed=seed, design=x))


def start_from_wide(model: MultimodalModel, theta: torch.Tensor, baseline: torch.Tensor | None = None) -> None:
    """Load ``theta`` into the wide path and freeze it; zero the survival head's last layer (deep part starts at 0);
    set the discrete-time head's baseline logits to ``baseline`` when given (:func:`fit_start_baseline`)."""
    if model.wide is None or model.survival_head is None:
        raise ValueError("start_from_wide: the model needs a wide path and a survival head")
    load_flat_weights(model.wide, theta)
    for p in model.wide.parameters():
        p.requires_grad_(False)
    start_trunk_at_zero(model, baseline)


def start_trunk_at_zero(model: MultimodalModel, baseline: torch.Tensor | None = None, *, head: str = "survival") -> None:
    """Zero the last layer of ``head`` (``survival``, or every arm's ``response`` head): the trunk's term starts at 0,
    so the model starts as its fixed term (the wide path or the pipeline's stack offset); set a discrete-time head's
    baseline logits when given."""
    if baseline is not None and model.survival_head is not None:
        with torch.no_grad():
            model.survival_head.baseline.copy_(baseline)
    with torch.no_grad():
        for last in trunk_layers(model, head):
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()


def trunk_layers(model: MultimodalModel, head: str = "survival") -> list[torch.nn.Linear]:
    """The last linear layer of the survival head, or of each arm's response head: the trunk's whole term there."""
    heads = [model.survival_head] if head == "survival" else list(model.response_heads or [])
    if not heads or heads[0] is None:
        raise ValueError(f"the model has no {head} head")
    return [[m for m in h.modules() if isinstance(m, torch.nn.Linear)][-1] for h in heads]


@torch.no_grad()
def choose_trunk_scale(model: MultimodalModel, val_ds: PatientDataset, cfg: Any, *, num_classes: int = 2,
                       time_unit: str = "days", scales: Sequence[float] = TRUNK_SCALES,
                       head: str = "survival") -> tuple[float, dict[str, float]]:
    """Shrink the trained trunk's term towards the fitted start: the last layer of ``head`` (:func:`trunk_layers`:
    the trunk's whole term there; the start's offset and baseline stay) is scaled by the λ of ``scales`` with the best selection
    score on the inner-validation patients (ties → the smaller λ), the stacking weight of the super learner's two
    candidates. With ``training.select_metric: loss_1se`` the rule is the one-standard-error rule instead
    (:func:`one_se_choice` on each patient's loss): the inner-validation patients also chose the epoch, so the best
    λ there overstates the trunk (winner's curse). Returns λ and every λ's score; ``model`` keeps the chosen scale."""
    from multimodal.training import make_accelerator, val_losses, validation_score

    layers = trunk_layers(model, head)
    saved = [(m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone()) for m in layers]

    def scale(lam: float) -> None:
        for m, (w0, b0) in zip(layers, saved, strict=True):
            m.weight.copy_(w0 * lam)
            if b0 is not None:
                m.bias.copy_(b0 * lam)

    acc = make_accelerator(cfg)
    scores: dict[str, float] = {}
    best, best_score = 1.0, -float("inf")
    per_patient: dict[float, np.ndarray] = {}
    for lam in scales:
        scale(lam)
        if cfg.select_metric == "loss_1se":
            per_patient[float(lam)] = val_losses(model, val_ds, acc, cfg, num_classes, time_unit)
            score = -float(np.mean(per_patient[float(lam)]))
        else:
            score = validation_score(model, val_ds, cfg, num_classes=num_classes, time_unit=time_unit, accelerator=acc)
        scores[f"{lam:g}"] = score
        if np.isfinite(score) and score > best_score + 1e-12:
            best, best_score = float(lam), score
    if per_patient and np.isfinite(best_score):
        best = one_se_choice(per_patient)
    scale(best)
    return best, scores


def one_se_choice(losses: dict[float, np.ndarray]) -> float:
    """The one-standard-error rule (Breiman et al. 1984; Hastie, Tibshirani & Friedman 2009, §7.10): the smallest
    scale whose mean per-patient loss is within one standard error of the best scale's, the standard error being
    that of the paired per-patient differences to the best scale. Patients with a non-finite loss are left out."""
    lams = sorted(losses)
    ok = np.logical_and.reduce([np.isfinite(np.asarray(losses[lam], dtype=np.float64)) for lam in lams])
    x = {lam: np.asarray(losses[lam], dtype=np.float64)[ok] for lam in lams}
    if ok.sum() == 0:
        return lams[-1]
    best = min(lams, key=lambda lam: (float(x[lam].mean()), lam))
    for lam in lams:
        d = x[lam] - x[best]
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        if float(d.mean()) <= se + 1e-12:
            return lam
    return best
