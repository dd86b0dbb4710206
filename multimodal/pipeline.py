"""``Pipeline``: fitted adapters + model + study metadata, saved and loaded offline (safetensors + JSON only).

Layout of a saved pipeline directory::

    pipeline.json            format version, experiment config, modalities, metadata, sha256 of every file
    model/config.json        MultimodalConfig (of every member, for an ensemble)
    model/model.safetensors  weights (an ensemble's members under ``members.<k>.``; format 2)
    adapters/<modality>/adapter.json + adapter.safetensors
    stack/stack.json + stack.safetensors   the pooled stack (``model.stack``; multimodal/stack.py)
    MODEL_CARD.md            written through ``save_pretrained(model_card=...)`` (multimodal.api passes
                             :func:`multimodal.report.model_card.write_model_card`; the pipeline knows no report)
"""

from __future__ import annotations

import logging
import math
import platform
from collections.abc import Callable, Mapping, Sequence
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
    check_recalibration,
    fit_recalibration,
)
from multimodal.cohorts.cohort import Cohort
from multimodal.data import PatientDataset
from multimodal.errors import ConfigError, InputError, IntegrityError
from multimodal.io import atomic_dir, sha256_file
from multimodal.model import MultimodalConfig, MultimodalEnsemble, MultimodalModel
from multimodal.model.ensemble import member_seed
from multimodal.model_config import ModelConfig, build_model, load_model_config, quantile_bin_edges
from multimodal.pipeline_files import (
    ENSEMBLE_PIPELINE_FORMAT,
    PIPELINE_FORMAT,
    PIPELINE_JSON_SHA256,
    READABLE_FORMATS,
    read_pipeline_json,
    verify_pipeline_files,
    write_pipeline_json,
)
from multimodal.prediction_table import (
    WithArmSurvival,
    answer_columns,
    check_times,
    last_bin_time,
    split_arm_survival,
    time_label,
)
from multimodal.stack import STACKS, PooledStack, fit_pooled_stack, stack_head, stack_structure
from multimodal.training import FitResult, TrainingConfig, fit_model, make_accelerator, predict_dataset
from multimodal.training_record import patients_record, survival_record
from multimodal.wide_init import (
    WideStart,
    choose_trunk_scale,
    fit_offset_baseline,
    fit_wide_start,
    start_from_wide,
    start_trunk_at_zero,
)

log = logging.getLogger(__name__)


__all__ = ["ENSEMBLE_PIPELINE_FORMAT", "PIPELINE_FORMAT", "PIPELINE_JSON_SHA256", "READABLE_FORMATS", "ModelConfig",
           "Pipeline", "answer_columns", "build_model", "check_times", "last_bin_time", "load_model_config",
           "quantile_bin_edges", "read_pipeline_json", "time_label", "verify_pipeline_files", "write_pipeline_json"]

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
        attribution_reference: Callable[[Pipeline, Cohort, list[str]], dict[str, Any]] | bool | None = None,
    ) -> tuple[Pipeline, FitResult]:
        """Fit adapters on ``train_ids`` only, then train the model (early stopping on ``val_ids``).

        The metadata keep the inner-validation risks and, given an ``attribution_reference`` function (the API passes
        :func:`multimodal.explain.reference.attribution_reference`), its result on the inner-validation patients,
        computed before the stack's final refit: the mean attribution per pathway / gene that reports read a patient
        against. Pipelines that are only scored (cross-validation folds) pass none. The pipeline itself imports
        nothing from explanations or reports. With ``training.recalibrate`` the
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
            # for reports: who the training patients were (salted hashes) and their Kaplan-Meier survival
            "training_patients": patients_record([*train_ids, *(val_ids or [])], cohort.name, seed),
            "training_survival": survival_record(cohort, [*train_ids, *(val_ids or [])]),
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
            if attribution_reference is True:
                msg = ("Pipeline.fit: attribution_reference=True is gone; pass the function, e.g. "
                       "multimodal.explain.reference.attribution_reference (multimodal.api does)")
                raise TypeError(msg)
            if attribution_reference:
                meta["attribution_reference"] = attribution_reference(pipe, cohort, list(val_ids))
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
        net = WithArmSurvival(self.model) if per_arm else self.model
        raw = predict_dataset(net, ds, acc, batch_size=batch_size,
                              num_classes=max(int(self.metadata.get("response_classes", 2)), 2),
                              time_unit=str(self.metadata.get("time_unit", "days")))
        if per_arm:
            raw = split_arm_survival(raw, len(cfg.bin_edges or []) + 1, int(cfg.num_arms))
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
        from multimodal.survival_grid import discrete_survival_on_grid

        edges = [float(e) for e in (self.model.config.bin_edges or [])]
        grid = np.asarray(list(times), dtype=float)
        s = np.asarray(surv_bins, dtype=float)
        last = last_bin_time(self.metadata)
        out = discrete_survival_on_grid(s, edges, last if last is not None else math.inf, grid)
        if last is None:
            out[:, grid > (edges[-1] if edges else 0.0)] = np.nan
        return out

    # ---- persistence ---------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, *, overwrite: bool = False,
                        model_card: Callable[[Path, Pipeline], Any] | None = None) -> Path:
        """Write the pipeline atomically (a temp dir renamed at the end) with a checksum of every file;
        ``model_card(folder, pipeline)`` writes the card inside the same atomic folder (not checksummed: a rendering)."""
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
            if model_card is not None:
                model_card(tmp, self)
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
        metadata = meta.get("metadata", {})
        if not isinstance(metadata, dict):
            raise IntegrityError(f"{d}/pipeline.json: 'metadata' must be a JSON object, got {type(metadata).__name__}")
        # the attribution reference is checked by its owner, multimodal.explain.reference, where it is read (and by
        # multimodal.api.load_pipeline at once)
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

