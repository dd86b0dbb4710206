"""Generate docs/config-reference.md from the config classes (``multimodal.config.config_fields`` on
``multimodal.experiment.ExperimentConfig``).

    python docs/gen_config_reference.py           # rewrite docs/config-reference.md
    python docs/gen_config_reference.py --check   # exit 1 if the committed file differs from the generated one

Field help comes from, in order: the dataclass field's ``metadata["help"]``, the ``Attributes:`` / ``Args:`` section
of the class docstring (for the ``model`` section also :class:`multimodal.model.MultimodalConfig`, which
``ModelConfig`` maps onto), then :data:`FALLBACK_HELP` below for classes that do not document their fields yet.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent / "config-reference.md"

#: Help for fields whose class does not document them (yet). Keys are dotted names; a test checks they all exist.
FALLBACK_HELP: dict[str, str] = {
    "name": "experiment name; recorded in run.json, summaries and the model card",
    "seed": "base seed: folds (with evaluation.split_seed), inner split, initialisation, data order "
            "(fold k uses seed + k)",
    "task": "`survival`, `response` (needs a response column) or `both` (multitask)",
    "data.layout": "`manifest` (a cohort manifest YAML, see data-formats.md), `tcga` (PORPOISE/MCAT tables under "
                   "`root`) or `tcga_response` (TCGA-CDR first-course response)",
    "data.manifest": "path of the manifest YAML (layout `manifest`); relative to the working directory",
    "data.root": "data root holding `tcga_porpoise/` (layouts `tcga`, `tcga_response`), e.g. `../shared/data`",
    "data.cohort": "TCGA cohort name, e.g. `blca`, `brca`, `kirc` (case-insensitive)",
    "data.splits": "`auto`: the cohort's external split files when it has them (manifest `splits:`, PORPOISE for "
                   "`tcga`), else stratified k-fold; `kfold`: always stratified k-fold; `porpoise` / `mmp`: those "
                   "published TCGA folds",
    "model.num_bins": "discrete-time bins; cut at quantiles of the training event times",
    "training.epochs": "maximum epochs (early stopping may end sooner)",
    "training.batch_size": "patients per optimizer step (per process)",
    "training.lr": "AdamW learning rate (linear warm-up, then cosine decay)",
    "training.weight_decay": "AdamW weight decay (not applied to biases, norms, embeddings, latents)",
    "training.grad_accum": "gradient accumulation steps (effective batch = batch_size × grad_accum × processes)",
    "training.mixed_precision": "`no` or `bf16` autocast; set it here, not with `accelerate launch --mixed_precision`",
    "training.max_grad_norm": "gradient clipping norm (0 = off)",
    "training.warmup_frac": "fraction of the optimizer steps used for linear warm-up",
    "training.val_fraction": "share of each training fold held out (stratified) as inner validation for early "
                             "stopping; the reporting fold is never used",
    "training.patience": "epochs without improvement of `select_metric` before stopping",
    "training.select_metric": "epoch-selection rule on the inner validation: `c_index` (Harrell), `loss`, `auroc`",
    "training.checkpoint_every": "also checkpoint every N optimizer steps (0 = at epoch ends only) when training is "
                                 "given a checkpoint folder (`multimodal.training.fit_model(out_dir=...)`); "
                                 "`multimodal cv` resumes fold by fold instead",
    "training.eval_batch_size": "patients per forward pass at prediction time",
    "training.num_workers": "DataLoader worker processes",
    "training.bucket_factor": "bag-size bucketing: batches are drawn from pools of batch_size × bucket_factor "
                              "patients sorted by token count (less padding)",
    "training.progress": "progress bars (main process only)",
    "evaluation.folds": "k of the stratified k-fold when the cohort has no external split files",
    "evaluation.max_folds": "run only the first N folds (0 = all); for quick runs",
    "evaluation.split_seed": "added to `seed` for the k-fold split",
    "evaluation.horizons": "time points (in the cohort's time unit) for time-dependent AUC; empty = quantiles of the "
                           "test event times",
    "evaluation.calibration_horizon": "horizon of the calibration table; null = median test event time",
    "evaluation.bootstrap": "bootstrap resamples for the 95% CIs (0 = no CIs)",
    "evaluation.baselines": "baselines on the same folds: survival `coxph_clinical`, `coxnet`, `rsf`; response "
                            "`logistic_clinical`, `enet_logistic`, `random_forest`",
    "evaluation.ablations": "also train our model on each modality alone (with two or more modalities)",
}


def docstring_fields(cls: type) -> dict[str, str]:
    """``{field: help}`` from the ``Attributes:`` / ``Args:`` sections of a Google-style class docstring."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    in_section, current = False, None
    for line in doc.splitlines():
        if re.fullmatch(r"(Attributes|Args|Arguments):\s*", line):
            in_section, current = True, None
            continue
        if in_section and line and not line.startswith(" "):
            in_section, current = False, None
        if not in_section or not line.strip():
            continue
        m = re.match(r"^ {4}([A-Za-z_][\w /]*?):\s*(.*)$", line)
        if m and not line.startswith("     "):
            names = [n.strip() for n in m.group(1).split("/")]
            current = names
            for n in names:
                out[n] = m.group(2).strip()
        elif current:
            for n in current:
                out[n] = (out[n] + " " + line.strip()).strip()
    return out


def _leaf_classes(cls: type, prefix: str = "") -> dict[str, type]:
    """dotted section prefix -> config class, for ``cls`` and every nested config section."""
    out = {prefix: cls}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        for arg in typing.get_args(tp) or (tp,):
            if dataclasses.is_dataclass(arg):
                out.update(_leaf_classes(arg, f"{prefix}{f.name}."))
    return out


def _value(v: Any) -> str:
    if v is None:
        return "`null`"
    if v == "" or v == []:
        return "`''`" if v == "" else "`[]`"
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000, allow_unicode=True).strip()
    text = text.removesuffix("...").strip()
    return f"`{text}`"


def _markdown(text: str) -> str:
    """reST roles and double backticks of docstrings as plain markdown code spans."""
    role = r":(?:class|func|meth|attr|data|mod):`~?([\w.]+)`"
    text = re.sub(role, lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return text.replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    from multimodal.config import config_fields
    from multimodal.experiment import ExperimentConfig
    from multimodal.model import MultimodalConfig

    classes = _leaf_classes(ExperimentConfig)
    docs = {prefix: docstring_fields(c) for prefix, c in classes.items()}
    docs["model."] = {**docstring_fields(MultimodalConfig), **docs["model."]}
    meta_help = {}
    for prefix, c in classes.items():
        for f in dataclasses.fields(c):
            if f.metadata.get("help"):
                meta_help[prefix + f.name] = f.metadata["help"]

    sections: dict[str, list[str]] = {}
    for name, type_name, default, help_text in config_fields(ExperimentConfig):
        prefix = name.rsplit(".", 1)[0] + "." if "." in name else ""
        leaf = name.rsplit(".", 1)[-1]
        text = help_text or meta_help.get(name) or docs.get(prefix, {}).get(leaf) or FALLBACK_HELP.get(name, "")
        row = f"| `{name}` | `{_cell(type_name)}` | {_cell(_value(default))} | {_cell(_markdown(text))} |"
        sections.setdefault(prefix.rstrip(".") or "(top level)", []).append(row)

    lines = [
        "# Configuration reference",
        "",
        "<!-- GENERATED by docs/gen_config_reference.py from multimodal.experiment.ExperimentConfig: do not edit by "
        "hand; run `.venv/bin/python docs/gen_config_reference.py` (tests/docs/test_config_reference.py fails when "
        "this file is stale). -->",
        "",
        "One experiment YAML loads into one typed, frozen `ExperimentConfig`",
        "(`multimodal.experiment.load_experiment`).",
        "Unknown keys are errors with a did-you-mean; every value is type-checked. Any field can be overridden on the",
        "command line with `--set section.field=value` (values are parsed as YAML: `--set training.epochs=5`,",
        "`--set \"evaluation.baselines=[coxph_clinical, rsf]\"`). A modality is used when its `adapters.<modality>`",
        "section is present (`clinical: {}` turns on the clinical adapter with its defaults); `--set",
        "adapters.<modality>.<field>=...` on an absent section turns that modality on.",
        "",
        "Relative paths (`data.manifest`, `data.root`) are resolved against the working directory; gene-set files",
        "(`adapters.genomics.gene_sets`) against the cohort folder (the manifest's folder, or `data.root`).",
        "",
    ]
    for title, rows in sections.items():
        lines += [f"## `{title}`" if title != "(top level)" else "## Top level", "",
                  "| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 if docs/config-reference.md is stale")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python docs/gen_config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
