"""A closed-form start for the wide path: fit it as an elastic-net Cox model, then train the fusion trunk on top.

``model.wide_init: cox``. The wide path (:mod:`multimodal.model.wide`) is linear in its weights, so its inputs over the
training patients form a design matrix (:func:`~multimodal.model.wide.wide_design`). An elastic-net Cox model
(:class:`~multimodal.baselines.CoxnetBaseline`, penalty chosen by inner cross-validation on the training patients
only) is fitted on it; its coefficients, mapped back from the standardized scale, become the wide path's weights,
which are then frozen. The survival head's last layer starts at zero, so the model begins exactly as that linear model
and the fusion trunk learns what it leaves (with early stopping on the inner validation patients, as always). This is
stacking inside one model: predictions, checkpoints and explanations are those of the model's own forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from multimodal.adapters.base import Adapter
from multimodal.baselines import create_baseline
from multimodal.cohorts.cohort import Cohort
from multimodal.data import PatientDataset, collate_patients
from multimodal.model.modeling import MultimodalModel
from multimodal.model.wide import load_flat_weights, wide_design

__all__ = ["fit_wide_cox", "start_from_wide"]


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


def fit_wide_cox(model: MultimodalModel, cohort: Cohort, adapters: Mapping[str, Adapter], train_ids: Sequence[str],
                 *, seed: int = 0, batch_size: int = 16) -> torch.Tensor:
    """Flat wide-path weights (the column order of :func:`wide_design`) of an elastic-net Cox model fitted on the
    training patients' wide-path inputs; the penalty is chosen by inner CV on those patients only."""
    if model.wide is None:
        raise ValueError("fit_wide_cox: the model has no wide path (model.wide: true)")
    x = _design(model, cohort, adapters, list(train_ids), batch_size)
    time, event = cohort.survival_arrays(list(train_ids))
    cols = [f"wide:{j}" for j in range(x.shape[1])]
    cox = create_baseline("coxnet", clip=None, seed=seed, modalities=None)
    cox.fit(pd.DataFrame(x, columns=cols), time, event)
    est = cox.estimator_
    j = int(np.argmin(np.abs(np.asarray(est.alphas_) - cox.alpha_)))
    coef = np.asarray(est.coef_[:, j], dtype=np.float64)
    prep = cox.preprocessor_
    kept = prep.kept_indices
    if cox.selected_ is not None:
        kept, std = kept[cox.selected_], np.asarray(prep.std_)[cox.selected_]
    else:
        std = np.asarray(prep.std_)
    theta = np.zeros(x.shape[1])
    theta[kept] = coef / std
    return torch.from_numpy(theta).float()


def start_from_wide(model: MultimodalModel, theta: torch.Tensor) -> None:
    """Load ``theta`` into the wide path and freeze it; zero the survival head's last layer (deep part starts at 0)."""
    if model.wide is None or model.survival_head is None:
        raise ValueError("start_from_wide: the model needs a wide path and a survival head")
    load_flat_weights(model.wide, theta)
    for p in model.wide.parameters():
        p.requires_grad_(False)
    last = [m for m in model.survival_head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
