"""``Pipeline``: fitted adapters + model + study metadata, saved and loaded offline (safetensors + JSON only).

Layout of a saved pipeline directory::

    pipeline.json            format version, experiment config, modalities, metadata, sha256 of every file
    model/config.json        MultimodalConfig (of every member, for an ensemble)
    model/model.safetensors  weights (an ensemble's members under ``members.<k>.``; format 2)
    adapters/<modality>/adapter.json + adapter.safetensors
    stack/stack.json + stack.safetensors   the pooled stack (``model.stack``; multimodal/stack.py)
    MODEL_CARD.md
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal import __version__
from multimodal.adapters.base import Adapter
from multimodal.calibration import (
    apply_recalibration,
    arm_surv_columns,
    check_recalibration,
    fit_recalibration,
    surv_columns,
)
from multimodal.cohorts.cohort import Cohort
from multimodal.config import from_dict, to_dict
from multimodal.data import PatientDataset
from multimodal.errors import ConfigError, InputError, IntegrityError
from multimodal.io import atomic_dir, check_sealed_json, seal_json, sha256_file, verify_file, write_json_atomic
from multimodal.model import MultimodalConfig, MultimodalEnsemble, MultimodalModel
from multimodal.model.ensemble import member_seed
from multimodal.stack import STACKS, PooledStack, fit_pooled_stack, stack_head, stack_structure
from multimodal.training import FitResult, TrainingConfig, fit_model, make_accelerator, predict_dataset
from multimodal.wide_init import (
    WideStart,
    choose_trunk_scale,
    fit_offset_baseline,
    fit_wide_start,
    start_from_wide,
    start_trunk_at_zero,
)

log = logging.getLogger(__name__)
PIPELINE_FORMAT = 1  # written for a single model
ENSEMBLE_PIPELINE_FORMAT = 2  # format 1 + ``ensemble_members``: an ensemble's members in one weights file
READABLE_FORMATS = (PIPELINE_FORMAT, ENSEMBLE_PIPELINE_FORMAT)


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


def read_pipeline_json(directory: Path) -> dict[str, Any]:
    """``directory/pipeline.json`` as a dict: InputError when missing, IntegrityError when unreadable or not an object."""
    meta_path = directory / "pipeline.json"
    if not meta_path.is_file():
        raise InputError("not a pipeline directory (pipeline.json missing)", file=directory,
                         hint="pass the folder written by 'multimodal train'")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"{meta_path}: unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise IntegrityError(f"{meta_path}: not a pipeline description (a JSON object is expected)")
    return meta


#: Key of pipeline.json holding the sha256 of the rest of pipeline.json (:func:`multimodal.io.seal_json`).
PIPELINE_JSON_SHA256 = "pipeline_json_sha256"


def write_pipeline_json(directory: Path, meta: Mapping[str, Any]) -> Path:
    """Write ``directory/pipeline.json`` atomically, sealed: its own sha256 (over every key: format, modalities, the
    file checksum list and the metadata that predictions and reports read) in ``pipeline_json_sha256``."""
    return write_json_atomic(directory / "pipeline.json", seal_json(dict(meta), PIPELINE_JSON_SHA256))


def verify_pipeline_files(d: Path, meta: Mapping[str, Any]) -> None:
    """Every byte a saved pipeline is loaded from is covered: the checksum list names every file the loader reads and
    every file under ``model/`` and ``adapters/`` (a removed entry must not switch verification off), pipeline.json's
    own content matches its seal, and every listed file its sha256. IntegrityError (exit 2) naming the file."""
    meta_path = d / "pipeline.json"
    sums, mods = meta.get("sha256"), meta.get("modalities")
    if not isinstance(sums, dict) or not sums:
        raise IntegrityError(f"{meta_path}: no checksum list ('sha256'); the pipeline cannot be verified")
    if not isinstance(mods, list) or not all(isinstance(x, str) for x in mods):
        raise IntegrityError(f"{meta_path}: 'modalities' is not a list of names")
    for mod in mods:
        if mod in ("", ".", "..") or "/" in mod or "\\" in mod:
            raise IntegrityError(f"{meta_path}: modality name {mod!r} is not a plain name")
    read = ["model/config.json", "model/model.safetensors"]
    read += [f"adapters/{m}/{f}" for m in mods for f in ("adapter.json", "adapter.safetensors")]
    present = [str(p.relative_to(d)) for sub in ("model", "adapters") if (d / sub).is_dir()
               for p in sorted((d / sub).rglob("*")) if p.is_file()]
    unlisted = [r for r in [*read, *present] if r not in sums]
    if unlisted:
        raise IntegrityError(f"{d / unlisted[0]}: not covered by the checksum list of {meta_path} "
                             "(files were added or pipeline.json was edited)")
    check_sealed_json(dict(meta), PIPELINE_JSON_SHA256, meta_path)
    for rel, digest in sums.items():
        rel_path = Path(str(rel))
        if rel_path.is_absolute() or ".." in rel_path.parts:
            raise IntegrityError(f"{meta_path}: checksum entry {str(rel)!r} is not a path inside the pipeline")
        verify_file(d / rel_path, str(digest), what="pipeline")


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


@dataclass
class Pipeline:
    """Everything needed to predict for new patients: fitted adapters, the model and what it was trained on."""

    adapters: dict[str, Adapter]
    model: MultimodalModel | MultimodalEnsemble
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the pooled stack whose calibrated risk is every patient's survival offset (``model.stack``)
    stack: PooledStack | None = None

    # ---- training ------------------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        cohort: Cohort,
        train_ids: Sequence[str],
        *,
        adapters: Mapping[str, Adapter],
        model_config: ModelConfig,
        training: TrainingConfig,
        val_ids: Sequence[str] | None = None,
        task: str = "survival",
        seed: int = 0,
        out_dir: str | Path | None = None,
        accelerator: Any | None = None,
        experiment: Mapping[str, Any] | None = None,
        attribution_reference: bool = True,
    ) -> tuple[Pipeline, FitResult]:
        """Fit adapters on ``train_ids`` only, then train the model (early stopping on ``val_ids``).

        The metadata keep the inner-validation risks and, with ``attribution_reference``, the inner-validation mean
        attribution per pathway / gene (:mod:`multimodal.explain.reference`) that reports read a patient against;
        pipelines that are only scored (cross-validation folds) skip it. With ``training.recalibrate`` the
        recalibration maps fitted on the inner-validation patients (:func:`fit_recalibration`) are kept under
        ``recalibration`` and applied by :meth:`predict`.

        With ``model_config.ensemble`` = K > 1, K members are trained one after the other on the same adapters and
        patients (member k from seed :func:`~multimodal.model.ensemble.member_seed`; its checkpoints under
        ``out_dir/member_<k>`` for k > 0) and the pipeline holds their :class:`MultimodalEnsemble`. The returned
        :class:`FitResult` is member 0's, with every member's in ``members``.
        """
        if accelerator is not None and model_config.ensemble > 1:
            # one Accelerator prepares (and checkpoints) every model handed to it: members need their own
            msg = (f"Pipeline.fit: accelerator= with model.ensemble={model_config.ensemble} is not supported; leave it "
                   "unset (each member then gets its own Accelerator from the training config) or train one member")
            raise ValueError(msg)
        torch.manual_seed(seed)
        fitted = {m: a.fit(cohort, list(train_ids)) for m, a in adapters.items()}
        stacked = _fit_stack(cohort, list(train_ids), fitted, model_config, task, seed)
        val_ds = PatientDataset(cohort, fitted, val_ids, train=False, seed=seed,
                                offsets=None if stacked is None else stacked.stack.offsets(cohort, val_ids)
                                ) if val_ids else None
        members: list[MultimodalModel] = []
        results: list[FitResult] = []
        wide_start: WideStart | None = None  # the closed-form start, fitted once per fold
        for k in range(max(1, int(model_config.ensemble))):
            s = member_seed(seed, k)
            if k:  # member 0 continues the RNG stream seeded above (an ensemble of one = the single model)
                torch.manual_seed(s)
                log.info("training ensemble member %d of %d (seed %d)", k + 1, model_config.ensemble, s)
            model = build_model(model_config, fitted, cohort, train_ids, task=task)
            if model_config.wide_init == "cox" and model.wide is not None and model.survival_head is not None:
                if wide_start is None:  # fitted once, shared by every ensemble member
                    # on the inner-training patients only: the inner-validation patients stay unseen by every part
                    # of the model, so the selection rule compares the start and each epoch on equal terms
                    wide_start = fit_wide_start(model, cohort, fitted, list(train_ids), seed=seed)
                start_from_wide(model, wide_start.theta, wide_start.baseline)
            offsets = wide_start.offsets if wide_start is not None else None
            if stacked is not None:  # the model starts as the pooled stack; the trunk learns what it leaves
                start_trunk_at_zero(model, stacked.baseline, head=stacked.stack.head)
                offsets = stacked.offsets
            train_ds = PatientDataset(cohort, fitted, train_ids, train=True, seed=s, offsets=offsets)
            member_dir = None if out_dir is None else (Path(out_dir) / f"member_{k}" if k else out_dir)
            results.append(fit_model(
                model, train_ds, val_ds, training, seed=s, out_dir=member_dir, accelerator=accelerator,
                num_classes=max(cohort.response_classes, 2), time_unit=cohort.time_unit,
                select_start=wide_start is not None or stacked is not None,
            ))
            if stacked is not None and val_ds is not None and len(val_ds):
                scale, scores = choose_trunk_scale(model, val_ds, training, num_classes=max(cohort.response_classes, 2),
                                                   time_unit=cohort.time_unit, head=stacked.stack.head)
                results[-1].trunk_scale, results[-1].trunk_scale_scores = scale, scores
            members.append(model)
        result = results[0]
        net: MultimodalModel | MultimodalEnsemble = members[0]
        if len(members) > 1:
            net = MultimodalEnsemble(members).eval()
            result.members = results
        meta = {
            "cohort": cohort.name,
            "task": task,
            "time_unit": cohort.time_unit,
            "treatment_arms": list(cohort.treatment_arms),
            "response_classes": cohort.response_classes,
            "n_train": len(train_ids),
            "n_val": len(val_ids or []),
            # where the last (open) survival bin's S is read (multimodal.study.discrete_survival_on_grid)
            "max_train_time": float(np.nanmax(cohort.survival_arrays(list(train_ids))[0], initial=0.0)),
            "best_epoch": result.best_epoch,
            **({"trunk_scale": result.trunk_scale, "trunk_scale_scores": result.trunk_scale_scores}
               if result.trunk_scale is not None else {}),
            "best_val_score": result.best_score,
            "averaged_epochs": result.averaged_epochs,
            "seed": seed,
            "experiment": dict(experiment or {}),
        }
        if len(members) > 1:
            meta["ensemble"] = [{"seed": member_seed(seed, k), "best_epoch": r.best_epoch, "best_val_score": r.best_score,
                                 "averaged_epochs": r.averaged_epochs} for k, r in enumerate(results)]
        if stacked is not None:
            meta["stack"] = stacked.stack.describe()
        # the inner-validation predictions before any recalibration (metadata has no map yet), with the stack fitted
        # on the inner-training patients only: they stay out-of-sample for the recalibration and the references
        pipe = cls(dict(fitted), net, meta, None if stacked is None else stacked.stack)
        ref = pipe.predict(cohort, list(val_ids)) if val_ids else None
        meta["recalibration"] = fit_recalibration(ref, cohort, net.config, enabled=training.recalibrate,
                                                  last_time=float(cohort.survival_arrays(list(train_ids))[0].max()))
        if ref is not None:
            # the inner-validation risk distribution: reports place a new patient's risk against it
            meta["reference_risks"] = sorted(float(r) for r in ref["risk"])
            if attribution_reference:
                from multimodal.explain.reference import attribution_reference as mean_attributions

                meta["attribution_reference"] = mean_attributions(pipe, cohort, list(val_ids))
        if stacked is not None and val_ids:
            # the super learner's last step: the chosen linear candidate refitted on every training patient of the fold
            pipe.stack = fit_pooled_stack(cohort, [*train_ids, *val_ids], stacked.stack.kind,
                                          stacked.stack.pooled.config, head=stacked.stack.head, seed=seed,
                                          calibrate_from=stacked.stack).stack
            meta["stack"]["n_train_final"] = pipe.stack.n_train
            meta["stack"]["n_nonzero_final"] = pipe.stack.n_nonzero
        return pipe, result

    def dataset(self, cohort: Cohort, patient_ids: Sequence[str], *, train: bool = False, seed: int = 0) -> PatientDataset:
        """The patients' inputs as this pipeline's model reads them (with the stack's offsets when it has one)."""
        ids = list(patient_ids)
        offsets = None if self.stack is None else self.stack.offsets(cohort, ids)
        return PatientDataset(cohort, self.adapters, ids, train=train, seed=seed, offsets=offsets)

    # ---- prediction ----------------------------------------------------------------------------------------------
    def bind(self, cohort: Cohort) -> Pipeline:
        for a in self.adapters.values():
            if a.cohort is not cohort:  # binding may index the whole cohort (EHR): do it once
                a.bind(cohort)
        return self

    def predict(self, cohort: Cohort, patient_ids: Sequence[str] | None = None, *, batch_size: int = 8,
                accelerator: Any | None = None, survival_per_arm: bool = False) -> pd.DataFrame:
        """Risk (higher = worse), survival per bin, response probabilities (per arm) for each patient.

        Columns: ``patient_id``, ``risk``, and where the model has them ``surv_<k>`` (S at the end of bin k, under the
        patient's own arm: the cohort's treatment column, arm 0 without one), ``response_prob``, ``risk_arm_<a>``,
        ``response_prob_arm_<a>`` (arm a = position in ``metadata["treatment_arms"]``); with ``survival_per_arm``
        also ``surv_arm_<a>_<k>`` (S at the end of bin k under arm a). Patients need no outcome.

        Survival and response probabilities are recalibrated with the pipeline's recalibration maps when it has them
        (:func:`apply_recalibration`); ``risk`` / ``risk_arm_<a>`` are the model's scores as they are.
        """
        self.bind(cohort)
        ids = list(patient_ids) if patient_ids is not None else cohort.patient_ids
        unknown = [p for p in ids if p not in cohort.patients.index]
        if unknown:
            raise InputError(f"unknown patient id(s) {unknown[:5]}", field="patient_id")
        ds = self.dataset(cohort, ids)
        acc = accelerator or make_accelerator(TrainingConfig())
        cfg = self.model.config
        per_arm = survival_per_arm and cfg.survival == "discrete" and int(cfg.num_arms or 0) > 0
        net = _WithArmSurvival(self.model) if per_arm else self.model
        raw = predict_dataset(net, ds, acc, batch_size=batch_size,
                              num_classes=max(int(self.metadata.get("response_classes", 2)), 2),
                              time_unit=str(self.metadata.get("time_unit", "days")))
        if per_arm:
            raw = _split_arm_survival(raw, len(cfg.bin_edges or []) + 1, int(cfg.num_arms))
        return apply_recalibration(raw, self.metadata.get("recalibration"))

    def predict_table(self, cohort: Cohort, patient_ids: Sequence[str] | None = None, *,
                      times: Sequence[float] = (), batch_size: int = 8, accelerator: Any | None = None) -> pd.DataFrame:
        """:meth:`predict` as an answer table: its columns, plus per-arm columns named by arm, arm differences and
        survival / cumulative hazard at ``times`` (:func:`answer_columns`; docs/data-formats.md, "Predictions file")."""
        times = check_times(times, self)
        pred = self.predict(cohort, patient_ids, batch_size=batch_size, accelerator=accelerator,
                            survival_per_arm=bool(times))
        return answer_columns(pred, self, times)

    def survival_at(self, surv_bins: np.ndarray, times: Sequence[float]) -> np.ndarray:
        """S(t) at ``times`` from per-bin survival ``surv_bins`` (n, K), by the model's own rule: piecewise linear
        through (0, 1), (edge_k, S_k) and, for the last (open) bin, (largest training time, S_{K-1}); flat after it
        (:func:`multimodal.study.discrete_survival_on_grid`, as the study's and the estimator's curves). Pipelines
        saved without their largest training time (older ones, unless recalibrated) give NaN past the last edge."""
        from multimodal.study import discrete_survival_on_grid

        edges = [float(e) for e in (self.model.config.bin_edges or [])]
        grid = np.asarray(list(times), dtype=float)
        s = np.asarray(surv_bins, dtype=float)
        last = last_bin_time(self.metadata)
        out = discrete_survival_on_grid(s, edges, last if last is not None else math.inf, grid)
        if last is None:
            out[:, grid > (edges[-1] if edges else 0.0)] = np.nan
        return out

    # ---- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Write the pipeline atomically (a temp dir renamed at the end) with a checksum of every file."""
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Writing model shards" bar in CLI output
        ensemble = isinstance(self.model, MultimodalEnsemble)
        with atomic_dir(directory, overwrite=overwrite) as tmp:
            self.model.save_pretrained(tmp / "model")
            for m, a in self.adapters.items():
                a.save(tmp / "adapters" / m)
            if self.stack is not None:
                self.stack.save(tmp / "stack")
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            sums = {str(p.relative_to(tmp)): sha256_file(p) for p in files}
            write_pipeline_json(tmp, {
                "format": ENSEMBLE_PIPELINE_FORMAT if ensemble else PIPELINE_FORMAT,
                **({"ensemble_members": self.model.num_members} if ensemble else {}),
                "package_version": __version__,
                "torch_version": torch.__version__,
                "python": platform.python_version(),
                "modalities": list(self.adapters),
                **({"stack": self.stack.kind} if self.stack is not None else {}),
                "metadata": self.metadata,
                "sha256": sums,
            })
            from multimodal.model_card import write_model_card

            write_model_card(tmp, self)
        return Path(directory)

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, verify: bool = True) -> Pipeline:
        """Load a saved pipeline (offline; no code from the directory is run; checksums verified)."""
        d = Path(directory)
        meta = read_pipeline_json(d)
        found, supported = meta.get("format"), READABLE_FORMATS
        if isinstance(found, bool) or found not in supported:  # JSON true == 1 in Python
            written_by = meta.get("package_version") or "an unknown version"
            if isinstance(found, int) and not isinstance(found, bool) and found > max(supported):
                what = "newer than this version reads"
                hint = (f"it was written by precision-multimodal {written_by}; upgrade precision-multimodal (this is "
                        f"{__version__}) to load it, or re-train it with this version ('multimodal train')")
            else:
                what = "missing or not a known format"
                hint = ("pipeline.json was not written by 'multimodal train' or was edited; re-train the pipeline "
                        "with 'multimodal train', or restore pipeline.json from a trusted copy")
            supported_text = ", ".join(str(v) for v in supported)
            raise InputError(f"pipeline format {found!r} is {what}; precision-multimodal {__version__} reads "
                             f"format {supported_text}", file=d / "pipeline.json", field="format", hint=hint)
        if verify:
            verify_pipeline_files(d, meta)
        from multimodal.explain.reference import check_reference

        metadata = meta.get("metadata", {})
        if not isinstance(metadata, dict):
            raise IntegrityError(f"{d}/pipeline.json: 'metadata' must be a JSON object, got {type(metadata).__name__}")
        check_reference(metadata, where=str(d / "pipeline.json"))  # refuse a tampered reference now
        check_recalibration(metadata, where=str(d / "pipeline.json"))  # pipelines older than recalibration have none
        adapters = {m: Adapter.load(d / "adapters" / m) for m in meta["modalities"]}
        config = MultimodalConfig.from_pretrained(str(d / "model"), local_files_only=True)
        model: MultimodalModel | MultimodalEnsemble = MultimodalModel(config)
        if found == ENSEMBLE_PIPELINE_FORMAT:
            k = meta.get("ensemble_members")
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise IntegrityError(f"{d}/pipeline.json: 'ensemble_members' must be a positive integer for format "
                                     f"{ENSEMBLE_PIPELINE_FORMAT}, got {k!r}")
            model = MultimodalEnsemble.from_config(config, k)
        from safetensors.torch import load_file

        state = load_file(str(d / "model" / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith("edges")]:
            raise IntegrityError(f"{d}/model: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
        model.eval()
        stack = None
        if meta.get("stack") is not None:
            if meta["stack"] not in STACKS or meta["stack"] == "none":
                raise IntegrityError(f"{d}/pipeline.json: unknown 'stack' {meta['stack']!r} (this version reads "
                                     f"{[k for k in STACKS if k != 'none']})")
            stack = PooledStack.load(d / "stack")
        return cls(adapters, model, metadata, stack)


# ---- prediction tables (multimodal predict) --------------------------------------------------------------------------
class _WithArmSurvival(torch.nn.Module):
    """The model, with each arm's per-bin survival appended to ``survival`` so that
    :func:`~multimodal.training.predict_dataset` gathers it (``surv_<K + a K + k>``; :func:`_split_arm_survival`
    names them ``surv_arm_<a>_<k>``)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, batch: Any, **kwargs: Any) -> Any:
        out = self.net(batch, **kwargs)
        if out.survival is None or out.survival_per_arm is None:
            return out
        return dataclasses.replace(out, survival=torch.cat([out.survival, out.survival_per_arm.flatten(1)], dim=1))


def _split_arm_survival(raw: pd.DataFrame, n_bins: int, n_arms: int) -> pd.DataFrame:
    extra = {f"surv_{n_bins + a * n_bins + k}": f"surv_arm_{a}_{k}" for a in range(n_arms) for k in range(n_bins)}
    if not set(extra) <= set(raw.columns):
        return raw
    return raw.rename(columns=extra)


def last_bin_time(metadata: Mapping[str, Any]) -> float | None:
    """Where the last (open) bin's survival is read: the largest training time (``max_train_time``; for pipelines
    saved before it was recorded, the recalibration map's last bin end), None when unknown."""
    t = metadata.get("max_train_time")
    if t is None:
        ends = ((metadata.get("recalibration") or {}).get("survival") or {}).get("bin_ends")
        t = ends[-1] if isinstance(ends, list) and ends else None
    try:
        return None if t is None or not math.isfinite(float(t)) else float(t)
    except (TypeError, ValueError):
        return None


def check_times(times: Sequence[float] | None, pipe: Pipeline) -> list[float]:
    """``times`` as a sorted list of distinct finite times >= 0; InputError (field ``--times``) for bad values or a
    model without survival curves."""
    out: list[float] = []
    for t in times or ():
        try:
            v = float(t)
        except (TypeError, ValueError):
            raise InputError(f"expected a time, got {t!r}", field="--times") from None
        if not math.isfinite(v) or v < 0:
            raise InputError(f"times must be finite and >= 0, got {t!r}", field="--times")
        out.append(v)
    if out and pipe.model.config.survival != "discrete":
        kind = "a Cox survival head (no baseline hazard is saved)" if pipe.model.config.survival == "cox" else \
            "no survival head"
        raise InputError(f"the pipeline's model has {kind}: it predicts no survival curve", field="--times",
                         hint="leave out --times; 'risk' ranks the patients")
    return sorted(set(out))


def time_label(t: float) -> str:
    """A time as it appears in a column name: ``365``, ``182.5``."""
    text = repr(float(t))
    return text[:-2] if text.endswith(".0") else text


def answer_columns(pred: pd.DataFrame, pipe: Pipeline, times: Sequence[float] = ()) -> pd.DataFrame:
    """:meth:`Pipeline.predict` output (with ``survival_per_arm`` when ``times``) turned into the answer table.

    Kept: every column of :meth:`Pipeline.predict` but ``surv_arm_<a>_<k>``. Added:

    * ``survival_t<T>`` / ``cumhaz_t<T>`` (= -log S) at each time T of ``times`` (:meth:`Pipeline.survival_at`);
    * per arm, named by the arm: ``risk_<arm>``, ``response_prob_<arm>``, ``survival_t<T>_<arm>``,
      ``cumhaz_t<T>_<arm>``;
    * with exactly two arms, arm 1 minus arm 0: ``risk_diff_<arm1>_vs_<arm0>``,
      ``response_prob_diff_<arm1>_vs_<arm0>``, ``survival_t<T>_diff_<arm1>_vs_<arm0>``.
    """
    out = pred.copy()
    arms = [str(a) for a in pipe.metadata.get("treatment_arms") or []]
    new: dict[str, np.ndarray] = {}
    if times:
        cols = surv_columns(out)
        labels = [time_label(t) for t in times]
        if cols:
            _survival_block(new, pipe.survival_at(out[cols].to_numpy(float), times), labels, "")
        for a, arm in enumerate(arms):
            acols = arm_surv_columns(out, a)
            if acols:
                _survival_block(new, pipe.survival_at(out[acols].to_numpy(float), times), labels, f"_{arm}")
    for a, arm in enumerate(arms):
        for what in ("risk", "response_prob"):
            if f"{what}_arm_{a}" in out.columns:
                new[f"{what}_{arm}"] = out[f"{what}_arm_{a}"].to_numpy(float)
    if len(arms) == 2:
        a0, a1 = arms
        stems = ["risk", "response_prob"] + [f"survival_t{time_label(t)}" for t in times]
        for stem in stems:
            if f"{stem}_{a0}" in new and f"{stem}_{a1}" in new:
                new[f"{stem}_diff_{a1}_vs_{a0}"] = new[f"{stem}_{a1}"] - new[f"{stem}_{a0}"]
    clash = [c for c in new if c in out.columns]
    if clash:
        raise InputError(f"an arm name makes column {clash[0]!r}, which the prediction table already has", field="arms",
                         hint=f"treatment arms {arms}: rename the arm in the training manifest")
    out = out.drop(columns=[c for c in out.columns if c.startswith("surv_arm_")])
    return pd.concat([out, pd.DataFrame(new, index=out.index)], axis=1)


def _survival_block(new: dict[str, np.ndarray], surv: np.ndarray, labels: Sequence[str], suffix: str) -> None:
    with np.errstate(divide="ignore"):
        cumhaz = -np.log(np.clip(surv, 0.0, 1.0))
    for j, lab in enumerate(labels):
        new[f"survival_t{lab}{suffix}"] = surv[:, j]
        new[f"cumhaz_t{lab}{suffix}"] = cumhaz[:, j] + 0.0  # -0.0 -> 0.0


@dataclass(frozen=True)
class _FittedStack:
    """What ``model.stack`` fits once per fold, before any model is trained (shared by every ensemble member)."""

    stack: PooledStack  # on the inner-training patients
    offsets: dict[str, float]  # cross-fitted, for training
    baseline: torch.Tensor | None  # per-bin baseline logits of a discrete-time head with the stack as offset


def _fit_stack(cohort: Cohort, train_ids: list[str], adapters: Mapping[str, Adapter], mcfg: ModelConfig, task: str,
               seed: int) -> _FittedStack | None:
    if mcfg.stack not in STACKS:
        raise ConfigError(f"unknown model.stack {mcfg.stack!r}; expected one of {list(STACKS)}", field="model.stack")
    head = stack_head(mcfg.stack, task)
    if head is None:
        return None
    if head == "response" and cohort.response_classes != 2:
        raise InputError(f"model.stack {mcfg.stack!r} needs a binary response; cohort {cohort.name!r} has "
                         f"{cohort.response_classes} classes", field="model.stack")
    from multimodal.pooled import PooledFeaturesConfig

    gene_sets = next((getattr(a.config, "gene_sets", None) for a in adapters.values()
                      if getattr(getattr(a, "config", None), "gene_sets", None)), None)
    pcfg = PooledFeaturesConfig(modalities=tuple(adapters), gene_sets=gene_sets, seed=seed,
                                structure=stack_structure(mcfg.stack))
    fit = fit_pooled_stack(cohort, train_ids, mcfg.stack, pcfg, head=head, seed=seed, weights=mcfg.stack_weights)
    baseline = None
    if head == "survival":
        probe = build_model(mcfg, adapters, cohort, train_ids, task=task)  # the head whose baseline is fitted
        # on the cross-fitted offsets: the scale the start has on patients its candidates did not see
        baseline = fit_offset_baseline(probe, cohort, train_ids, np.array([fit.offsets[p] for p in train_ids]))
    return _FittedStack(fit.stack, fit.offsets, baseline)


def load_model_config(data: Mapping[str, Any]) -> ModelConfig:
    return from_dict(ModelConfig, data)


# ---- recalibration on the inner validation patients ------------------------------------------------------------------
#: Fewest inner-validation patients, and events (survival) / patients of the rarer response class, a map is fitted on.
