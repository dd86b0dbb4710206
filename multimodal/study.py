"""Cross-validated studies (``multimodal cv``): our model, unimodal ablations and baselines on identical folds.

Protocol (declared, leakage-safe):

* patient-level folds: the cohort's external split files when it has them (e.g. PORPOISE/MCAT 5-fold), else
  stratified k-fold on the event indicator;
* inside each training fold an inner validation split (stratified, ``training.val_fraction``) is carved out for
  early stopping; adapters and baselines' preprocessing are fitted on training patients only;
* the reporting fold (``val`` of the split file) is never used for model selection;
* per-fold predictions and metrics are saved as the run goes; a re-run of the same command resumes fold by fold.

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
            self._folds = self.folds()
        return self._folds

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
        return MethodResult(name, pred, {"best_epoch": fit.best_epoch, "inner_val_score": fit.best_score, **extra,
                                         "_pipe": pipe, "_train_pred": train_pred})

    def _fit_baseline(self, name: str, fold: Fold) -> MethodResult:
        from multimodal.baselines import create_baseline, make_tabular

        c = self.cohort
        train, test = self._eligible(fold.train), self._eligible(fold.val)
        mods = ("clinical",) if name.endswith("_clinical") else ("clinical", "genomics")
        mods = tuple(m for m in mods if m in c.modalities)
        if not mods:
            raise InputError(f"baseline {name!r} needs clinical or genomics data", field="evaluation.baselines")
        x_tr = make_tabular(c, train, modalities=mods)
        x_te = make_tabular(c, test, modalities=mods)
        model = create_baseline(name)
        if self.config.task == "response":
            y = c.patients.loc[train, "response"].astype(int).to_numpy()
            model.fit(x_tr, y)
            prob = model.predict_proba(x_te)
            prob = prob[:, 1] if np.ndim(prob) == 2 else prob
            return MethodResult(name, pd.DataFrame({"patient_id": test, "risk": prob, "response_prob": prob}), {})
        t, e = c.survival_arrays(train)
        model.fit(x_tr, t, e)
        return MethodResult(name, pd.DataFrame({"patient_id": test, "risk": model.predict_risk(x_te)}),
                            {"_model": model, "_x_test": x_te})

    def _score(self, res: MethodResult, fold: Fold) -> dict[str, Any]:
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
        h = self.config.evaluation.calibration_horizon or (float(np.median(t[e])) if e.any() else None)
        if surv is not None and h is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    s_h = self._survival_grid(res, np.array([h]), tr_t, tr_e)[:, 0]
                    m["calibration"] = calibration_at(t, e, s_h, h)
                except Exception as exc:  # calibration is descriptive; never fail a study on it
                    m["calibration"] = {"error": str(exc)}
        if self.config.task == "both" and "response_prob" in res.predictions.columns:
            # survival + response: the response metrics of the patients whose response is known
            r = c.patients.loc[ids, "response"]
            known = r.notna().to_numpy()
            y = r[known].astype(int).to_numpy()
            if known.any() and len(np.unique(y)) == 2:
                m.update(response_metrics(y, res.predictions["response_prob"].to_numpy(float)[known]))
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
        from multimodal.metrics import harrell_c, summarize_folds

        keys = _keys(self.config.task)
        n_boot = self.config.evaluation.bootstrap
        out: dict[str, Any] = {"task": self.config.task, "cohort": self.cohort.name, "n_folds": len(folds),
                               "protocol": self._protocol(), "methods": {}}
        for name, folds_m in per_method.items():
            agg = summarize_folds(folds_m)
            mean = {k: agg["mean"].get(k) for k in keys}
            ci = {k: agg["ci95"].get(k) for k in keys}
            # bootstrap CI of the mean main metric: resample patients within each fold, average the fold metrics
            key = keys[0]
            sub = preds[preds["method"] == name]
            if n_boot and not sub.empty:
                ci[f"{key}_bootstrap"] = _fold_bootstrap(sub, key, n_boot, self.config.seed)
            out["methods"][name] = {"folds": folds_m, "mean": mean, "std": {k: agg["std"].get(k) for k in keys}, "ci95": ci}
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
        }


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


def _fold_bootstrap(sub: pd.DataFrame, key: str, n_boot: int, seed: int) -> list[float | None]:
    from multimodal.metrics import UndefinedMetricError, auroc, harrell_c

    rng = np.random.default_rng(seed)
    groups = [g for _, g in sub.groupby("fold")]
    vals = []
    for _ in range(n_boot):
        fold_vals = []
        for g in groups:
            idx = rng.integers(0, len(g), len(g))
            gg = g.iloc[idx]
            try:
                if key == "auroc":
                    fold_vals.append(auroc(gg["response"].to_numpy(int), gg["response_prob"].to_numpy(float)))
                else:
                    fold_vals.append(harrell_c(gg["time"].to_numpy(float), gg["event"].to_numpy(bool), gg["risk"].to_numpy(float)))
            except (UndefinedMetricError, ValueError):
                continue
        if fold_vals:
            vals.append(float(np.mean(fold_vals)))
    if not vals:
        return [None, None]
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return [float(lo), float(hi)]


def _fmt(v: Any) -> str:
    return "  n/a" if v is None else f"{float(v):.3f}"


def _keys(task: str | None) -> tuple[str, ...]:
    """Summary metrics of a task (the first one gets the bootstrap CI)."""
    if task == "response":
        return RESPONSE_KEYS
    return SURVIVAL_KEYS + (("auroc", "auprc") if task == "both" else ())


def summary_markdown(summary: dict[str, Any]) -> str:
    keys = _keys(summary.get("task"))
    main = keys[0]
    lines = [f"# {summary.get('cohort')}: {summary.get('task')} ({summary.get('n_folds')} folds)", "",
             "| method | " + " | ".join(keys) + f" | 95% CI ({main}, bootstrap) |",
             "|---|" + "---|" * (len(keys) + 1)]
    for name, m in summary["methods"].items():
        ci = m["ci95"].get(f"{main}_bootstrap") or [None, None]
        ci_s = "n/a" if ci[0] is None else f"{ci[0]:.3f}–{ci[1]:.3f}"
        lines.append(f"| {name} | " + " | ".join(_fmt(m["mean"].get(k)).strip() for k in keys) + f" | {ci_s} |")
    if summary.get("oracle"):
        lines.append(f"| oracle (true risk) | {_fmt(summary['oracle']['c_index']).strip()} |" + " |" * len(keys))
    lines += ["", "Protocol: " + "; ".join(f"{k}: {v}" for k, v in summary.get("protocol", {}).items())]
    return "\n".join(lines) + "\n"
