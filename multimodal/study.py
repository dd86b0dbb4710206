"""Cross-validated studies (``multimodal cv``): our model, unimodal ablations and baselines on identical folds.

Protocol (declared, leakage-safe):

* patient-level folds: the cohort's external split files when it has them (e.g. PORPOISE/MCAT 5-fold), else
  stratified k-fold on the event indicator;
* inside each training fold an inner validation split (stratified, ``training.val_fraction``) is carved out for
  early stopping; adapters and baselines' preprocessing are fitted on training patients only;
* the reporting fold (``val`` of the split file) is never used for model selection;
* per-fold predictions and metrics are saved as the run goes; a re-run of the same command resumes fold by fold;
* every 95 % CI is a percentile bootstrap over patients, resampled within each fold and the fold metrics averaged,
  clipped to the metric's range (:class:`FoldBootstrap`); the same resamples serve every method, so ``comparison``
  (our model minus the best baseline, and minus every baseline) is a paired difference with its own bootstrap CI.

Outputs in the run directory: ``predictions.parquet``, ``summary.json``, ``summary.md``, ``folds/fold_<k>.json``,
``config.yaml``, ``run.json`` (versions, seed, input fingerprints).
"""

from __future__ import annotations

import json
import logging
import shutil
import time as _time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from multimodal.cohorts.cohort import Cohort, Fold
from multimodal.config import to_dict
from multimodal.errors import ConfigError, InputError
from multimodal.experiment import ExperimentConfig, load_cohort, make_adapters
from multimodal.io import CHECKSUMS, atomic_path, write_checksums, write_json_atomic, write_text_atomic
from multimodal.pipeline import Pipeline
from multimodal.run_folder import LOCK_NAME, fold_digest, fold_record, has_content, reusable_fold, run_lock
from multimodal.study_intervals import (
    CALIBRATION_KEYS,
    IBS_SURV_PREFIX,
    METRIC_RANGES,
    RESPONSE_KEYS,
    SURVIVAL_KEYS,
    FoldBootstrap,
    FoldContext,
    _bootstrap_keys,
    _intervals_text,
    _summary_keys,
    compare_methods,
    main_metric,
    paired_difference,
    percentile_ci,
)
from multimodal.study_summary import _fmt, comparison_text, method_ci, summary_markdown
from multimodal.survival_grid import breslow_survival_on_grid, discrete_survival_on_grid

#: Names that moved to their own modules (multimodal.study_intervals / study_summary / survival_grid) and are still
#: importable from here.
__all__ = ["CALIBRATION_KEYS", "IBS_SURV_PREFIX", "METRIC_RANGES", "RESPONSE_KEYS", "SURVIVAL_KEYS", "FoldBootstrap",
           "FoldContext", "MethodResult", "Study", "breslow_survival_on_grid", "compare_methods", "comparison_text",
           "discrete_survival_on_grid", "main_metric", "method_ci", "paired_difference", "percentile_ci",
           "summary_markdown", "true_risk_table"]

log = logging.getLogger(__name__)



# ---- the study ------------------------------------------------------------------------------------------------------
@dataclass
class MethodResult:
    name: str
    predictions: pd.DataFrame  # patient_id, risk, [surv grid], [response_prob]
    metrics: dict[str, Any]


class Study:
    """A cross-validated study described by an :class:`ExperimentConfig`.

    Example::

        cfg = load_experiment("configs/demo.yaml")
        summary = Study(cfg).run("runs/demo")
    """

    def __init__(self, config: ExperimentConfig, *, base_dir: Path | None = None, cohort: Cohort | None = None,
                 config_file: str | Path | None = None) -> None:
        self.config = config
        self.base_dir = base_dir
        self.config_file = config_file  # named in errors about the config's values
        self._cohort = cohort
        self._folds: list[Fold] | None = None

    @property
    def cohort(self) -> Cohort:
        if self._cohort is None:
            self._cohort = load_cohort(self.config.data, base=self.base_dir)
        return self._cohort

    def check_inputs(self) -> list[Fold]:
        """Load the cohort and make the folds, writing nothing: a bad config, manifest or split file fails here, before
        :meth:`run` touches the run folder. The folds are kept for :meth:`run`."""
        if self._folds is None:
            from multimodal.tracking import check_tracker

            check_tracker(self.config.training.log_with)
            folds = self.folds()
            if self.cohort.manifest_path is not None:
                # the rules of `multimodal validate` (every slide read, every value checked finite): a bad file fails
                # here, before the run folder is touched, not inside fold 0 after hours of training
                from multimodal.cohorts.validate import validate_manifest

                validate_manifest(self.cohort.manifest_path).raise_if_invalid()
            self._check_events(folds)
            self._check_drop_modality()
            self._folds = folds
        return self._folds

    def _check_drop_modality(self) -> None:
        """``evaluation.drop_test_modality`` must name one of the cohort's modalities (checked before any training)."""
        m, c = self.config.evaluation.drop_test_modality, self.cohort
        if m and m not in c.modalities:
            raise ConfigError(f"cohort has no modality {m!r} to hide", file=self.config_file,
                              field="evaluation.drop_test_modality", hint=f"one of {sorted(c.modalities)}")

    #: Fewest events a training fold needs for a survival model (and its inner validation / baselines' inner CV).
    MIN_TRAIN_EVENTS = 2

    def _check_events(self, folds: Sequence[Fold]) -> None:
        """A survival study whose training fold has fewer than :attr:`MIN_TRAIN_EVENTS` events stops here, before any
        training, naming the fold and the count (instead of failing inside fold k, or training on no events)."""
        if self.config.task == "response":
            return
        c = self.cohort
        for f in folds:
            n = int(np.sum(c.survival_arrays(self._eligible(f.train))[1]))
            if n < self.MIN_TRAIN_EVENTS:
                total = int(np.sum(c.survival_arrays(c.patient_ids)[1]))
                raise InputError(
                    f"fold {f.index}: its {len(f.train)} training patients have {n} event(s) (the cohort has {total}); "
                    f"a survival model needs at least {self.MIN_TRAIN_EVENTS}", file=self.config_file, field="event",
                    hint="check the event column and its polarity (event vs censorship), or use fewer folds")

    # -- folds
    def folds(self) -> list[Fold]:
        from multimodal.cohorts.splits import stratified_kfold

        c, ev = self.cohort, self.config.evaluation
        folds = c.splits if (c.splits and self.config.data.splits != "kfold") else None
        if folds is None:
            ids = c.patient_ids
            if ev.folds > len(ids):
                raise ConfigError(f"cannot make {ev.folds} folds from {len(ids)} patients", file=self.config_file,
                                  field="evaluation.folds", hint=f"lower evaluation.folds (at most {len(ids)})")
            strat = self._stratify_labels(ids)
            folds = stratified_kfold(ids, strat, ev.folds, self.config.seed + ev.split_seed)
        known = set(c.patient_ids)
        out = []
        for f in folds:
            f = Fold(f.index, tuple(p for p in f.train if p in known), tuple(p for p in f.val if p in known), f.test)
            f.check_disjoint()
            out.append(f)
        return out[: ev.max_folds] if ev.max_folds else out

    def _stratify_labels(self, ids: Sequence[str]) -> np.ndarray:
        p = self.cohort.patients.loc[list(ids)]
        if self.config.task == "response":
            return p["response"].fillna(-1).astype(int).to_numpy()
        return p["event"].astype(int).to_numpy()

    def _eligible(self, ids: Sequence[str]) -> list[str]:
        """Patients usable for the task (response studies need a known response)."""
        if self.config.task != "response":
            return list(ids)
        r = self.cohort.patients.loc[list(ids), "response"]
        return [p for p, v in zip(ids, r, strict=True) if not pd.isna(v)]

    # -- one fold
    def _fit_ours(self, name: str, fold: Fold, modalities: Sequence[str] | None, fold_dir: Path | None) -> MethodResult:
        from multimodal.cohorts.splits import validation_split

        cfg, c = self.config, self.cohort
        train = self._eligible(fold.train)
        test = self._eligible(fold.val)
        inner_tr, inner_val = validation_split(train, self._stratify_labels(train), cfg.training.val_fraction,
                                               cfg.seed + fold.index)
        adapters = make_adapters(cfg, modalities)
        from multimodal.tracking import tracking_run

        with tracking_run(f"fold_{fold.index}/{name}", getattr(self, "_log_dir", None)):  # training.log_with runs
            pipe, fit = Pipeline.fit(  # checkpoints (per epoch, per ensemble member) under the fold's work folder
                c, inner_tr, val_ids=inner_val, adapters=adapters, model_config=cfg.model, training=cfg.training,
                task=cfg.task, seed=cfg.seed + fold.index, out_dir=None if fold_dir is None else fold_dir / name,
                attribution_reference=False,
            )
        pred = pipe.predict(c, test, batch_size=cfg.training.eval_batch_size)
        train_pred = pipe.predict(c, inner_tr, batch_size=cfg.training.eval_batch_size) if pipe.model.config.survival == "cox" else None
        extra = {"member_best_epochs": [r.best_epoch for r in fit.members]} if fit.members else {}
        if fit.trunk_scale is not None:  # the pooled stack: how much of the trained trunk was kept (0 = the stack)
            extra["trunk_scale"] = fit.trunk_scale
            if fit.members:
                extra["member_trunk_scales"] = [r.trunk_scale for r in fit.members]
        if name == "multimodal" and cfg.evaluation.drop_test_modality and cfg.task != "response":
            extra.update(self._dropped_modality_score(pipe, fold, test, pred))
        return MethodResult(name, pred, {"best_epoch": fit.best_epoch, "inner_val_score": fit.best_score, **extra,
                                         "_pipe": pipe, "_train_pred": train_pred})

    def _dropped_modality_score(self, pipe: Pipeline, fold: Fold, test: Sequence[str],
                                pred: pd.DataFrame) -> dict[str, Any]:
        """Predict the reporting fold again with ``evaluation.drop_test_modality`` hidden from a seeded random share
        of its patients that have it; the c-index of those predictions (all test patients) and who was hidden."""
        import dataclasses

        from multimodal.metrics import UndefinedMetricError, harrell_c

        ev, c = self.config.evaluation, self.cohort
        m = str(ev.drop_test_modality)
        src = c.modalities[m]  # checked by check_inputs before any training
        having = sorted(set(test) & src.patients())
        rng = np.random.default_rng([self.config.seed, 7919, fold.index])
        hidden = sorted(rng.choice(having, size=int(round(ev.drop_test_fraction * len(having))), replace=False).tolist())
        view = dataclasses.replace(c, modalities={**c.modalities, m: _without_patients(src, set(hidden))})
        try:
            dropped = pipe.predict(view, list(test), batch_size=self.config.training.eval_batch_size)
        finally:
            pipe.bind(c)
        t, e = c.survival_arrays(list(test))
        try:
            full = harrell_c(t, e, pred["risk"].to_numpy(float))
            after = harrell_c(t, e, dropped["risk"].to_numpy(float))
        except UndefinedMetricError:
            full = after = None
        return {"dropped_modality": m, "dropped_patients": hidden, "c_index_full": full, "c_index_dropped": after}

    def _fit_baseline(self, name: str, fold: Fold) -> MethodResult:
        """Fit baseline ``name`` on the fold's training patients and predict its reporting patients.

        Every baseline is fed the fold's pooled features (:class:`~multimodal.pooled.PooledFeatures`, fitted once per
        fold on its training patients and cached) and selects its modalities (``*_clinical``: clinical only); one
        that needs the cohort itself (``attention_mil``: the raw patches) is fitted through its ``fit_cohort``.
        """
        from multimodal.baselines import baseline_task, create_baseline

        c = self.cohort
        train, test = self._eligible(fold.train), self._eligible(fold.val)
        model = create_baseline(name)
        pooled, x_tr, x_te = self._pooled_features(fold, train, test, self._baseline_modalities(name))
        self._check_baseline_modalities(name, model, x_tr)
        task = baseline_task(name, self.config.task)
        if task == "response" and self.config.task == "both":  # a response baseline of a survival + response study
            known = c.patients.loc[train, "response"].notna().to_numpy()
            train, x_tr = [p for p, k in zip(train, known, strict=True) if k], x_tr[known]
        if hasattr(model, "fit_cohort"):
            model.fit_cohort(c, train, task=task, pooled=pooled, table=x_tr)
            return self._baseline_result(name, model, model.inputs(c, test, table=x_te), test, task)
        if task == "response":
            model.fit(x_tr, c.patients.loc[train, "response"].astype(int).to_numpy())
        else:
            model.fit(x_tr, *c.survival_arrays(train))
        return self._baseline_result(name, model, x_te, test, task)

    def _baseline_modalities(self, name: str | None = None) -> tuple[str, ...]:
        """The cohort modalities the baselines see: those the experiment enables (what our model sees; all of the
        cohort's if none match), restricted to what the study's baselines (and ``name``) select."""
        from multimodal.baselines import create_baseline

        c = self.cohort
        names = [getattr(cfg, "modality", n) for n, cfg in self.config.adapters.enabled().items()]
        enabled = tuple(m for m in dict.fromkeys(names) if m in c.modalities) or tuple(c.modalities)
        selected: set[str] = set()
        for b in {*self.config.evaluation.baselines, *([name] if name else [])}:
            mods = getattr(create_baseline(b).config, "modalities", None)
            if mods is None:  # a baseline of every modality
                return enabled
            selected |= set(mods)
        return tuple(m for m in enabled if m in selected) or enabled

    def _pooled_features(self, fold: Fold, train: Sequence[str], test: Sequence[str],
                         modalities: Sequence[str]) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
        """(fitted PooledFeatures, training table, reporting table) of ``fold``: fitted on its training patients only,
        once per fold (the last fold's are kept, so several baselines reuse them)."""
        from multimodal.pooled import PooledFeatures, PooledFeaturesConfig

        key = (fold.index, tuple(train), tuple(test), tuple(modalities))
        cached = getattr(self, "_pooled_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        genomics = self.config.adapters.genomics
        cfg = PooledFeaturesConfig(modalities=tuple(modalities), seed=self.config.seed,
                                   gene_sets=getattr(genomics, "gene_sets", None))
        pooled = PooledFeatures(cfg).fit(self.cohort, train)
        out = (pooled, pooled.transform(self.cohort, train), pooled.transform(self.cohort, test))
        self._pooled_cache = (key, out)
        return out

    def _check_baseline_modalities(self, name: str, model: Any, x_tr: pd.DataFrame) -> None:
        wanted = getattr(model.config, "modalities", None)
        if wanted is not None and not any(str(col).split(":", 1)[0] in wanted for col in x_tr.columns):
            have = sorted({str(col).split(":", 1)[0] for col in x_tr.columns})
            raise InputError(f"baseline {name!r} needs modality {list(wanted)}, which the study's data lack (they "
                             f"have {have})", file=self.config_file, field="evaluation.baselines")

    def _baseline_result(self, name: str, model: Any, x_te: Any, test: Sequence[str], task: str) -> MethodResult:
        if task == "response":
            prob = model.predict_proba(x_te)
            prob = prob[:, 1] if np.ndim(prob) == 2 else prob
            frame = {"patient_id": test, "response_prob": prob}
            if self.config.task == "response":  # risk = P(response) ranks patients in a response study only
                frame = {"patient_id": test, "risk": prob, "response_prob": prob}
            return MethodResult(name, pd.DataFrame(frame), {})
        return MethodResult(name, pd.DataFrame({"patient_id": test, "risk": model.predict_risk(x_te)}),
                            {"_model": model, "_x_test": x_te})

    def _score(self, res: MethodResult, fold: Fold) -> dict[str, Any]:
        """Metrics of one method on one reporting fold. Survival studies also get the calibration at the calibration
        horizon (``calibration`` table, ``calibration_slope``, ``ici``); the predicted event probability by that horizon
        is added to ``res.predictions`` (``event_prob_at_horizon``, ``calibration_horizon``), and ``S(t | x)`` on the
        integrated Brier score's grid (``ibs_surv_<j>``; the grid is ``ibs_grid`` of the metrics), so that the summary
        can bootstrap the calibration and the IBS over patients."""
        from multimodal.metrics import calibration_at, response_metrics, survival_metrics

        c = self.cohort
        ids = list(res.predictions["patient_id"])
        if self.config.task == "response":
            y = c.patients.loc[ids, "response"].astype(int).to_numpy()
            return response_metrics(y, res.predictions["response_prob"].to_numpy(float))
        if "risk" not in res.predictions.columns:  # a response baseline of a `both` study: its response metrics only
            return self._both_response_metrics(res, ids)
        train = self._eligible(fold.train)
        tr_t, tr_e = c.survival_arrays(train)
        t, e = c.survival_arrays(ids)
        risk = res.predictions["risk"].to_numpy(float)
        horizons = list(self.config.evaluation.horizons) or None
        grid = _grid(tr_t, t, e)
        surv = self._survival_grid(res, grid, tr_t, tr_e)
        m = survival_metrics(t, e, risk, train_time=tr_t, train_event=tr_e, surv_probs=surv,
                             grid=grid if surv is not None else None, horizons=horizons)
        if surv is not None:  # the IBS's inputs, for the bootstrap of the summary
            m["ibs_grid"] = [float(g) for g in grid]
            for j, col in enumerate(np.asarray(surv, float).T):
                res.predictions[f"{IBS_SURV_PREFIX}{j}"] = col
        h = self.config.evaluation.calibration_horizon or (float(np.median(t[e])) if e.any() else None)
        m["calibration_slope"] = m["ici"] = None
        if surv is not None and h is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    s_h = self._survival_grid(res, np.array([h]), tr_t, tr_e)[:, 0]
                    m["calibration"] = calibration_at(t, e, s_h, h)
                    m.update(_survival_calibration(res.predictions, t, e, s_h, h))
                except Exception as exc:  # calibration is descriptive; never fail a study on it
                    m["calibration"] = {"error": str(exc)}
        if self.config.task == "both" and "response_prob" in res.predictions.columns:
            m.update(self._both_response_metrics(res, ids))
        return m

    def _both_response_metrics(self, res: MethodResult, ids: Sequence[str]) -> dict[str, Any]:
        """Survival + response study: the response metrics of the patients whose response is known (none when it has
        one class there); the response's calibration slope / ICI as ``response_calibration_slope`` /
        ``response_ici`` (the plain keys are survival's)."""
        from multimodal.metrics import response_metrics

        r = self.cohort.patients.loc[list(ids), "response"]
        known = r.notna().to_numpy()
        y = r[known].astype(int).to_numpy()
        if not known.any() or len(np.unique(y)) != 2:
            return {}
        rm = response_metrics(y, res.predictions["response_prob"].to_numpy(float)[known])
        rm.update({f"response_{k}": rm.pop(k) for k in CALIBRATION_KEYS})
        return rm

    def _survival_grid(self, res: MethodResult, grid: np.ndarray, tr_t: np.ndarray, tr_e: np.ndarray) -> np.ndarray | None:
        if len(grid) == 0:
            return None
        pipe = res.metrics.get("_pipe")
        if pipe is not None:
            cfg = pipe.model.config
            if cfg.survival == "discrete":
                cols = sorted((c for c in res.predictions.columns if c.startswith("surv_")), key=lambda s: int(s[5:]))
                return discrete_survival_on_grid(res.predictions[cols].to_numpy(float), cfg.bin_edges, float(tr_t.max()), grid)
            tp = res.metrics.get("_train_pred")
            if cfg.survival == "cox" and tp is not None:
                return breslow_survival_on_grid(tp["risk"].to_numpy(float), tr_t, tr_e,
                                                res.predictions["risk"].to_numpy(float), grid)
            return None
        model = res.metrics.get("_model")
        if model is not None and hasattr(model, "predict_survival"):
            return np.asarray(model.predict_survival(res.metrics["_x_test"], grid), dtype=float)
        return None

    def methods(self) -> list[tuple[str, Callable[[Fold, Path | None], MethodResult]]]:
        cfg = self.config
        out: list[tuple[str, Callable[[Fold, Path | None], MethodResult]]] = [
            ("multimodal", lambda f, d: self._fit_ours("multimodal", f, None, d))
        ]
        mods = list(cfg.adapters.enabled())
        if cfg.evaluation.ablations and len(mods) > 1:
            for m in mods:
                out.append((f"multimodal_{m}", lambda f, d, m=m: self._fit_ours(f"multimodal_{m}", f, [m], d)))
        from multimodal.baselines import study_baselines

        for b in study_baselines(cfg.evaluation.baselines, cfg.task):
            out.append((b, lambda f, d, b=b: self._fit_baseline(b, f)))
        return out

    # -- the run
    def run(self, out_dir: str | Path, *, overwrite: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run (or resume) the study into ``out_dir``, holding the folder's lock (a second run on it fails at once;
        :mod:`multimodal.run_folder`). Finished folds are reused only when made from this config and these inputs.

        Returns the summary (``summary.json``) as a :class:`~multimodal.study_frame.StudyResult`: the dict, with
        ``.to_frame()`` (one row per method × fold × metric) and ``.summary_frame()`` (mean, std, 95 % CI)."""
        with run_lock(out_dir):
            return self._run_locked(out_dir, overwrite=overwrite, progress=progress)

    def _run_locked(self, out_dir: str | Path, *, overwrite: bool = False,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run (or resume) the study into ``out_dir``.

        Everything that can reject the input (the folder's state, the cohort, the folds, the inputs' fingerprints,
        the ground truth) is read before the folder is created or written, so bad input leaves no half-made run.
        Under ``accelerate launch`` / ``torchrun`` every process computes (training is collective) and only the main
        process writes.
        """
        from accelerate import PartialState

        from multimodal.provenance import run_record

        out = Path(out_dir)
        say = progress or (lambda s: log.info(s))
        cfg_yaml = yaml.safe_dump(to_dict(self.config), sort_keys=False)
        if out.exists() and (out / "config.yaml").is_file():
            if (out / "config.yaml").read_text() != cfg_yaml and not overwrite:
                raise InputError("run directory holds a run of a different config", file=out,
                                 hint="choose a new --out, or pass --overwrite")
        elif has_content(out) and not overwrite:
            raise InputError("output exists and is not a run directory", file=out, hint="choose a new --out or --overwrite")
        folds = self.check_inputs()
        record = run_record(self.config, self.cohort)
        oracle = self._oracle()
        digests = {f.index: fold_digest(cfg_yaml, record["inputs"], f.train, f.val) for f in folds}
        done = {f.index for f in folds if reusable_fold(out, f.index, digests[f.index], overwrite=overwrite)}
        state = PartialState()
        state.wait_for_everyone()  # every process has read the folder before the main process writes to it
        writes = state.is_main_process
        if writes:
            (out / "folds").mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / "config.yaml", cfg_yaml)
            write_json_atomic(out / "run.json", record)
            (out / CHECKSUMS).unlink(missing_ok=True)  # sealed again when finished
        all_preds: list[pd.DataFrame] = []
        per_method: dict[str, list[dict[str, Any]]] = {}
        t0 = _time.perf_counter()
        self._log_dir = out / "logs"  # training.log_with: tensorboard / mlflow runs
        say(self._opening_line(folds, done))
        for fold in folds:
            fpath, ppath = _fold_files(out, fold)
            if fold.index in done:
                say(f"fold {fold.index}: already done, reusing")
                rec = json.loads(fpath.read_text())
                preds = pd.read_parquet(ppath)
            else:
                work = _work_dir(out, fold, digests[fold.index], clean=writes)
                state.wait_for_everyone()
                rec, preds = self._run_fold(fold, work, say)
                if writes:
                    with atomic_path(ppath) as tmp:
                        preds.to_parquet(tmp, index=False)
                    write_json_atomic(fpath, fold_record(rec, digests[fold.index], ppath))
                    shutil.rmtree(work.parent, ignore_errors=True)  # the fold is saved: its checkpoints are not needed
                left = len([f for f in folds if f.index > fold.index and f.index not in done])
                if left:
                    spent = _time.perf_counter() - t0
                    computed = len([f for f in folds if f.index <= fold.index and f.index not in done])
                    say(f"fold {fold.index} done; about {_duration(spent / computed * left)} left for {left} fold(s)")
            all_preds.append(preds)
            for name, m in rec["methods"].items():
                per_method.setdefault(name, []).append({"fold": fold.index, **m})
        preds = pd.concat(all_preds, ignore_index=True)
        if writes:
            with atomic_path(out / "predictions.parquet") as tmp:
                preds.to_parquet(tmp, index=False)
        summary = self._summarize(per_method, preds, folds, oracle)
        summary["seconds"] = _time.perf_counter() - t0
        if writes:
            write_json_atomic(out / "summary.json", summary)
            write_text_atomic(out / "summary.md", summary_markdown(summary))
            write_checksums(out, exclude=(LOCK_NAME,))  # last: the seal of a finished run
        state.wait_for_everyone()  # the outputs exist for every process on return
        from multimodal.study_frame import StudyResult

        return StudyResult(summary)

    def _opening_line(self, folds: Sequence[Fold], done: set[int]) -> str:
        """The first line of a run: cohort, patients, folds, the models to train and a rough time estimate."""
        cfg, c = self.config, self.cohort
        todo = [f for f in folds if f.index not in done]
        names = [n for n, _ in self.methods()]
        ours = [n for n in names if n.startswith("multimodal")]
        k = max(1, int(cfg.model.ensemble))
        trainings = len(todo) * len(ours) * k
        n_train = int(np.mean([len(self._eligible(f.train)) for f in folds])) if folds else 0
        estimate = _rough_seconds(trainings, n_train, cfg.training.epochs, len(cfg.adapters.enabled()))
        reuse = f" ({len(done)} already done)" if done else ""
        return (f"cv {c.name!r}: {len(c.patient_ids)} patients, {len(folds)} folds{reuse}; per fold {len(ours)} "
                f"model(s) of ours x {k} ensemble member(s) (up to {cfg.training.epochs} epochs each) and "
                f"{len(names) - len(ours)} baseline(s): {trainings} trainings to go, roughly "
                f"{_duration(estimate)} (the estimate is refined after each fold)")

    def _run_fold(self, fold: Fold, work: Path | None, say: Callable[[str], None]) -> tuple[dict[str, Any], pd.DataFrame]:
        """Fit, predict and score every method on ``fold``; our models checkpoint under ``work`` (a re-run resumes
        them per ensemble member and epoch)."""
        c = self.cohort
        rec: dict[str, Any] = {"fold": fold.index, "n_train": len(fold.train), "n_test": len(fold.val), "methods": {}}
        frames = []
        for name, fn in self.methods():
            t0 = _time.perf_counter()
            res = fn(fold, work)
            metrics = self._score(res, fold)
            extras = {k: v for k, v in res.metrics.items() if not k.startswith("_")}
            rec["methods"][name] = {**metrics, **extras, "seconds": _time.perf_counter() - t0}
            key = "auroc" if self.config.task == "response" or "risk" not in res.predictions.columns else "c_index"
            say(f"fold {fold.index}  {name:<24} {key} {_fmt(metrics.get(key))}  ({_time.perf_counter() - t0:.1f}s)")
            p = res.predictions.copy()
            p.insert(0, "method", name)
            p.insert(0, "fold", fold.index)
            frames.append(p)
        preds = pd.concat(frames, ignore_index=True)
        pat = c.patients.loc[preds["patient_id"]]
        preds["time"] = pat["time"].to_numpy(float)
        preds["event"] = pat["event"].to_numpy(bool)
        if "response" in pat.columns:
            preds["response"] = pat["response"].to_numpy(object).astype(float)
        return rec, preds

    def _oracle(self) -> dict[str, Any] | None:
        gt = None
        if self.cohort.root is not None and (self.cohort.root / "ground_truth.json").is_file():
            gt = json.loads((self.cohort.root / "ground_truth.json").read_text())
        if gt is None:
            return None
        return {"table": true_risk_table(gt)}

    def _summarize(self, per_method: dict[str, list[dict[str, Any]]], preds: pd.DataFrame, folds: list[Fold],
                   oracle: dict[str, Any] | None) -> dict[str, Any]:
        """Per-method fold metrics, their mean and std over folds, and a 95 % CI of every summary metric: a percentile
        bootstrap over patients, resampled within each fold and the fold metrics averaged (the same resamples for
        every method, so :func:`compare_methods` pairs them); ``<key>_bootstrap`` repeats the CI of the keys that had
        one under that name before. ``comparison``: our model against the baselines (:func:`compare_methods`)."""
        from multimodal.metrics import harrell_c, summarize_folds

        task = self.config.task
        keys = _summary_keys(task)
        n_boot = self.config.evaluation.bootstrap
        out: dict[str, Any] = {"task": task, "cohort": self.cohort.name, "n_folds": len(folds),
                               "protocol": {**self._protocol(), "calibration": _calibration_text(task)}, "methods": {}}
        boot = FoldBootstrap(preds, n_boot, self.config.seed, task=task)
        contexts = self._fold_contexts(per_method, folds)
        for name, folds_m in per_method.items():
            agg = summarize_folds(folds_m)
            sub = preds[preds["method"] == name]
            ci = {k: boot.ci(sub, k, contexts.get(name), name=name) for k in keys}
            ci.update({f"{k}_bootstrap": ci[k] for k in _bootstrap_keys(task)})
            out["methods"][name] = {"folds": folds_m, "mean": {k: agg["mean"].get(k) for k in keys},
                                    "std": {k: agg["std"].get(k) for k in keys}, "ci95": ci}
        out["comparison"] = compare_methods(preds, {n: m["mean"] for n, m in out["methods"].items()}, boot,
                                            contexts=contexts)
        if task == "both":  # the response, against the response baselines (survival ones have no AUROC)
            out["comparison_response"] = compare_methods(preds, {n: m["mean"] for n, m in out["methods"].items()},
                                                         boot, contexts=contexts, key="auroc")
        if oracle is not None and self.config.task != "response":
            table = oracle["table"]
            vals = []
            for f in folds:
                ids = [p for p in f.val if p in table.index]
                t, e = self.cohort.survival_arrays(ids)
                if e.any():
                    vals.append(harrell_c(t, e, table.loc[ids, "true_risk"].to_numpy(float)))
            out["oracle"] = {"c_index": float(np.mean(vals)) if vals else None, "folds": vals}
        return out

    def _fold_contexts(self, per_method: dict[str, list[dict[str, Any]]],
                       folds: list[Fold]) -> dict[str, dict[Any, FoldContext]]:
        """{method: {fold index: FoldContext}}: the fold's training patients (the IPCW censoring estimate, as in
        :meth:`_score`) and the evaluation times its metrics used (td-AUC horizons, IBS grid)."""
        if self.config.task == "response":
            return {}
        train = {f.index: self.cohort.survival_arrays(self._eligible(f.train)) for f in folds}
        out: dict[str, dict[Any, FoldContext]] = {}
        for name, folds_m in per_method.items():
            for rec in folds_m:
                tr = train.get(rec.get("fold"))
                if tr is not None:
                    out.setdefault(name, {})[rec["fold"]] = FoldContext(
                        tr[0], tr[1], horizons=rec.get("td_auc_horizons"), grid=rec.get("ibs_grid"))
        return out

    def _selection_text(self) -> str:
        t = self.config.training
        if t.val_fraction == 0:
            return (f"no inner validation (training.val_fraction 0): fixed {t.epochs} epochs, the last one kept; the "
                    "reporting fold is never used for selection")
        averaged = f", weights averaged over it and the next {t.average_epochs - 1} epochs" if t.average_epochs > 1 else ""
        k = self.config.model.ensemble
        ensemble = f"; a deep ensemble of {k} trainings (seeds fold seed + 1000 k), each selected alike" if k > 1 else ""
        from multimodal.training import selection_metric

        return (f"inner validation ({t.val_fraction:.0%} of each training fold, stratified); best epoch by "
                f"{selection_metric(t.select_metric, self.config.task)}, patience {t.patience}{averaged}{ensemble}; the reporting fold is never used for "
                "selection")

    def _protocol(self) -> dict[str, Any]:
        c = self.cohort
        return {
            "splits": "external split files" if (c.splits and self.config.data.splits != "kfold") else
            f"stratified {self.config.evaluation.folds}-fold (seed {self.config.seed + self.config.evaluation.split_seed})",
            "model_selection": self._selection_text(),
            "preprocessing": "adapters and baseline preprocessing fitted on training patients of each fold only",
            "time_unit": c.time_unit,
            "intervals": _intervals_text(self.config.task, self.config.evaluation.bootstrap),
        }


def _without_patients(src: Any, hidden: set[str]) -> Any:
    """A copy of a modality source in which the ``hidden`` patients have no data."""
    import dataclasses

    from multimodal.cohorts.sources import ClinicalSource, MedsSource, OmicsSource, SlideSource

    if isinstance(src, SlideSource):
        return dataclasses.replace(src, slides={p: r for p, r in src.slides.items() if p not in hidden})
    if isinstance(src, MedsSource):
        return dataclasses.replace(src, subject_ids={p: s for p, s in src.subject_ids.items() if p not in hidden})
    if isinstance(src, ClinicalSource):
        return dataclasses.replace(src, table=src.table.loc[[p for p in src.table.index if str(p) not in hidden]])
    if isinstance(src, OmicsSource):
        wide = None if src.wide is None else src.wide.loc[[p for p in src.wide.index if str(p) not in hidden]]
        return dataclasses.replace(src, wide=wide, available=frozenset(src.available - hidden))
    raise TypeError(f"cannot hide patients from a {type(src).__name__}")


def _work_dir(out: Path, fold: Fold, digest: str, *, clean: bool) -> Path:
    """``out/folds/fold_<k>.partial/<digest>``: where an unfinished fold's models checkpoint. Work of another digest
    (another config or other inputs) is removed (``clean``: the main process), never resumed."""
    parent = out / "folds" / f"fold_{fold.index}.partial"
    work = parent / digest[:16]
    if clean and parent.is_dir():
        for p in parent.iterdir():
            if p != work:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return work


#: The opening line's time estimate per training: a fixed part (adapters, inner validation, prediction) and a part per
#: training patient x epoch (the maximum) x modality. Rough, for 2 CPU cores: set so that `make demo` (75 cross-validation
#: trainings of 160 patients, up to 40 epochs, 4 modalities; the whole demo took about 11 minutes, README) comes out
#: at about 13 minutes and the tiny studies of tests/ux at a few seconds per training.
_SECONDS_PER_TRAINING = 1.5
_SECONDS_PER_PATIENT_EPOCH_MODALITY = 0.00034


def _rough_seconds(trainings: int, n_train: int, epochs: int, modalities: int) -> float:
    per = _SECONDS_PER_TRAINING + n_train * epochs * max(1, modalities) * _SECONDS_PER_PATIENT_EPOCH_MODALITY
    return trainings * per


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fold_files(out: Path, fold: Fold) -> tuple[Path, Path]:
    """(metrics JSON, predictions parquet) of a finished fold in run folder ``out``."""
    return out / "folds" / f"fold_{fold.index}.json", out / "folds" / f"fold_{fold.index}.parquet"


def true_risk_table(ground_truth: dict[str, Any]) -> pd.DataFrame:
    """Per-patient true linear predictor (under the assigned arm) from a synthetic cohort's ground_truth.json."""
    rows = [(p["patient_id"], float(p["linear_predictor"])) for p in ground_truth["patients"]]
    return pd.DataFrame(rows, columns=["patient_id", "true_risk"]).set_index("patient_id")


def _grid(tr_t: np.ndarray, t: np.ndarray, e: np.ndarray) -> np.ndarray:
    if not e.any():
        return np.array([])
    lo, hi = float(np.quantile(t[e], 0.1)), min(float(t.max()), float(tr_t.max())) * 0.999
    if hi <= lo:
        return np.array([])
    return np.linspace(lo, hi, 20)


def _survival_calibration(pred: pd.DataFrame, time: np.ndarray, event: np.ndarray, surv_at_h: np.ndarray,
                          horizon: float) -> dict[str, float | None]:
    """Calibration slope and ICI of ``S(horizon | x)``; records the predicted event probability in ``pred``."""
    from multimodal.metrics import UndefinedMetricError, survival_calibration_slope, survival_ici

    pred["event_prob_at_horizon"] = 1.0 - surv_at_h
    pred["calibration_horizon"] = float(horizon)
    out: dict[str, float | None] = {}
    for key, fn in (("calibration_slope", lambda: survival_calibration_slope(time, event, surv_at_h)),
                    ("ici", lambda: survival_ici(time, event, surv_at_h, horizon))):
        try:
            out[key] = fn()
        except UndefinedMetricError:
            out[key] = None
    return out


def _calibration_text(task: str | None) -> str:
    resp = ("response: calibration slope (logistic regression of the outcome on logit p) and ICI (Austin & "
            "Steyerberg 2019: mean |observed - predicted|, observed from a logistic spline of the outcome on logit p)")
    surv = ("survival at the calibration horizon (evaluation.calibration_horizon, else the fold's median event time): "
            "calibration slope (Cox regression of the outcome on cloglog of the predicted risk) and ICI (Austin, "
            "Harrell & van Klaveren 2020: observed risk from a Cox spline of the outcome on cloglog of the predicted "
            "risk)")
    text = resp if task == "response" else surv + ("; response_*: " + resp if task == "both" else "")
    return text
