"""An attention-MIL late-fusion baseline (DESIGN §7), built the way the field's papers build one.

Per modality one encoder, then late fusion:

* **slides** (every :class:`~multimodal.cohorts.sources.SlideSource` modality): the raw patch embeddings go through
  a linear layer + ReLU, then gated attention pooling (Ilse et al. 2018, "Attention-based Deep Multiple Instance
  Learning", eq. 9): ``a = softmax(w^T (tanh(V h) ⊙ sigm(U h)))``, ``z = Σ a_i h_i``. Patches are read once per
  patient (a seeded sample of at most ``patch_pool``, kept as float16) and standardized with the training patches'
  mean / std; each training epoch samples at most ``max_patches`` of them per patient, prediction uses them all.
* **every other modality** (genomics incl. gene-set scores, EHR summaries, clinical): its pooled vector from
  :class:`~multimodal.pooled.PooledFeatures`, preprocessed by a :class:`~multimodal.baselines.TabularPreprocessor`
  fitted on the training patients who have the modality, through a two-layer MLP.
* A patient lacking a modality gets a zero embedding and a 0 presence indicator; the embeddings and the indicators
  are concatenated into a linear head (after dropout): one log-hazard trained with the Cox partial likelihood
  (:func:`multimodal.model.losses.neg_partial_log_likelihood`), or one logit trained with binary cross-entropy.

Training: Adam with weight decay, mini-batches, a fixed number of epochs with early stopping on an inner validation
split of the training patients (stratified, ``val_fraction``; the lowest validation loss wins, ``patience`` epochs);
never on test patients. Seeded and deterministic (the global torch RNG is left as it was). Survival curves use the
Breslow baseline hazard of the training patients' risks.

Protocol (as the tabular baselines, with :class:`MILInputs` in place of a DataFrame)::

    model = create_baseline("attention_mil")
    model.fit_cohort(cohort, train_ids, task="survival", pooled=pooled)   # or fit(MILInputs, time, event)
    X = model.inputs(cohort, test_ids)
    model.predict_risk(X); model.predict_survival(X, grid)              # response: predict_proba(X)
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from multimodal.cohorts.cohort import RESPONSE, Cohort
from multimodal.cohorts.sources import SlideSource
from multimodal.errors import ConfigError, InputError
from multimodal.pooled import SEP, PooledFeatures, PooledFeaturesConfig

Task = Literal["survival", "response"]

__all__ = ["AttentionMILBaseline", "AttentionMILConfig", "GatedAttentionPool", "MILInputs", "MILReader"]


@dataclass(frozen=True)
class AttentionMILConfig:
    """Configuration of :class:`AttentionMILBaseline` (small: sized for cohorts of a few hundred patients on CPU).

    Attributes:
        hidden: width of every modality embedding (the attention branch ``V``, ``U`` has half of it).
        dropout: dropout in the encoders and before the head.
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2).
        epochs: maximum training epochs.
        patience: epochs without a better inner-validation loss before stopping.
        batch_size: patients per step.
        max_patches: patches sampled per patient per training epoch.
        patch_pool: patches read per patient (a seeded sample); prediction uses all of them.
        val_fraction: share of the training patients held out for early stopping (0 = all epochs, last kept).
        clip: the pooled vectors' standardized values are clipped to ``±clip`` (None = no clipping).
        seed: initialization, batch order, patch samples and the inner split.
        modalities: modalities used (None = all that the inputs hold).
    """

    hidden: int = 64
    dropout: float = 0.25
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 40
    patience: int = 8
    batch_size: int = 32
    max_patches: int = 512
    patch_pool: int = 1024
    val_fraction: float = 0.2
    clip: float | None = 5.0
    seed: int = 0
    modalities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "patience", "batch_size", "max_patches", "patch_pool"):
            if getattr(self, name) < 1:
                raise ConfigError(f"expected an integer >= 1, got {getattr(self, name)!r}", field=name)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"expected a fraction in [0, 1), got {self.dropout!r}", field="dropout")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"expected a fraction in [0, 1), got {self.val_fraction!r}", field="val_fraction")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"expected lr > 0 and weight_decay >= 0, got {self.lr!r}, {self.weight_decay!r}",
                              field="lr")


# ---- inputs ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MILInputs:
    """What the MIL baseline sees of some patients.

    Attributes:
        patient_ids: the patients, in order.
        bags: slide modality -> one (n_i, D) float16 patch array per patient (n_i = 0: no slides).
        table: pooled ``"<modality>:<feature>"`` vectors of the other modalities, one row per patient (in order).
    """

    patient_ids: tuple[str, ...]
    bags: Mapping[str, tuple[np.ndarray, ...]]
    table: pd.DataFrame

    def __post_init__(self) -> None:
        n = len(self.patient_ids)
        for m, bag in self.bags.items():
            if len(bag) != n:
                raise InputError(f"bags[{m!r}] has {len(bag)} entries for {n} patients", field=f"bags.{m}")
        if list(map(str, self.table.index)) != list(self.patient_ids):
            raise InputError(f"table rows ({len(self.table)}) are not the {n} patients in order", field="table")

    def __len__(self) -> int:
        return len(self.patient_ids)


class MILReader:
    """Reads :class:`MILInputs` for any patients: patch pools through the pathology adapter, vectors from fitted
    :class:`PooledFeatures` (both fitted on the training patients)."""

    def __init__(self, *, patch_pool: int = 1024, seed: int = 0) -> None:
        self.patch_pool = patch_pool
        self.seed = seed

    def fit(self, cohort: Cohort, train_ids: Sequence[str], pooled: PooledFeatures) -> MILReader:
        from multimodal.adapters.pathology import PathologyAdapter, PathologyAdapterConfig

        if not hasattr(pooled, "parts_"):
            raise InputError("the pooled features are not fitted; call fit(cohort, train_ids) first", field="pooled")
        self.pooled = pooled
        self.slide_modalities = [m for m in pooled.parts_ if isinstance(cohort.modalities.get(m), SlideSource)]
        self.adapters_ = {}
        for m in self.slide_modalities:
            cfg = PathologyAdapterConfig(modality=m, max_patches=self.patch_pool, seed=self.seed)
            self.adapters_[m] = PathologyAdapter(cfg).fit(cohort, list(train_ids))
        return self

    def read(self, cohort: Cohort, patient_ids: Sequence[str], *, table: pd.DataFrame | None = None) -> MILInputs:
        """Inputs of ``patient_ids``; ``table`` = their pooled features when already computed (else computed)."""
        ids = [str(p) for p in patient_ids]
        table = self.pooled.transform(cohort, ids) if table is None else table.loc[ids]
        slide_prefixes = tuple(f"{m}{SEP}" for m in self.slide_modalities)
        table = table[[c for c in table.columns if not str(c).startswith(slide_prefixes)]]
        bags = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty bags warn once per patient; they simply give no patches
            for m, adapter in self.adapters_.items():
                adapter.bind(cohort)
                bags[m] = tuple(adapter.transform(p, train=True, seed=0).features[0].numpy().astype(np.float16)
                                for p in ids)
        return MILInputs(tuple(ids), bags, table)


# ---- the network -----------------------------------------------------------------------------------------------------
class GatedAttentionPool(nn.Module):
    """Gated attention pooling of a bag (Ilse et al. 2018): ``a = softmax(w^T (tanh(V h) ⊙ sigm(U h)))``.

    ``h = ReLU(W x)`` per instance (width ``hidden``); ``V``, ``U`` map to ``attention_dim``. Dropout acts on the
    pooled embedding (dropping single patch features of a 512-patch bag would cost much and regularize little).
    """

    def __init__(self, d_in: int, hidden: int, dropout: float, attention_dim: int | None = None) -> None:
        super().__init__()
        k = attention_dim or hidden
        self.embed = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU())
        self.attention_v = nn.Linear(hidden, k)
        self.attention_u = nn.Linear(hidden, k)
        self.attention_w = nn.Linear(k, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, D) patches and (B, N) mask -> (B, H) pooled embedding and (B, N) attention (0 on padding)."""
        h = self.embed(x)  # (B, N, H)
        logits = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))).squeeze(-1)
        a = torch.softmax(logits.masked_fill(~mask, -1e9), dim=1) * mask  # (B, N); an empty bag: all zeros
        return self.dropout(torch.bmm(a.unsqueeze(1), h).squeeze(1)), a


def _mlp(d_in: int, hidden: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU())


class _LateFusionMIL(nn.Module):
    """Per-modality encoders -> masked concatenation + presence indicators -> linear head (one output)."""

    def __init__(self, bag_dims: Sequence[int], vector_dims: Sequence[int], hidden: int, dropout: float) -> None:
        super().__init__()
        self.bags = nn.ModuleList(GatedAttentionPool(d, hidden, dropout, hidden // 2) for d in bag_dims)
        self.vectors = nn.ModuleList(_mlp(d, hidden, dropout) for d in vector_dims)
        n = len(bag_dims) + len(vector_dims)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(n * hidden + n, 1))

    def forward(self, bags: Sequence[tuple[torch.Tensor, torch.Tensor]], vectors: Sequence[torch.Tensor],
                present: torch.Tensor) -> torch.Tensor:
        """``present`` (B, M) float, bag modalities first; returns (B,) log-hazards or logits."""
        parts = [enc(x, mask)[0] for enc, (x, mask) in zip(self.bags, bags, strict=True)]
        parts += [enc(v) for enc, v in zip(self.vectors, vectors, strict=True)]
        z = torch.stack(parts, dim=1) * present.unsqueeze(-1)  # (B, M, H): a missing modality is zeros
        return self.head(torch.cat([z.flatten(1), present], dim=1)).squeeze(-1)


# ---- prepared arrays -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Prepared:
    bags: list[list[torch.Tensor]]  # per bag modality, per patient (n_i, D) float16 (shares the inputs' memory)
    vectors: list[np.ndarray]  # per vector modality (n, d) float32, zero rows where absent
    present: np.ndarray  # (n, M) float32, bag modalities first


def _bag_tensor(pool: Sequence[torch.Tensor], idx: np.ndarray, mean: torch.Tensor, std: torch.Tensor, cap: int,
                rng: np.random.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad the patients' standardized patches (a random ``cap`` of them when ``rng``) into (B, N, D) + (B, N) mask."""
    rows = []
    for i in idx:
        x = pool[i]
        if rng is not None and len(x) > cap:
            x = x[torch.from_numpy(np.sort(rng.choice(len(x), size=cap, replace=False)))]
        rows.append(x)
    n = max(1, max(len(x) for x in rows))
    out = torch.zeros(len(rows), n, len(mean))
    mask = torch.zeros(len(rows), n, dtype=torch.bool)
    for b, x in enumerate(rows):
        out[b, : len(x)] = (x.float() - mean) / std
        mask[b, : len(x)] = True
    return out, mask


# ---- the baseline ----------------------------------------------------------------------------------------------------
class AttentionMILBaseline:
    """Attention-MIL late fusion for survival (``fit(X, time, event)``) or binary response (``fit(X, y)``)."""

    def __init__(self, config: AttentionMILConfig | None = None) -> None:
        self.config = config or AttentionMILConfig()

    # -- cohort-level entry points
    def fit_cohort(self, cohort: Cohort, train_ids: Sequence[str], *, task: Task = "survival",
                   pooled: PooledFeatures | None = None, table: pd.DataFrame | None = None) -> AttentionMILBaseline:
        """Fit on ``train_ids`` of ``cohort``: pooled features (fitted here on them unless given), patch pools, targets.

        ``table`` = the training patients' pooled features when already computed (e.g. cached by the study).
        """
        ids = [str(p) for p in train_ids]
        if pooled is None:
            pooled = PooledFeatures(PooledFeaturesConfig(seed=self.config.seed)).fit(cohort, ids)
        reader = MILReader(patch_pool=self.config.patch_pool, seed=self.config.seed).fit(cohort, ids, pooled)
        X = reader.read(cohort, ids, table=table)
        self.reader_ = reader
        if task == "survival":
            t, e = cohort.survival_arrays(ids)
            return self.fit(X, t, e)
        if RESPONSE not in cohort.patients.columns:
            raise InputError(f"cohort {cohort.name!r} has no response column", field=RESPONSE)
        y = cohort.patients.loc[ids, RESPONSE]
        if y.isna().any():
            p = str(y.index[y.isna().to_numpy()][0])
            raise InputError("training patient without a response", patient=p, field=RESPONSE)
        return self.fit(X, y.astype(int).to_numpy())

    def inputs(self, cohort: Cohort, patient_ids: Sequence[str], *, table: pd.DataFrame | None = None) -> MILInputs:
        """:class:`MILInputs` of any patients, read as the training patients' were (after :meth:`fit_cohort`)."""
        if not hasattr(self, "reader_"):
            raise RuntimeError("AttentionMILBaseline.inputs needs fit_cohort() first")
        return self.reader_.read(cohort, patient_ids, table=table)

    # -- the baseline protocol
    def fit(self, X: MILInputs, time_or_y: Any, event: Any = None) -> AttentionMILBaseline:
        """Survival when ``event`` is given (``time_or_y`` = times), else binary response (``time_or_y`` = labels)."""
        X = _check_inputs(X)
        self.task_ = "survival" if event is not None else "response"
        if self.task_ == "survival":
            from multimodal.baselines import _check_survival

            t, e = _check_survival(time_or_y, event, len(X))
            target = (torch.from_numpy(t.astype(np.float32)), torch.from_numpy(e))
            strata = e.astype(int)
        else:
            y = self._labels(time_or_y, len(X))
            target = (torch.from_numpy(y.astype(np.float32)),)
            strata = y
        prep = self._fit_prepare(X)
        self._train(prep, target, strata, X.patient_ids)
        if self.task_ == "survival":
            self.train_risk_ = self._predict(prep)
            self.train_time_, self.train_event_ = t, e
        return self

    def _labels(self, y: Any, n: int) -> np.ndarray:
        yy = np.asarray(y)
        if yy.shape != (n,):
            raise InputError(f"y must have shape ({n},) like X, got {yy.shape}", field="y")
        classes = np.unique(yy)
        if classes.size != 2:
            raise InputError(f"attention_mil needs a binary response with both classes in training, got "
                             f"{classes.tolist()}", field="y")
        self.classes_ = classes
        return (yy == classes[1]).astype(np.int64)

    def predict_risk(self, X: MILInputs) -> np.ndarray:
        """(n,) log-hazard (survival) or logit (response); higher = worse / more likely class 1."""
        return self._predict(self._prepare(_check_inputs(X)))

    def predict_survival(self, X: MILInputs, grid: Sequence[float]) -> np.ndarray:
        """(n, len(grid)) S(t | x) with the Breslow baseline of the training patients."""
        from multimodal.survival_grid import breslow_survival_on_grid

        if getattr(self, "task_", None) != "survival":
            raise RuntimeError("predict_survival needs a survival fit: fit(X, time, event)")
        risk = self.predict_risk(X)
        return breslow_survival_on_grid(self.train_risk_, self.train_time_, self.train_event_, risk,
                                        np.asarray(grid, dtype=np.float64))

    def predict_proba(self, X: MILInputs) -> np.ndarray:
        """(n, 2) class probabilities (scikit-learn order, ``classes_``)."""
        if getattr(self, "task_", None) != "response":
            raise RuntimeError("predict_proba needs a response fit: fit(X, y)")
        p = 1.0 / (1.0 + np.exp(-self.predict_risk(X)))
        return np.column_stack([1.0 - p, p])

    # -- preparation
    def _wanted(self, modality: str) -> bool:
        return self.config.modalities is None or modality in self.config.modalities

    def _fit_prepare(self, X: MILInputs) -> _Prepared:
        from multimodal.baselines import TabularPreprocessor

        self.bag_modalities_: list[str] = []
        self.patch_stats_: list[tuple[torch.Tensor, torch.Tensor]] = []
        for m, pool in X.bags.items():
            nonempty = [torch.from_numpy(x) for x in pool if len(x)]
            if not self._wanted(m) or not nonempty:
                continue
            allx = torch.cat(nonempty).double()  # the training patients' patches
            std = allx.std(dim=0, correction=0)
            self.bag_modalities_.append(m)
            self.patch_stats_.append((allx.mean(dim=0).float(), torch.where(std > 1e-8, std, 1.0).float()))
        self.vector_modalities_: list[str] = []
        self.preprocessors_: list[TabularPreprocessor] = []
        for m in dict.fromkeys(str(c).split(SEP, 1)[0] for c in X.table.columns):
            block = _block(X.table, m)
            present = block.notna().any(axis=1).to_numpy()
            if not self._wanted(m) or not present.any():
                continue
            try:
                pre = TabularPreprocessor(clip=self.config.clip).fit(block[present])
            except InputError:  # every column constant in training: the modality carries nothing
                continue
            self.vector_modalities_.append(m)
            self.preprocessors_.append(pre)
        if not self.bag_modalities_ and not self.vector_modalities_:
            raise InputError("no modality with data in the training patients", field="X")
        return self._prepare(X)

    def _prepare(self, X: MILInputs) -> _Prepared:
        if not hasattr(self, "preprocessors_"):
            raise RuntimeError("AttentionMILBaseline is not fitted; call fit() or fit_cohort() first")
        bags, present = [], []
        for m, (mean, _) in zip(self.bag_modalities_, self.patch_stats_, strict=True):
            pool = X.bags.get(m)
            if pool is None:
                raise InputError(f"the inputs lack the slide modality {m!r} the model was fitted on", field=f"bags.{m}")
            bad = [p for p, x in zip(X.patient_ids, pool, strict=True) if len(x) and x.shape[1] != len(mean)]
            if bad:
                raise InputError(f"patch embedding dim differs from the training dim {len(mean)}", patient=bad[0],
                                 field=f"bags.{m}")
            bags.append([torch.from_numpy(np.asarray(x, dtype=np.float16)) for x in pool])
            present.append([len(x) > 0 for x in pool])
        vectors = []
        for m, pre in zip(self.vector_modalities_, self.preprocessors_, strict=True):
            block = _block(X.table, m)
            has = block.notna().any(axis=1).to_numpy()
            z = pre.transform(block).to_numpy(np.float32)
            vectors.append(np.where(has[:, None], z, 0.0).astype(np.float32))
            present.append(has.tolist())
        return _Prepared(bags, vectors, np.asarray(present, dtype=np.float32).T.reshape(len(X), -1))

    def _tensors(self, prep: _Prepared, idx: np.ndarray, rng: np.random.Generator | None) -> tuple[Any, ...]:
        bags = [_bag_tensor(pool, idx, mean, std, self.config.max_patches, rng)
                for pool, (mean, std) in zip(prep.bags, self.patch_stats_, strict=True)]
        vectors = [torch.from_numpy(v[idx]) for v in prep.vectors]
        return bags, vectors, torch.from_numpy(prep.present[idx])

    # -- training
    def _loss(self, out: torch.Tensor, target: tuple[torch.Tensor, ...], idx: np.ndarray) -> torch.Tensor | None:
        from multimodal.model.losses import neg_partial_log_likelihood

        if self.task_ == "survival":
            time, event = target[0][idx], target[1][idx]
            return neg_partial_log_likelihood(out, event, time) if bool(event.any()) and len(idx) > 1 else None
        return nn.functional.binary_cross_entropy_with_logits(out, target[0][idx])

    def _split(self, ids: Sequence[str], strata: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from multimodal.cohorts.splits import inner_split

        n = len(ids)
        none = np.arange(n), np.zeros(0, dtype=np.int64)
        if self.config.val_fraction == 0 or n < 10:
            return none
        tr, va = inner_split(list(ids), dict(zip(ids, strata.tolist(), strict=True)), self.config.val_fraction,
                             self.config.seed)
        pos = {p: i for i, p in enumerate(ids)}
        tr_idx, va_idx = np.array([pos[p] for p in tr]), np.array([pos[p] for p in va])
        if self.task_ == "survival" and not strata[va_idx].any():  # no event to score the Cox loss on
            return none
        return tr_idx, va_idx

    def _train(self, prep: _Prepared, target: tuple[torch.Tensor, ...], strata: np.ndarray,
               ids: Sequence[str]) -> None:
        cfg = self.config
        tr, va = self._split(ids, strata)
        with torch.random.fork_rng(devices=[]):  # seeded and deterministic; the caller's RNG state is untouched
            torch.manual_seed(cfg.seed)
            net = _LateFusionMIL([s[0].numel() for s in self.patch_stats_], [v.shape[1] for v in prep.vectors],
                                 cfg.hidden, cfg.dropout)
            self.net_ = net
            opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            best, best_state, best_epoch, stale = np.inf, copy.deepcopy(net.state_dict()), 0, 0
            for epoch in range(cfg.epochs):
                self._epoch(net, opt, prep, target, tr, np.random.default_rng([cfg.seed, epoch]))
                if len(va) == 0:
                    best_state, best_epoch = copy.deepcopy(net.state_dict()), epoch
                    continue
                val = self._val_loss(net, prep, target, va)
                if val < best - 1e-6:
                    best, best_state, best_epoch, stale = val, copy.deepcopy(net.state_dict()), epoch, 0
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        break
            net.load_state_dict(best_state)
        net.eval()
        self.best_epoch_, self.val_loss_ = best_epoch, (None if len(va) == 0 else float(best))

    def _epoch(self, net: nn.Module, opt: torch.optim.Optimizer, prep: _Prepared, target: tuple[torch.Tensor, ...],
               tr: np.ndarray, rng: np.random.Generator) -> None:
        net.train()
        order = tr[rng.permutation(len(tr))]
        for s in range(0, len(order), self.config.batch_size):
            idx = order[s : s + self.config.batch_size]
            loss = self._loss(net(*self._tensors(prep, idx, rng)), target, idx)
            if loss is None:  # a Cox batch without events carries no information
                continue
            opt.zero_grad()
            loss.backward()
            opt.step()

    @torch.no_grad()
    def _val_loss(self, net: nn.Module, prep: _Prepared, target: tuple[torch.Tensor, ...], va: np.ndarray) -> float:
        net.eval()
        out = self._forward(net, prep, va)
        loss = self._loss(out, target, va)
        return float("inf") if loss is None else float(loss)

    @torch.no_grad()
    def _forward(self, net: nn.Module, prep: _Prepared, idx: np.ndarray) -> torch.Tensor:
        net.eval()
        step = max(self.config.batch_size, 64)
        outs = [net(*self._tensors(prep, idx[s : s + step], None)) for s in range(0, len(idx), step)]
        return torch.cat(outs) if outs else torch.zeros(0)

    def _predict(self, prep: _Prepared) -> np.ndarray:
        if not hasattr(self, "net_"):
            raise RuntimeError("AttentionMILBaseline is not fitted; call fit() or fit_cohort() first")
        return self._forward(self.net_, prep, np.arange(len(prep.present))).numpy().astype(np.float64)


def _block(table: pd.DataFrame, modality: str) -> pd.DataFrame:
    return table[[c for c in table.columns if str(c).startswith(f"{modality}{SEP}")]]


def _check_inputs(X: Any) -> MILInputs:
    if not isinstance(X, MILInputs):
        raise InputError(f"attention_mil expects MILInputs (from model.inputs(cohort, ids) or MILReader.read), got "
                         f"{type(X).__name__}", field="X")
    return X
