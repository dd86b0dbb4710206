"""``model:`` of an experiment config (:class:`ModelConfig`) and the model it builds from fitted adapters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from multimodal.adapters.base import Adapter
from multimodal.cohorts.cohort import Cohort
from multimodal.config import from_dict, to_dict
from multimodal.model import MultimodalConfig, MultimodalModel

__all__ = ["ModelConfig", "build_model", "load_model_config", "quantile_bin_edges"]


@dataclass(frozen=True)
class ModelConfig:
    """Model section of the experiment YAML (maps onto :class:`MultimodalConfig`).

    Attributes:
        d_model: width of every token after its input encoder.
        depth: fusion layers (self-attention among compact tokens + FFN).
        num_heads: attention heads (must divide d_model).
        num_latents: learned latent tokens that cross-attend to the patch tokens.
        cross_layers: how many of the first fusion layers cross-attend to the patch tokens (cost O(N d) each).
        cross_queries: `latents` (only CLS + latents query the patches) or `all` (every compact token does).
        slot_hidden: width of each pathway's / gene family's own input encoder.
        ffn_mult: FFN expansion factor.
        dropout: dropout in attention outputs, FFNs and heads.
        modality_dropout: probability, per patient and modality in training, of hiding a present modality (never
            all of a patient's).
        fusion: registered fusion block name.
        pooled_readout: add each modality's mean encoder token (projected) to the fused CLS before the heads.
        survival: `discrete` (discrete-time hazards), `cox` (partial likelihood) or `none`.
        num_bins: discrete-time bins; cut at quantiles of the training event times.
        proportional: discrete-time head with one risk score shifting a learned baseline hazard (true) or free
            per-bin hazard logits (false).
        alpha: weight of the uncensored term in the discrete-time NLL (0 = plain NLL).
        survival_weight: multitask weight of the survival loss.
        response_weight: multitask weight of the response loss.
        response_trunk_grad: share (0-1) of the response loss's gradient that reaches the shared encoders and
            fusion when survival is trained too (task `both`); the response heads themselves always learn fully.
            0.1 by default, from `python -m bench.multitask` (300-patient synthetic development cohorts, seeds
            11-13, 5-fold CV): plain multitask training (1.0) lowers the survival c-index (0.613 vs 0.638) by
            memorizing response labels in the shared layers. With `dropout` 0.3 the shared layers memorize less and
            0.3 helps the response (the demo config: c-index 0.620, response AUROC 0.576, per-arm correlation 0.31
            vs 0.638 / 0.544 / 0.21 at 0.1 with dropout 0.1; with `training.average_epochs` 5: 0.643 / 0.575 / 0.32;
            and as a 3-member `ensemble`, the demo config: 0.654 / 0.581 / 0.34).
        ensemble: independently trained members (same patients and inner validation, seeds ``seed + 1000 k``)
            whose predictions are averaged, a deep ensemble; explanations attribute the averaged prediction. Training
            and prediction cost grow with it. 1 = a single model.
        wide: a wide path beside the fusion trunk: a linear log-hazard term on each modality's raw inputs (bag-mean
            patch embedding, pathway member values, per-code EHR / clinical values and trends), zero at the start,
            with its own L2 penalty `wide_l2` (multimodal/model/wide.py). Survival heads only.
        wide_l2: L2 penalty on the wide path's weights, added to the training loss.
        wide_lr_mult: the wide path's learning rate as a multiple of `training.lr` (its weights start at zero and
            must reach Cox-sized coefficients within the few epochs that early stopping allows).
        wide_init: `none` (the wide path starts at zero and trains with the rest) or `cox` (stacking inside the
            model: the wide path is first fitted as an elastic-net Cox model on the training patients, penalty by
            inner CV, then frozen; the survival head starts at zero, so training begins at that linear model and the
            fusion trunk learns what it leaves; multimodal/wide_init.py). Needs `wide: true`.
        stack: `none`, `pooled_enet` or `pooled_enet_gb` (stacking on the strongest classical models: an elastic-net
            Cox model, and with `_gb` a gradient-boosted Cox model, on every modality's pooled per-patient features,
            fitted on the training patients; their calibrated combined risk is a fixed log-hazard offset in the
            survival head; the fusion trunk starts at zero, trains against cross-fitted offsets, must beat that start
            on the inner-validation patients and is then shrunk towards it; multimodal/stack.py). For task
            `response` the same with elastic-net logistic regression (and histogram gradient boosting) and a binary
            response: their combined log-odds is the offset of the responder logit. Not with `wide_init: cox`.
            `pooled_enet_structure` / `pooled_enet_gb_structure`: the same plus a twin of the linear model that also
            reads the structure features (tissue co-localisation on the patch grid, lab kinetics over 90 days,
            gene-set x mutation products: multimodal/pooled.py); `stack_weights: fitted` lets the inner cross-fit
            decide how much each twin counts.
        stack_weights: how the stack's candidates are combined: `equal` (their standardized scores averaged, one
            fitted scale) or `fitted` (non-negative weights fitted on their cross-fitted scores).
    """

    d_model: int = 128
    depth: int = 2
    num_heads: int = 4
    num_latents: int = 8
    cross_layers: int = 1
    cross_queries: str = "latents"
    slot_hidden: int = 32
    ffn_mult: int = 2
    dropout: float = 0.1
    modality_dropout: float = 0.15
    fusion: str = "latent_cross_attention"
    pooled_readout: bool = True
    survival: str = "discrete"
    num_bins: int = 4
    proportional: bool = True
    alpha: float = 0.5
    survival_weight: float = 1.0
    response_weight: float = 1.0
    response_trunk_grad: float = 0.1
    ensemble: int = 1
    wide: bool = False
    wide_l2: float = 0.01
    wide_lr_mult: float = 1.0
    wide_init: str = "none"
    stack: str = "none"
    stack_weights: str = "equal"


def quantile_bin_edges(time: np.ndarray, event: np.ndarray, num_bins: int) -> list[float]:
    """Interior cut points at quantiles of the training event times (censored times if there are no events)."""
    t = time[event] if event.any() else time
    if num_bins <= 1 or len(t) == 0:
        return []
    qs = np.quantile(t, np.linspace(0, 1, num_bins + 1)[1:-1])
    return sorted({float(q) for q in qs})


def build_model(
    mcfg: ModelConfig, adapters: Mapping[str, Adapter], cohort: Cohort, train_ids: Sequence[str], *, task: str,
) -> MultimodalModel:
    """A fresh model sized from the fitted adapters and the training outcomes."""
    time, event = cohort.survival_arrays(train_ids)
    streams = []
    for a in adapters.values():
        s = a.stream_spec()
        streams.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in to_dict(s).items() if k != "slot_names"})
    survival = mcfg.survival if task in ("survival", "both") else "none"
    response_classes = cohort.response_classes if task in ("response", "both") else 0
    config = MultimodalConfig(
        streams=streams, d_model=mcfg.d_model, depth=mcfg.depth, num_heads=mcfg.num_heads,
        num_latents=mcfg.num_latents, cross_layers=mcfg.cross_layers, cross_queries=mcfg.cross_queries,
        slot_hidden=mcfg.slot_hidden, ffn_mult=mcfg.ffn_mult, dropout=mcfg.dropout,
        modality_dropout=mcfg.modality_dropout, fusion=mcfg.fusion, pooled_readout=mcfg.pooled_readout, survival=survival,
        bin_edges=quantile_bin_edges(time, event, mcfg.num_bins) if survival == "discrete" else [],
        proportional=mcfg.proportional, alpha=mcfg.alpha, response_classes=response_classes, num_arms=len(cohort.treatment_arms),
        survival_weight=mcfg.survival_weight, response_weight=mcfg.response_weight,
        response_trunk_grad=mcfg.response_trunk_grad, time_unit=cohort.time_unit, wide=mcfg.wide,
        wide_l2=mcfg.wide_l2, wide_lr_mult=mcfg.wide_lr_mult,
    )
    return MultimodalModel(config)


def load_model_config(data: Mapping[str, Any]) -> ModelConfig:
    return from_dict(ModelConfig, data)
