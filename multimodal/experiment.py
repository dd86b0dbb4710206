"""The experiment configuration tree: one YAML file ↔ one typed, frozen :class:`ExperimentConfig`.

Sections: ``data`` (where the cohort comes from), ``adapters`` (one optional section per modality; a modality is used
when its section is present), ``model``, ``training``, ``evaluation``. Unknown keys are errors with a did-you-mean;
``--set a.b=value`` overrides must name existing fields and are type-checked.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from multimodal.config import apply_overrides, from_dict, load_yaml, safe_yaml
from multimodal.errors import ConfigError, InputError
from multimodal.pipeline import ModelConfig
from multimodal.training import TrainingConfig


def _adapter_config(module: str, name: str) -> type:
    for mod in (f"multimodal.adapters.{module}", "multimodal.adapters.clinical"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError:
            continue
        if hasattr(m, name):
            return getattr(m, name)
    msg = f"adapter config {name} not found"
    raise ImportError(msg)


PathologyAdapterConfig = _adapter_config("pathology", "PathologyAdapterConfig")
GenomicsAdapterConfig = _adapter_config("genomics", "GenomicsAdapterConfig")
EHRAdapterConfig = _adapter_config("ehr", "EHRAdapterConfig")
ClinicalAdapterConfig = _adapter_config("ehr", "ClinicalAdapterConfig")


@dataclass(frozen=True)
class AdaptersConfig:
    """One optional section per modality; the section name is both the modality and the registered adapter.

    A modality is used when its section is present (``clinical: {}`` turns the clinical adapter on with its defaults).

    Attributes:
        pathology: slide patch-embedding bags (:class:`PathologyAdapterConfig`); null = modality off.
        genomics: expression and mutations as pathway / gene tokens (:class:`GenomicsAdapterConfig`); null = off.
        ehr: MEDS events before the prediction time (:class:`EHRAdapterConfig`); null = off.
        clinical: the clinical table as static tokens (:class:`ClinicalAdapterConfig`); null = off.
    """

    pathology: PathologyAdapterConfig | None = None  # type: ignore[valid-type]
    genomics: GenomicsAdapterConfig | None = None  # type: ignore[valid-type]
    ehr: EHRAdapterConfig | None = None  # type: ignore[valid-type]
    clinical: ClinicalAdapterConfig | None = None  # type: ignore[valid-type]

    def enabled(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class DataConfig:
    """Where the cohort comes from: a manifest, or a TCGA table layout under ``root`` with a cohort name.

    Attributes:
        layout: ``manifest`` (a cohort manifest YAML, see data-formats.md), ``tcga`` (PORPOISE/MCAT tables under
            ``root``) or ``tcga_response`` (TCGA-CDR first-course response).
        manifest: path of the manifest YAML (layout ``manifest``); relative to the working directory.
        root: data root holding ``tcga_porpoise/`` (layouts ``tcga``, ``tcga_response``), e.g. ``../shared/data``.
        cohort: TCGA cohort name, e.g. ``blca``, ``brca``, ``kirc`` (case-insensitive).
        splits: ``auto``: the cohort's external split files when it has them (manifest ``splits:``, PORPOISE for
            ``tcga``), else stratified k-fold; ``kfold``: always stratified k-fold; ``porpoise`` / ``mmp``: those
            published TCGA folds.
    """

    layout: Literal["manifest", "tcga", "tcga_response"] = "manifest"
    manifest: str | None = None
    root: str | None = None
    cohort: str | None = None
    splits: Literal["auto", "kfold", "porpoise", "mmp"] = "auto"


@dataclass(frozen=True)
class EvaluationConfig:
    """Cross-validation protocol: folds, metrics, baselines and ablations on identical folds.

    Attributes:
        folds: k of the stratified k-fold when the cohort has no external split files.
        max_folds: run only the first N folds (0 = all); for quick runs.
        split_seed: added to ``seed`` for the k-fold split.
        horizons: time points (in the cohort's time unit) for time-dependent AUC; empty = quantiles of the test
            event times.
        calibration_horizon: horizon of the calibration table; null = median test event time.
        bootstrap: bootstrap resamples for the 95% CIs (0 = no CIs).
        baselines: baselines on the same folds, fed pooled features of every enabled modality (slide PCA and
            phenotype fractions, gene-set scores, EHR summaries, clinical; ``*_clinical``: clinical only): survival
            ``coxph_clinical``, ``coxnet``, ``rsf``, ``gbsa`` (gradient-boosted Cox), ``attention_mil`` (gated-attention
            MIL late fusion on the raw patches); response ``logistic_clinical``, ``enet_logistic``, ``random_forest``,
            ``gradient_boosting``, ``attention_mil``. The default is the survival set.
        ablations: also train our model on each modality alone (with two or more modalities).
        drop_test_modality: a modality hidden, at prediction only, from a random share of each reporting fold's
            patients (``drop_test_fraction``): our model's fold record gains ``c_index_dropped`` and the hidden
            patients, so a study shows how much that modality carries (null = off).
        drop_test_fraction: share of the reporting fold's patients (with that modality) it is hidden from.
    """

    folds: int = 5
    max_folds: int = 0
    split_seed: int = 0
    horizons: tuple[float, ...] = ()
    calibration_horizon: float | None = None
    bootstrap: int = 200
    baselines: tuple[str, ...] = ("coxph_clinical", "coxnet", "rsf", "gbsa", "attention_mil")
    ablations: bool = True
    drop_test_modality: str | None = None
    drop_test_fraction: float = 0.5


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: one YAML file, loaded by :func:`load_experiment` (docs/config-reference.md lists every key).

    Attributes:
        name: experiment name; recorded in run.json, summaries and the model card.
        seed: base seed: folds (with evaluation.split_seed), inner split, initialisation, data order (fold k uses
            seed + k).
        task: ``survival``, ``response`` (needs a response column) or ``both`` (multitask).
        data: where the cohort comes from (:class:`DataConfig`).
        adapters: one optional section per modality (:class:`AdaptersConfig`).
        model: the fusion model and its heads (:class:`~multimodal.pipeline.ModelConfig`).
        training: optimisation, early stopping and data loading (:class:`~multimodal.training.TrainingConfig`).
        evaluation: the cross-validation protocol (:class:`EvaluationConfig`).
    """

    name: str = "experiment"
    seed: int = 0
    task: Literal["survival", "response", "both"] = "survival"
    data: DataConfig = field(default_factory=DataConfig)
    adapters: AdaptersConfig = field(default_factory=AdaptersConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


def manifest_named_by(path: str | Path) -> tuple[str, bool]:
    """(``path``, False) for a cohort manifest; (its ``data.manifest``, True) for an experiment config.

    An experiment config of a table layout (TCGA) names no manifest: a clear InputError says what to do instead.
    An unreadable file is returned as is, for the manifest validator to report.
    """
    import yaml

    p = Path(path)
    try:
        data = safe_yaml(p.read_text()) if p.is_file() else None
    except (yaml.YAMLError, UnicodeDecodeError):
        return str(path), False
    if not (isinstance(data, dict) and isinstance(data.get("data"), dict) and "patients" not in data):
        return str(path), False
    layout, manifest = data["data"].get("layout", "manifest"), data["data"].get("manifest")
    if layout == "manifest" and manifest:
        return str(manifest), True
    raise InputError(f"this is an experiment config (data.layout {layout!r}), not a cohort manifest", file=p,
                     field="data.layout", hint="validate the manifest a config names (data.manifest); table layouts "
                                               "(tcga, tcga_response) are checked when `multimodal cv` loads them")


def load_experiment(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Load an experiment YAML and apply ``--set`` overrides."""
    data = load_yaml(path)
    cfg = from_dict(ExperimentConfig, data, _file=str(path))
    cfg = apply_overrides(cfg, overrides)
    if not cfg.adapters.enabled():
        raise ConfigError("no modality enabled", file=path, field="adapters",
                          hint="add at least one of: pathology, genomics, ehr, clinical")
    return cfg


def load_cohort(data: DataConfig, *, base: Path | None = None):  # -> Cohort
    """The cohort named by the ``data`` section."""
    from multimodal.cohorts.cohort import Cohort

    def resolve(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() or base is None else (base / q)

    if data.layout == "manifest":
        if not data.manifest:
            raise ConfigError("data.manifest is required with layout 'manifest'", field="data.manifest")
        return Cohort.from_manifest(resolve(data.manifest))
    if not data.root or not data.cohort:
        raise ConfigError(f"data.root and data.cohort are required with layout {data.layout!r}", field="data.root")
    if data.layout == "tcga_response":
        from multimodal.cohorts.tcga_response import load_tcga_response_cohort

        return load_tcga_response_cohort(resolve(data.root), data.cohort)
    from multimodal.cohorts.tcga import load_tcga_cohort

    splits = None if data.splits == "kfold" else ("porpoise" if data.splits == "auto" else data.splits)
    return load_tcga_cohort(resolve(data.root), data.cohort, splits=splits)


def make_adapters(cfg: ExperimentConfig, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Fresh (unfitted) adapters for the enabled modalities (or the subset ``only``)."""

    enabled = cfg.adapters.enabled()
    names = list(only) if only is not None else list(enabled)
    out = {}
    for name in names:
        if name not in enabled:
            raise InputError(f"modality {name!r} is not enabled in adapters", field="adapters")
        ad_cfg = enabled[name]
        from multimodal.registry import ADAPTERS, _load_builtin

        _load_builtin()
        out[name] = ADAPTERS.get(name)(ad_cfg)
    return out
