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
from multimodal.io import atomic_path, write_json_atomic, write_text_atomic
from multimodal.pipeline import Pipeline

log = logging.getLogger(__name__)

SURVIVAL_KEYS = ("c_index", "c_index_uno", "td_auc", "ibs")
RESPONSE_KEYS = ("auroc", "auprc", "brier", "calibration_slope")


# ---- survival curves on a grid --------------------------------------------------------------------------------------
def discrete_survival_on_grid(surv_bins: np.ndarray, edges: Sequence[float], t_max: float, grid: np.ndarray) -> np.ndarray:
    """Piecewise-linear S(t) through (0, 1), (edge_1, S_0), ..., (t_max, S_{K-1}) evaluated on ``grid``."""
    knots = np.concatenate([[0.0], np.asarray(edges, float), [max(t_max, (edges[-1] if len(edges) else 0) + 1e-6)]])
    vals = np.concatenate([np.ones((surv_bins.shape[0], 1)), surv_bins], axis=1)
    return np.stack([np.interp(grid, knots, v) for v in vals])


def breslow_survival_on_grid(train_risk: np.ndarray, train_time: np.ndarray, train_event: np.ndarray,
                             risk: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """S(t|x) = S0(t)^exp(risk) with the Breslow baseline estimated on the training fold."""
    order = np.argsort(train_time)
    t, e, r = train_time[order], train_event[order], np.exp(train_risk[order] - train_risk.max())
    at_risk = np.cumsum(r[::-1])[::-1]
    uniq = np.unique(t[e])
    h0 = np.array([e[t == u].sum() / at_risk[np.searchsorted(t, u)] for u in uniq])
    cum = np.concatenate([[0.0], np.cumsum(h0)])
    idx = np.searchsorted(uniq, grid, side="right")
    base = cum[idx]
    return np.exp(-np.outer(np.exp(risk - train_risk.max()), base))


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
            folds = self.folds()
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
        pipe, fit = Pipeline.fit(
            c, inner_tr, val_ids=inner_val, adapters=adapters, model_config=cfg.model, training=cfg.training,
            task=cfg.task, seed=cfg.seed + fold.index, out_dir=None, attribution_reference=False,
        )
        pred = pipe.predict(c, test, batch_size=cfg.training.eval_batch_size)
        train_pred = pipe.predict(c, inner_tr, batch_size=cfg.training.eval_batch_size) if pipe.model.config.survival == "cox" else None
        extra = {"member_best_epochs": [r.best_epoch for r in fit.members]} if fit.members else {}
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
        from multimodal.baselines import create_baseline

        c = self.cohort
        train, test = self._eligible(fold.train), self._eligible(fold.val)
        model = create_baseline(name)
        pooled, x_tr, x_te = self._pooled_features(fold, train, test, self._baseline_modalities(name))
        self._check_baseline_modalities(name, model, x_tr)
        if hasattr(model, "fit_cohort"):
            task = "response" if self.config.task == "response" else "survival"
            model.fit_cohort(c, train, task=task, pooled=pooled, table=x_tr)
            return self._baseline_result(name, model, model.inputs(c, test, table=x_te), test)
        if self.config.task == "response":
            model.fit(x_tr, c.patients.loc[train, "response"].astype(int).to_numpy())
        else:
            model.fit(x_tr, *c.survival_arrays(train))
        return self._baseline_result(name, model, x_te, test)

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

    def _baseline_result(self, name: str, model: Any, x_te: Any, test: Sequence[str]) -> MethodResult:
        if self.config.task == "response":
            prob = model.predict_proba(x_te)
            prob = prob[:, 1] if np.ndim(prob) == 2 else prob
            return MethodResult(name, pd.DataFrame({"patient_id": test, "risk": prob, "response_prob": prob}), {})
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
            # survival + response: the response metrics of the patients whose response is known; the response's
            # calibration slope / ICI as response_calibration_slope / response_ici (the plain keys are survival's)
            r = c.patients.loc[ids, "response"]
            known = r.notna().to_numpy()
            y = r[known].astype(int).to_numpy()
            if known.any() and len(np.unique(y)) == 2:
                rm = response_metrics(y, res.predictions["response_prob"].to_numpy(float)[known])
                rm.update({f"response_{k}": rm.pop(k) for k in CALIBRATION_KEYS})
                m.update(rm)
        return m

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
        for b in cfg.evaluation.baselines:
            out.append((b, lambda f, d, b=b: self._fit_baseline(b, f)))
        return out

    # -- the run
    def run(self, out_dir: str | Path, *, overwrite: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
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
        elif out.exists() and any(out.iterdir()) and not overwrite:
            raise InputError("output exists and is not a run directory", file=out, hint="choose a new --out or --overwrite")
        folds = self.check_inputs()
        record = run_record(self.config, self.cohort)
        oracle = self._oracle()
        done = {f.index for f in folds if all(p.is_file() for p in _fold_files(out, f))}
        state = PartialState()
        state.wait_for_everyone()  # every process has read the folder before the main process writes to it
        writes = state.is_main_process
        if writes:
            (out / "folds").mkdir(parents=True, exist_ok=True)
            write_text_atomic(out / "config.yaml", cfg_yaml)
            write_json_atomic(out / "run.json", record)
        all_preds: list[pd.DataFrame] = []
        per_method: dict[str, list[dict[str, Any]]] = {}
        t0 = _time.perf_counter()
        for fold in folds:
            fpath, ppath = _fold_files(out, fold)
            if fold.index in done:
                say(f"fold {fold.index}: already done, reusing")
                rec = json.loads(fpath.read_text())
                preds = pd.read_parquet(ppath)
            else:
                rec, preds = self._run_fold(fold, out, say)
                if writes:
                    with atomic_path(ppath) as tmp:
                        preds.to_parquet(tmp, index=False)
                    write_json_atomic(fpath, rec)
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
        state.wait_for_everyone()  # the outputs exist for every process on return
        return summary

    def _run_fold(self, fold: Fold, out: Path, say: Callable[[str], None]) -> tuple[dict[str, Any], pd.DataFrame]:
        c = self.cohort
        rec: dict[str, Any] = {"fold": fold.index, "n_train": len(fold.train), "n_test": len(fold.val), "methods": {}}
        frames = []
        for name, fn in self.methods():
            t0 = _time.perf_counter()
            res = fn(fold, out / "folds")
            metrics = self._score(res, fold)
            extras = {k: v for k, v in res.metrics.items() if not k.startswith("_")}
            rec["methods"][name] = {**metrics, **extras, "seconds": _time.perf_counter() - t0}
            key = "auroc" if self.config.task == "response" else "c_index"
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
        return (f"inner validation ({t.val_fraction:.0%} of each training fold, stratified); best epoch by "
                f"{t.select_metric}, patience {t.patience}{averaged}{ensemble}; the reporting fold is never used for "
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


#: The calibration metrics: survival's at the calibration horizon, or the response's (task `response`).
CALIBRATION_KEYS = ("calibration_slope", "ici")
#: Natural range of a summary metric; confidence intervals are clipped to it (absent = unbounded).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "c_index": (0.0, 1.0), "c_index_uno": (0.0, 1.0), "td_auc": (0.0, 1.0), "ibs": (0.0, 1.0), "auroc": (0.0, 1.0),
    "auprc": (0.0, 1.0), "brier": (0.0, 1.0), "ici": (0.0, 1.0), "response_ici": (0.0, 1.0),
}
#: Prediction columns of ``S(t | x)`` on the IBS grid (written by :meth:`Study._score`).
IBS_SURV_PREFIX = "ibs_surv_"
#: Metrics whose IPCW computation (scikit-survival) is slow: bootstrapped with at most this many resamples (the first
#: ones of the shared resamples); the count is stated in the summary's ``protocol.intervals``.
IPCW_KEYS = ("c_index_uno", "td_auc", "ibs")
IPCW_BOOTSTRAP = 50
#: Prediction columns each bootstrapped metric family needs.
_BOOT_COLUMNS: dict[str, tuple[str, ...]] = {
    "risk": ("time", "event", "risk"),
    "ibs": ("time", "event"),  # and the ibs_surv_<j> columns
    "survival_calibration": ("time", "event", "event_prob_at_horizon", "calibration_horizon"),
    "response": ("response", "response_prob"),
}


@dataclass(frozen=True)
class FoldContext:
    """What a fold's metrics need besides its predictions: the training fold's time / event (IPCW censoring estimate of
    Uno's c-index, td-AUC and IBS) and the evaluation times of the fold's own metrics, kept fixed in every resample
    (``horizons`` of the td-AUC, default: chosen per resample; ``grid`` of the IBS)."""

    train_time: np.ndarray | None = None
    train_event: np.ndarray | None = None
    horizons: Sequence[float] | None = None
    grid: Sequence[float] | None = None


class FoldBootstrap:
    """Patient resamples drawn within each fold of ``preds`` (``fold``, ``patient_id`` columns), the same for every
    method and metric: the fold's patients are drawn with replacement ``n_boot`` times (seeded), and a method's rows
    are looked up by patient id, so two methods' resampled metrics are paired."""

    def __init__(self, preds: pd.DataFrame, n_boot: int, seed: int, *, task: str | None = None) -> None:
        self.n_boot, self.task = int(n_boot), task
        self._cache: dict[tuple[str, str, bool], np.ndarray] = {}
        rng = np.random.default_rng(seed)
        self.patients: dict[Any, pd.Index] = {}
        self.index: dict[Any, np.ndarray] = {}
        for fold, g in preds.groupby("fold", sort=True):
            ids = pd.Index(sorted(pd.unique(g["patient_id"]), key=str))
            self.patients[fold] = ids
            self.index[fold] = rng.integers(0, len(ids), (self.n_boot, len(ids)))

    def n_resamples(self, key: str) -> int:
        return min(self.n_boot, IPCW_BOOTSTRAP) if key in IPCW_KEYS else self.n_boot

    def values(self, sub: pd.DataFrame, key: str, contexts: dict[Any, FoldContext] | None = None, *,
               point: bool = False, name: str | None = None) -> np.ndarray:
        """``(resamples, folds)`` metric ``key`` of one method's predictions ``sub`` on each resample of each fold (NaN
        where undefined, or where ``sub`` lacks the metric's columns); ``point``: one row, the folds as they are.
        ``name``: the method's name, under which the values are kept for later calls."""
        if name is not None and (name, key, point) in self._cache:
            return self._cache[name, key, point]
        out = self._values(sub, key, contexts, point)
        if name is not None:
            self._cache[name, key, point] = out
        return out

    def _values(self, sub: pd.DataFrame, key: str, contexts: dict[Any, FoldContext] | None,
                point: bool) -> np.ndarray:
        from multimodal.errors import InputError
        from multimodal.metrics import UndefinedMetricError

        folds = list(self.index)
        n = 1 if point else self.n_resamples(key)
        out = np.full((n, len(folds)), np.nan)
        metric = _boot_metric(key, self.task)
        if metric is None or sub.empty:
            return out
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, fold in enumerate(folds):
                cols = _aligned_columns(sub[sub["fold"] == fold], self.patients[fold], key, self.task)
                if cols is None:
                    continue
                ok = cols.pop("_ok")
                if not ok.any():  # e.g. a survival baseline's response metrics
                    continue
                ctx = (contexts or {}).get(fold)
                rows = np.arange(len(ok))[None] if point else self.index[fold][:n]
                for b, idx in enumerate(rows):
                    idx = idx[ok[idx]]
                    try:
                        out[b, j] = metric({c: a[idx] for c, a in cols.items()}, ctx)
                    except (UndefinedMetricError, InputError, ValueError, ZeroDivisionError):
                        continue
        out[~np.isfinite(out)] = np.nan
        return out

    def ci(self, sub: pd.DataFrame, key: str, contexts: dict[Any, FoldContext] | None = None, *,
           name: str | None = None) -> list[float | None]:
        """Percentile 95 % CI of the mean over folds of ``key`` (:func:`percentile_ci`)."""
        if not self.n_boot:
            return [None, None]
        return percentile_ci(_fold_means(self.values(sub, key, contexts, name=name)), key)


def _fold_means(vals: np.ndarray) -> np.ndarray:
    """Per resample (row), the mean of the folds where the metric is defined; resamples defined in no fold dropped."""
    ok = np.isfinite(vals)
    keep = ok.any(axis=1)
    return np.nansum(vals[keep], axis=1) / ok[keep].sum(axis=1)


def _paired_diffs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per resample, mean over the folds where both are defined of ``a - b`` (same resamples for both)."""
    both = np.isfinite(a) & np.isfinite(b)
    keep = both.any(axis=1)
    d = np.where(both, a - b, 0.0)[keep]
    return d.sum(axis=1) / both[keep].sum(axis=1)


def percentile_ci(values: np.ndarray, key: str | None = None, *, width: float | None = None) -> list[float | None]:
    """The 2.5 % and 97.5 % quantiles of bootstrap ``values``, clipped to the metric's range (:data:`METRIC_RANGES`) or
    to ``[-width, width]``; ``[None, None]`` without values."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [None, None]
    lo, hi = (float(q) for q in np.quantile(v, [0.025, 0.975]))
    if width is not None:
        return [float(np.clip(lo, -width, width)), float(np.clip(hi, -width, width))]
    return _bounded(key, [lo, hi]) if key else [lo, hi]


def _fold_bootstrap(sub: pd.DataFrame, key: str, n_boot: int, seed: int, *, task: str | None = None,
                    contexts: dict[Any, FoldContext] | None = None) -> list[float | None]:
    """Percentile 95 % CI of the mean over folds of metric ``key`` of one method's predictions ``sub``: each resample
    draws patients with replacement within every fold (:class:`FoldBootstrap`); bounded to the metric's range
    (:data:`METRIC_RANGES`). ``contexts`` ({fold: :class:`FoldContext`}) gives the IPCW metrics their training fold.
    ``[None, None]`` when the predictions lack the metric's columns (runs resumed from folds written before the metric
    existed) or no resample is defined."""
    return FoldBootstrap(sub, n_boot, seed, task=task).ci(sub, key, contexts)


def main_metric(task: str | None) -> str:
    """The metric that ranks methods: c-index (survival studies), AUROC (response)."""
    return _summary_keys(task)[0]


def compare_methods(preds: pd.DataFrame, means: dict[str, dict[str, Any]], boot: FoldBootstrap, *,
                    ours: str = "multimodal", contexts: dict[str, dict[Any, FoldContext]] | None = None,
                    ) -> dict[str, Any] | None:
    """Our model against the baselines (methods not named ``multimodal*``) on the main metric: the best baseline by
    mean over folds (``means``: {method: {metric: mean}}), and the paired difference ours − baseline against it and
    against every baseline (``vs``), each with a 95 % bootstrap CI over patients (:func:`paired_difference`). None
    when the study has no baseline or no ``ours``."""
    key = main_metric(boot.task)
    base = {n: m.get(key) for n, m in means.items() if not n.startswith("multimodal")}
    ranked = sorted(((v, n) for n, v in base.items() if v is not None), key=lambda x: -x[0])
    if ours not in means or not ranked:
        return None
    vs = {n: paired_difference(preds, ours, n, key, boot, contexts=contexts) for n in base}
    best = ranked[0][1]
    return {"metric": key, "method": ours, "best_baseline": best, **vs[best], "n_boot": boot.n_resamples(key),
            "vs": vs}


def paired_difference(preds: pd.DataFrame, a: str, b: str, key: str, boot: FoldBootstrap, *,
                      contexts: dict[str, dict[Any, FoldContext]] | None = None) -> dict[str, Any]:
    """``{"diff", "ci95"}``: mean over folds of metric ``key`` of method ``a`` minus that of method ``b`` (rows of
    ``preds`` by ``method``; the folds where both are defined), with the percentile 95 % CI of the same difference
    over ``boot``'s resamples (the same patients drawn for both methods). ``contexts``: {method: {fold: context}}."""
    contexts = contexts or {}

    def vals(name: str, point: bool) -> np.ndarray:
        return boot.values(preds[preds["method"] == name], key, contexts.get(name), point=point, name=name)

    point = _paired_diffs(vals(a, True), vals(b, True))
    diff = float(point[0]) if point.size else None
    if not boot.n_boot:
        return {"diff": diff, "ci95": [None, None]}
    lo_hi = METRIC_RANGES.get(key)
    d = _paired_diffs(vals(a, False), vals(b, False))
    return {"diff": diff, "ci95": percentile_ci(d, width=(lo_hi[1] - lo_hi[0]) if lo_hi else None)}


def _summary_keys(task: str | None) -> tuple[str, ...]:
    """The summary's metric keys: :func:`_keys` plus the calibration slope and ICI (both also the response's in task
    `both`)."""
    keys = _keys(task)
    extra = CALIBRATION_KEYS
    if task == "both":
        extra = (*CALIBRATION_KEYS, *(f"response_{k}" for k in CALIBRATION_KEYS))
    return keys + tuple(k for k in extra if k not in keys)


def _bootstrap_keys(task: str | None) -> tuple[str, ...]:
    """Keys whose CI is also written as ``<key>_bootstrap`` (their name before every CI was a bootstrap): the main
    metric and the calibration."""
    keys = _summary_keys(task)
    return (keys[0], *(k for k in keys if k.endswith(CALIBRATION_KEYS)))


def _boot_family(key: str, task: str | None) -> str:
    if key in ("auroc", "auprc", "brier") or key.startswith("response_") or task == "response":
        return "response"
    if key == "ibs":
        return "ibs"
    return "survival_calibration" if key in CALIBRATION_KEYS else "risk"


def _aligned_columns(g: pd.DataFrame, ids: pd.Index, key: str, task: str | None) -> dict[str, np.ndarray] | None:
    """The columns metric ``key`` needs of one method's fold rows ``g``, as arrays in the order of the fold's patients
    ``ids`` (``surv``: the IBS grid columns as a matrix), and ``_ok``: the patients with every column defined; None
    when ``g`` lacks a column."""
    family = _boot_family(key, task)
    names = list(_BOOT_COLUMNS[family])
    surv_cols = sorted((c for c in g.columns if str(c).startswith(IBS_SURV_PREFIX)),
                       key=lambda c: int(str(c)[len(IBS_SURV_PREFIX):]))
    if not set(names) <= set(g.columns) or (family == "ibs" and not surv_cols):
        return None
    pos = ids.get_indexer(g["patient_id"])
    g, pos = g[pos >= 0], pos[pos >= 0]
    n = len(ids)
    cols: dict[str, np.ndarray] = {}
    for c in names:
        a = np.full(n, np.nan)
        a[pos] = pd.to_numeric(g[c], errors="coerce").to_numpy(float)
        cols[c] = a
    if family == "ibs":
        s = np.full((n, len(surv_cols)), np.nan)
        s[pos] = g[surv_cols].to_numpy(float)
        cols["surv"] = s
    ok = np.ones(n, bool)
    for a in cols.values():
        ok &= np.isfinite(a) if a.ndim == 1 else np.isfinite(a).all(axis=1)
    cols["_ok"] = ok
    return cols


def _boot_metric(key: str, task: str | None) -> Callable[[dict[str, np.ndarray], FoldContext | None], float] | None:
    """``metric(columns of one resampled fold, the fold's context)`` of a summary key, or None."""
    from multimodal import metrics as mx

    def surv(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return c["time"], c["event"].astype(bool)

    def resp(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return c["response"].astype(int), c["response_prob"]

    def train(ctx: FoldContext | None) -> tuple[np.ndarray, np.ndarray]:
        if ctx is None or ctx.train_time is None or ctx.train_event is None:
            raise mx.UndefinedMetricError("no training fold for the IPCW censoring estimate")
        return ctx.train_time, ctx.train_event

    def s_h(c: dict[str, np.ndarray]) -> np.ndarray:
        return 1.0 - c["event_prob_at_horizon"]

    def ibs(c: dict[str, np.ndarray], ctx: FoldContext | None) -> float:
        if ctx is None or ctx.grid is None:
            raise mx.UndefinedMetricError("no IBS grid")
        return mx.integrated_brier(*train(ctx), *surv(c), c["surv"], ctx.grid)

    def td_auc(c: dict[str, np.ndarray], ctx: FoldContext | None) -> float:
        return mx.td_auc(*train(ctx), *surv(c), c["risk"], ctx.horizons if ctx else None)["mean_auc"]

    family = _boot_family(key, task)
    if family == "response":
        fn = {"auroc": mx.auroc, "auprc": mx.auprc, "brier": mx.brier, "calibration_slope": mx.calibration_slope,
              "ici": mx.response_ici}.get(key.removeprefix("response_"))
        return None if fn is None else (lambda c, ctx: fn(*resp(c)))
    fns: dict[str, Callable[[dict[str, np.ndarray], FoldContext | None], float]] = {
        "c_index": lambda c, ctx: mx.harrell_c(*surv(c), c["risk"]),
        "c_index_uno": lambda c, ctx: mx.uno_c(*train(ctx), *surv(c), c["risk"]),
        "td_auc": td_auc,
        "ibs": ibs,
        "calibration_slope": lambda c, ctx: mx.survival_calibration_slope(*surv(c), s_h(c)),
        "ici": lambda c, ctx: mx.survival_ici(*surv(c), s_h(c), float(c["calibration_horizon"][0])),
    }
    return fns.get(key)


def _bounded(key: str, ci: list[float | None] | None) -> list[float | None] | None:
    lo_hi = METRIC_RANGES.get(key)
    if lo_hi is None or ci is None or ci[0] is None or ci[1] is None:
        return ci
    return [float(np.clip(ci[0], *lo_hi)), float(np.clip(ci[1], *lo_hi))]


def _intervals_text(task: str | None, n_boot: int) -> str:
    if not n_boot:
        return "no confidence intervals (evaluation.bootstrap 0)"
    slow = [k for k in _summary_keys(task) if k in IPCW_KEYS]
    fewer = f" ({', '.join(slow)}: {min(n_boot, IPCW_BOOTSTRAP)}, the first of the same resamples)" \
        if slow and n_boot > IPCW_BOOTSTRAP else ""
    return (f"95% CIs are percentile bootstraps over patients: {n_boot} resamples{fewer}, patients drawn with "
            "replacement within each reporting fold and the fold metrics averaged, clipped to the metric's range; "
            "the same resamples for every method, so comparison differences are paired")


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


def _fmt(v: Any) -> str:
    return "  n/a" if v is None else f"{float(v):.3f}"


def _keys(task: str | None) -> tuple[str, ...]:
    """Summary metrics of a task (the first one gets the bootstrap CI)."""
    if task == "response":
        return RESPONSE_KEYS
    return SURVIVAL_KEYS + (("auroc", "auprc") if task == "both" else ())


def _ci_text(ci: list[float | None] | None) -> str:
    return "n/a" if not ci or ci[0] is None else f"{ci[0]:.3f}–{ci[1]:.3f}"


def method_ci(m: dict[str, Any], key: str) -> list[float | None] | None:
    """A method's 95 % CI of ``key``: ``<key>_bootstrap`` where there is one (the same as the plain key, except in
    summaries written while the plain key held a t-interval over folds), else the plain key."""
    ci95 = m.get("ci95") or {}
    boot = ci95.get(f"{key}_bootstrap")
    return boot if boot is not None else ci95.get(key)


def _cell(m: dict[str, Any], key: str) -> str:
    """The mean over folds with its 95 % CI in brackets."""
    text = _fmt(m["mean"].get(key)).strip()
    ci = method_ci(m, key)
    if ci and ci[0] is not None:
        text += f" ({_ci_text(ci)})"
    return text


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


def comparison_text(comparison: dict[str, Any] | None) -> str:
    """One line: our model minus the best baseline (and minus every other baseline) with the paired CIs; "" without
    a comparison."""
    if not comparison:
        return ""

    def one(d: dict[str, Any]) -> str:
        ci = d.get("ci95") or [None, None]
        ci_s = "n/a" if ci[0] is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"
        return f"{_signed(d.get('diff'))} (95% CI {ci_s})"

    best, key = comparison["best_baseline"], comparison["metric"]
    others = [f"{n} {one(d)}" for n, d in comparison.get("vs", {}).items() if n != best]
    line = (f"Paired difference in {key}, {comparison['method']} − {best} (best baseline by mean {key}): "
            f"{one(comparison)}")
    if others:
        line += "; vs " + ", ".join(others)
    return line + " (bootstrap over patients within folds, the same resamples for both methods)."


def summary_markdown(summary: dict[str, Any]) -> str:
    keys = _summary_keys(summary.get("task"))
    main = keys[0]
    lines = [f"# {summary.get('cohort')}: {summary.get('task')} ({summary.get('n_folds')} folds)", "",
             "Mean over folds (95% CI: bootstrap over patients within folds).", "",
             "| method | " + " | ".join(keys) + f" | 95% CI ({main}, bootstrap) |",
             "|---|" + "---|" * (len(keys) + 1)]
    for name, m in summary["methods"].items():
        cells = [_fmt(m["mean"].get(main)).strip(), *(_cell(m, k) for k in keys[1:])]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_ci_text(method_ci(m, main))} |")
    if summary.get("oracle"):
        lines.append(f"| oracle (true risk) | {_fmt(summary['oracle']['c_index']).strip()} |" + " |" * len(keys))
    comparison = comparison_text(summary.get("comparison"))
    if comparison:
        lines += ["", comparison]
    lines += ["", "Protocol: " + "; ".join(f"{k}: {v}" for k, v in summary.get("protocol", {}).items())]
    return "\n".join(lines) + "\n"
