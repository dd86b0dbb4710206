"""The training loop on HuggingFace Accelerate (DESIGN §7).

Accelerate owns device, precision, gradient accumulation and processes. Checkpoints (``save_state``) are written
every ``checkpoint_every`` optimizer steps and at each epoch end, together with ``progress.json``; a killed run
resumed with the same config continues from the last checkpoint (skipping the batches already seen in that epoch)
and ends with the same result as an uninterrupted run. Model selection uses only the inner validation split, with a
declared rule: the epoch with the best inner-validation c-index (ties → earlier), patience ``patience``. When the
model starts as a fitted model (``model.wide_init: cox``: the closed-form elastic-net Cox start of
:mod:`multimodal.wide_init`), that start is scored on the inner validation patients before the first epoch and is a
candidate of the same rule (recorded as epoch ``-1``): training must beat the linear model it starts from on patients
it never saw, or the start is kept.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from multimodal.data import BucketBatchSampler, Collator, PatientDataset, cuda_loader_kwargs
from multimodal.errors import ConfigError
from multimodal.io import verify_checksums, write_checksums, write_json_atomic
from multimodal.model import MultimodalModel
from multimodal.tracking import epoch_metrics, start_tracker

log = logging.getLogger(__name__)
AVERAGE_FILE = "weight_average.safetensors"  # in the checkpoint folder: the running weight sum


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation and selection settings (YAML section ``training``).

    Attributes:
        epochs: maximum epochs (early stopping may end sooner).
        batch_size: patients per optimizer step (per process).
        lr: AdamW learning rate (linear warm-up, then cosine decay).
        weight_decay: AdamW weight decay (not applied to biases, norms, embeddings, latents).
        grad_accum: gradient accumulation steps (effective batch = batch_size × grad_accum × processes).
        mixed_precision: `no` or `bf16` autocast; set it here, not with `accelerate launch --mixed_precision`.
        max_grad_norm: gradient clipping norm (0 = off).
        warmup_frac: fraction of the optimizer steps used for linear warm-up.
        val_fraction: share of each training fold held out (stratified) as inner validation for early stopping;
            the reporting fold is never used. 0 = no inner validation: all `epochs` run and the last is kept
            (`patience` and `select_metric` unused; the pipeline then has no reference cohort for percentiles).
        patience: epochs without improvement of `select_metric` before stopping.
        select_metric: epoch-selection rule on the inner validation: `auto` (`auroc` for a model without a survival
            head, i.e. `task: response`; `c_index` otherwise), `c_index` (Harrell), `loss` (the training loss on the
            inner validation patients; smoother on small cohorts), `auroc`, `loss_1se` (epochs as `loss`; the pooled
            stack's trunk scale by the one-standard-error rule on the per-patient losses: the smallest scale whose
            mean loss is within one paired standard error of the best, since the same patients already chose the
            epoch; multimodal/wide_init.py).
        average_epochs: the model kept is the average of the weights of the selected epoch and of the next
            `average_epochs` − 1 epochs (fewer if training ends sooner), as in stochastic weight averaging (Izmailov
            et al. 2018): training goes on for `patience` epochs after the selected one anyway, and the average is
            steadier than one epoch's weights. 1 = the selected epoch's weights. Needs an inner validation.
        recalibrate: after training, fit recalibration maps on the inner validation patients, recorded in
            pipeline.json and applied to every prediction: response probabilities `expit(a + b logit p)` (Platt 1999),
            survival `S' = exp(-exp(a_k) H^b)` at each bin end k with `H = -log S` (van Houwelingen 2000: `b` by Cox
            regression on log H, `a_k` from the Breslow baseline); `b > 0` (rankings kept), all pulled toward
            identity. Skipped, with the reason recorded, without an inner validation, with fewer than 20 validation
            patients or 5 events (minority responses), for a Cox head (no curves) or a multiclass response.
        checkpoint_every: also checkpoint every N optimizer steps (0 = at epoch ends only) when training is given a
            checkpoint folder (`multimodal.training.fit_model(out_dir=...)`); `multimodal cv` resumes fold by fold.
        eval_batch_size: patients per forward pass at prediction time.
        num_workers: DataLoader worker processes.
        bucket_factor: bag-size bucketing: batches are drawn from pools of batch_size × bucket_factor patients
            sorted by token count (less padding).
        progress: per-epoch progress bars, on the main process and only when stderr is a terminal (so on by default
            in a shell, silent in logs, pipes and CI); false = never.
        log_with: experiment tracking through Accelerate's trackers: `none`, `tensorboard` or `mlflow` (per-epoch
            train loss and inner-validation score of every training, runs named by fold, model and ensemble member;
            multimodal/tracking.py). Needs the tracker's package installed.
    """

    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    grad_accum: int = 1
    mixed_precision: Literal["no", "bf16"] = "no"
    max_grad_norm: float = 1.0
    warmup_frac: float = 0.05
    val_fraction: float = 0.15
    patience: int = 5
    select_metric: Literal["auto", "c_index", "loss", "auroc", "loss_1se"] = "auto"
    average_epochs: int = 1
    recalibrate: bool = True
    checkpoint_every: int = 0
    eval_batch_size: int = 8
    num_workers: int = 0
    bucket_factor: int = 8
    progress: bool = True
    log_with: Literal["none", "tensorboard", "mlflow"] = "none"


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: dict[str, Any] | None = None
    num_processes: int = 1
    wrapper: str = ""  # the class that wrapped the model for training (DistributedDataParallel under DDP)
    averaged_epochs: int = 1  # epochs whose weights were averaged into the model (from best_epoch on)
    members: list[FitResult] = field(default_factory=list)  # every ensemble member's result (member 0 first)
    trunk_scale: float | None = None  # the trunk's term scale chosen after training (multimodal.wide_init)
    trunk_scale_scores: dict[str, float] | None = None  # inner-validation score per scale tried


def make_accelerator(cfg: TrainingConfig, project_dir: Path | None = None, *, cpu: bool | None = None) -> Accelerator:
    pc = ProjectConfiguration(project_dir=str(project_dir)) if project_dir is not None else None
    kwargs: dict[str, Any] = {}
    if cpu is not None:
        kwargs["cpu"] = cpu
    from accelerate.state import AcceleratorState, GradientState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", cfg.mixed_precision) != cfg.mixed_precision:
        # Accelerate keeps one precision per process; a library user may train in bf16 then predict in fp32 in the
        # same session. Reset the accelerator-level state only (the process group, if any, is kept).
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    return Accelerator(
        mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum, project_config=pc, **kwargs
    )


def _loader(ds: PatientDataset, batch_size: int, *, shuffle: bool, seed: int, cfg: TrainingConfig,
            num_classes: int, time_unit: str) -> tuple[DataLoader, BucketBatchSampler]:
    sampler = BucketBatchSampler(ds.bag_sizes(), batch_size, shuffle=shuffle, seed=seed, bucket_factor=cfg.bucket_factor)
    # A private generator: creating a DataLoader iterator draws a base seed, which must not consume the global RNG
    # (dropout, modality dropout), or a resumed run would diverge from an uninterrupted one.
    # Pinned batches on a CUDA machine; workers restart each epoch so that they see the dataset's set_epoch.
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=Collator(num_classes, time_unit),
                        generator=torch.Generator().manual_seed(seed),
                        **cuda_loader_kwargs(cfg.num_workers, persistent=False))
    return loader, sampler


@torch.no_grad()
def predict_dataset(
    model: torch.nn.Module, ds: PatientDataset, accelerator: Accelerator, *, batch_size: int = 8,
    num_classes: int = 2, time_unit: str = "days", prepared: bool = False, progress: bool = False,
) -> pd.DataFrame:
    """Predictions for every patient of ``ds`` (gathered over processes, each patient exactly once).

    Columns: patient_id, risk, and where the model has them: surv_<k> (S at the end of bin k), response_prob,
    risk_arm<a>, response_prob_arm<a>.
    """
    loader, _ = _loader(ds, batch_size, shuffle=False, seed=0, cfg=TrainingConfig(), num_classes=num_classes,
                        time_unit=time_unit)
    if not prepared:
        model = accelerator.prepare(model)
    loader = accelerator.prepare_data_loader(loader)
    net = accelerator.unwrap_model(model)
    was_training = net.training
    net.eval()
    cols: dict[str, list[np.ndarray]] = {}
    pos = {p: i for i, p in enumerate(ds.patient_ids)}
    for batch in tqdm(loader, disable=not (progress and accelerator.is_main_process), desc="predict", leave=False):
        idx = torch.tensor([pos[p] for p in batch.patient_ids], device=accelerator.device)
        out = net(batch, per_arm=True)
        fields = {"_index": idx, "risk": out.risk.float()}
        if out.survival is not None:
            fields["surv"] = out.survival.float()
        if out.response_prob is not None:
            fields["response_prob"] = out.response_prob[:, -1].float() if out.response_prob.shape[1] == 2 else out.response_prob.float()
        if out.risk_per_arm is not None:
            fields["risk_arm"] = out.risk_per_arm.float()
        if out.response_prob_per_arm is not None:
            fields["response_prob_arm"] = out.response_prob_per_arm[..., -1].float()
        gathered = accelerator.gather_for_metrics(fields)
        for k, v in gathered.items():
            cols.setdefault(k, []).append(v.cpu().numpy())
    net.train(was_training)
    data = {k: np.concatenate(v) for k, v in cols.items()}
    frame: dict[str, Any] = {"patient_id": [ds.patient_ids[i] for i in data.pop("_index").tolist()]}
    for k, v in data.items():
        if v.ndim == 1:
            frame[k] = v
        else:
            for j in range(v.shape[1]):
                frame[f"{k}_{j}"] = v[:, j]
    df = pd.DataFrame(frame)
    return df.drop_duplicates("patient_id").set_index("patient_id").loc[ds.patient_ids].reset_index()


#: ``training.select_metric`` values that select epochs by the inner-validation loss.
LOSS_METRICS = ("loss", "loss_1se")


@torch.no_grad()
def val_losses(model: torch.nn.Module, ds: PatientDataset, accelerator: Accelerator, cfg: TrainingConfig,
               num_classes: int, time_unit: str) -> np.ndarray:
    """Each validation patient's own loss (eval mode, one patient per forward), in ``ds`` order on every process."""
    loader, sampler = _loader(ds, 1, shuffle=False, seed=0, cfg=cfg, num_classes=num_classes, time_unit=time_unit)
    order = [i for b in sampler for i in b]  # the dataset rows in loader order
    loader = accelerator.prepare_data_loader(loader)
    net = accelerator.unwrap_model(model)
    was = net.training
    net.eval()
    out = []
    for batch in loader:
        res = net(batch)
        loss = res.loss.detach().float().reshape(1) if res.loss is not None else torch.full((1,), float("nan"))
        out.append(accelerator.gather_for_metrics(loss.to(accelerator.device)))
    net.train(was)
    got = torch.cat(out).cpu().numpy().astype(np.float64) if out else np.zeros(0)
    losses = np.full(len(ds), np.nan)
    losses[np.asarray(order[: len(got)], dtype=np.int64)] = got
    return losses


@torch.no_grad()
def _val_loss(model: torch.nn.Module, ds: PatientDataset, accelerator: Accelerator, cfg: TrainingConfig,
              num_classes: int, time_unit: str) -> float:
    """Mean loss over the validation patients (eval mode): a smoother selection signal than a small-set c-index."""
    loader, _ = _loader(ds, cfg.eval_batch_size, shuffle=False, seed=0, cfg=cfg, num_classes=num_classes,
                        time_unit=time_unit)
    loader = accelerator.prepare_data_loader(loader)
    net = accelerator.unwrap_model(model)
    was = net.training
    net.eval()
    tot = torch.zeros(2, device=accelerator.device)
    for batch in loader:
        out = net(batch)
        if out.loss is not None:
            tot += torch.stack([out.loss.detach().float() * batch.batch_size, torch.tensor(float(batch.batch_size))])
    net.train(was)
    tot = accelerator.reduce(tot, reduction="sum")
    return float(tot[0] / tot[1].clamp(min=1))


def _score(pred: pd.DataFrame, ds: PatientDataset, metric: str) -> float:
    from multimodal.metrics import harrell_c

    p = ds.cohort.patients.loc[pred["patient_id"]]
    if metric == "auroc":
        from sklearn.metrics import roc_auc_score

        obs = p["response"].notna().to_numpy()
        y = p["response"].to_numpy()[obs].astype(int)
        if len(np.unique(y)) < 2:
            return float("nan")
        return float(roc_auc_score(y, pred["response_prob"].to_numpy()[obs]))
    time = p["time"].to_numpy(float)
    event = p["event"].to_numpy(bool)
    if event.sum() == 0:
        return float("nan")
    from multimodal.metrics import UndefinedMetricError

    try:
        return float(harrell_c(time, event, pred["risk"].to_numpy(float)))
    except UndefinedMetricError:  # a tiny inner-validation set without comparable pairs: no signal this epoch
        return float("nan")


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


def _param_groups(model: torch.nn.Module, cfg: TrainingConfig) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only (not biases, norms, embeddings, latents); the wide path's linear
    weights (model/wide.py, their own explicit L2) at ``model.config.wide_lr_mult`` × the learning rate, no decay."""
    def plain(n: str, p: torch.nn.Parameter) -> bool:
        return p.ndim < 2 or "emb" in n or "latents" in n or "cls" in n

    named = list(model.named_parameters())
    wide = [p for n, p in named if n.startswith("wide.")]
    rest = [(n, p) for n, p in named if not n.startswith("wide.")]
    groups: list[dict[str, Any]] = [
        {"params": [p for n, p in rest if not plain(n, p)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in rest if plain(n, p)], "weight_decay": 0.0},
    ]
    if wide:
        mult = float(getattr(getattr(model, "config", None), "wide_lr_mult", 1.0))
        groups.append({"params": wide, "weight_decay": 0.0, "lr": cfg.lr * mult})
    return groups


def selection_metric(select_metric: str, task: str) -> str:
    """The rule ``training.select_metric`` names for a model of ``task`` (``auto``: ``auroc`` for ``response``,
    ``c_index`` for ``survival`` / ``both``)."""
    if select_metric != "auto":
        return select_metric
    return "auroc" if task == "response" else "c_index"


def _check_finite(losses: list[float], net: torch.nn.Module, epoch: int, cfg: TrainingConfig) -> None:
    """Training that diverged stops here (exit 2 with a hint), before a model of NaN weights can be selected, saved
    or used to predict: a non-finite training loss in the epoch, or a non-finite weight after it."""
    bad_loss = next((x for x in losses if not math.isfinite(x)), None)
    bad_weight = next((n for n, v in net.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()),
                      None)
    if bad_loss is None and bad_weight is None:
        return
    what = f"the training loss became {bad_loss}" if bad_loss is not None else f"weight {bad_weight!r} became non-finite"
    raise ConfigError(f"training diverged in epoch {epoch}: {what}", field="training.lr",
                      hint=f"lower training.lr (now {cfg.lr:g}) or training.max_grad_norm (now {cfg.max_grad_norm:g}); "
                           "check the inputs for extreme values")


def _val_score(model: Any, val_ds: PatientDataset, accelerator: Accelerator, cfg: TrainingConfig, num_classes: int,
               time_unit: str) -> float:
    """The selection score on the inner validation patients (higher is better; ``loss`` → minus the loss)."""
    if cfg.select_metric in LOSS_METRICS:
        return -_val_loss(model, val_ds, accelerator, cfg, num_classes, time_unit)
    pred = predict_dataset(model, val_ds, accelerator, batch_size=cfg.eval_batch_size, num_classes=num_classes,
                           time_unit=time_unit, prepared=True)
    survival = getattr(getattr(accelerator.unwrap_model(model), "config", None), "survival", "discrete")
    return _score(pred, val_ds, selection_metric(cfg.select_metric, "response" if survival == "none" else "survival"))


def validation_score(model: Any, val_ds: PatientDataset, cfg: TrainingConfig, *, num_classes: int = 2,
                     time_unit: str = "days", accelerator: Accelerator | None = None) -> float:
    """The selection score of ``model`` on ``val_ds`` (higher is better), by ``cfg.select_metric`` as in
    :func:`fit_model`."""
    return _val_score(model, val_ds, accelerator or make_accelerator(cfg), cfg, num_classes, time_unit)


def fit_model(
    model: MultimodalModel,
    train_ds: PatientDataset,
    val_ds: PatientDataset | None,
    cfg: TrainingConfig,
    *,
    seed: int = 0,
    out_dir: str | Path | None = None,
    accelerator: Accelerator | None = None,
    num_classes: int = 2,
    time_unit: str = "days",
    on_step: Callable[[int], None] | None = None,
    select_start: bool = False,
) -> FitResult:
    """Train ``model`` in place; on return it holds the weights of the selected epoch.

    ``select_start``: score the model as handed in (a fitted start) on ``val_ds`` before training; it is then a
    candidate of the selection rule as epoch ``-1`` (ties → the start, the earlier one).

    With ``out_dir`` set, checkpoints go to ``out_dir/checkpoint`` and an existing checkpoint is resumed.
    ``on_step(global_step)`` is called after each optimizer step (used by fault-injection tests).
    """
    out = Path(out_dir) if out_dir is not None else None
    accelerator = accelerator or make_accelerator(cfg, out)
    tracker = start_tracker(cfg.log_with, {"lr": cfg.lr, "batch_size": cfg.batch_size, "seed": seed}) \
        if accelerator.is_main_process else None
    if out is not None and accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    loader, sampler = _loader(train_ds, cfg.batch_size, shuffle=True, seed=seed, cfg=cfg, num_classes=num_classes,
                              time_unit=time_unit)
    opt = torch.optim.AdamW(_param_groups(model, cfg), lr=cfg.lr)
    steps_per_epoch = max(1, math.ceil(len(sampler) / max(1, accelerator.num_processes) / cfg.grad_accum))
    # Accelerate's scheduler wrapper advances the schedule num_processes times per optimizer step (split_batches
    # off), so the schedule is sized in those units: the LR curve is then the same for 1 and N processes.
    total = steps_per_epoch * cfg.epochs * accelerator.num_processes
    warm = max(1, int(cfg.warmup_frac * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total))))
    )
    model, opt, loader, sched = accelerator.prepare(model, opt, loader, sched)

    progress = {"epoch": 0, "batch_in_epoch": 0, "global_step": 0, "best_epoch": -1, "best_score": -math.inf,
                "bad_epochs": 0, "history": [], "done": False, "averaged": 0}
    ckpt = out / "checkpoint" if out is not None else None
    best_path = out / "best_model.safetensors" if out is not None else None
    resumed = None
    if ckpt is not None and (ckpt / "progress.json").is_file():
        verify_checksums(ckpt)  # a truncated or modified checkpoint must not resume silently
        progress = json.loads((ckpt / "progress.json").read_text())
        progress.setdefault("averaged", 0)  # checkpoints written before weight averaging existed
        accelerator.load_state(str(ckpt))
        resumed = {"epoch": progress["epoch"], "batch_in_epoch": progress["batch_in_epoch"]}
        log.info("resuming from %s (epoch %d, batch %d)", ckpt, progress["epoch"], progress["batch_in_epoch"])
    best_state: dict[str, torch.Tensor] | None = None
    if best_path is not None and best_path.is_file():
        best_state = load_file(str(best_path))
    # running sum of the floating-point weights from the selected epoch on (stochastic weight averaging); it lives in
    # the checkpoint folder so that it always matches progress.json
    avg_sum: dict[str, torch.Tensor] | None = None
    if ckpt is not None and progress.get("averaged", 0) and (ckpt / AVERAGE_FILE).is_file():
        avg_sum = load_file(str(ckpt / AVERAGE_FILE))

    def checkpoint() -> None:
        if ckpt is None:
            return
        accelerator.wait_for_everyone()
        tmp = ckpt.with_name("checkpoint.tmp")
        if accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            if avg_sum is not None:
                save_file(avg_sum, str(tmp / AVERAGE_FILE))
            write_json_atomic(tmp / "progress.json", progress)
            write_checksums(tmp)
            old = ckpt.with_name("checkpoint.old")
            if ckpt.exists():
                ckpt.replace(old)
            tmp.replace(ckpt)
            if old.exists():
                shutil.rmtree(old)
        accelerator.wait_for_everyone()

    net = accelerator.unwrap_model(model)

    def select() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """The current weights become the selected ones (saved; the weight average restarts from them)."""
        state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        if best_path is not None and accelerator.is_main_process:
            _save_weights(net, best_path)
        if cfg.average_epochs > 1:
            progress["averaged"] = 1
            return state, {k: v.double() for k, v in state.items() if v.is_floating_point()}
        return state, avg_sum

    fresh = resumed is None and progress["epoch"] == 0 and not progress["history"]
    if select_start and fresh and val_ds is not None and len(val_ds):
        score = _val_score(model, val_ds, accelerator, cfg, num_classes, time_unit)
        progress["history"].append({"epoch": -1, "val_score": score})
        if not math.isnan(score):
            progress["best_score"], progress["best_epoch"] = score, -1
            best_state, avg_sum = select()
    while not progress["done"] and progress["epoch"] < cfg.epochs:
        epoch = progress["epoch"]
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        model.train()
        skip = progress["batch_in_epoch"]
        it = accelerator.skip_first_batches(loader, skip) if skip else loader
        # Accelerate's loaders re-seed their sampler with their own iteration count at each __iter__; pin it to the
        # epoch so a resumed run (whose loader objects are new) shuffles exactly like an uninterrupted one.
        if hasattr(it, "set_epoch"):
            it.set_epoch(epoch)
        losses: list[float] = []
        # progress on: a bar when stderr is a terminal (tqdm's disable=None), nothing in logs and pipes
        bar = tqdm(it, disable=None if (cfg.progress and accelerator.is_main_process) else True, desc=f"epoch {epoch}",
                   leave=False)
        for batch in bar:
            with accelerator.accumulate(model):
                output = model(batch)
                loss = output.loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad()
            losses.append(float(loss.detach()))
            progress["batch_in_epoch"] += 1
            if accelerator.sync_gradients:
                progress["global_step"] += 1
                if on_step is not None:
                    on_step(progress["global_step"])
                if cfg.checkpoint_every and progress["global_step"] % cfg.checkpoint_every == 0:
                    checkpoint()
        # ---- end of epoch: inner validation and the declared selection rule
        rec: dict[str, float] = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan")}
        _check_finite(losses, net, epoch, cfg)
        if val_ds is not None and len(val_ds):
            score = _val_score(model, val_ds, accelerator, cfg, num_classes, time_unit)
            if cfg.select_metric in LOSS_METRICS:
                rec["val_loss"] = -score
            rec["val_score"] = score
        else:
            score = float(epoch)  # no validation: the last epoch is selected
        progress["history"].append(rec)
        if tracker is not None:
            tracker.log(epoch_metrics(rec), step=epoch)
        if not math.isnan(score) and score > progress["best_score"]:
            progress["best_score"], progress["best_epoch"], progress["bad_epochs"] = score, epoch, 0
            best_state, avg_sum = select()
        else:
            if avg_sum is not None and progress["averaged"] < cfg.average_epochs:
                for k, v in net.state_dict().items():
                    if k in avg_sum:
                        avg_sum[k] += v.detach().cpu().double()
                progress["averaged"] += 1
            progress["bad_epochs"] += 1
            if progress["bad_epochs"] >= cfg.patience:
                progress["done"] = True
        progress["epoch"] = epoch + 1
        progress["batch_in_epoch"] = 0
        checkpoint()
    averaged = 1
    if best_state is not None:
        if avg_sum is not None and progress.get("averaged", 0) > 1:
            averaged = int(progress["averaged"])
            best_state = {k: (avg_sum[k] / averaged).to(v.dtype) if k in avg_sum else v for k, v in best_state.items()}
        net.load_state_dict(best_state)
    accelerator.wait_for_everyone()
    if tracker is not None:
        tracker.finish()
    return FitResult(progress["best_epoch"], progress["best_score"], progress["history"], resumed,
                     accelerator.num_processes, type(model).__name__, averaged_epochs=averaged)
