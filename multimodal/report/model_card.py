"""A markdown model card written next to every saved pipeline (TRIPOD+AI-style headings)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multimodal import __version__
from multimodal.io import write_text_atomic

if TYPE_CHECKING:
    from multimodal.pipeline import Pipeline


__all__ = ["NA", "fmt_ci", "fmt_metric", "fmt_value", "performance_lines", "recalibration_line", "render_model_card",
           "write_model_card"]

NA = "n/a"
_MEAN, _CI = " (mean over folds)", " 95% CI"


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def fmt_metric(v: Any) -> str:
    """A metric with 3 decimals; "n/a" for None, NaN, ±inf or anything not a number."""
    return f"{float(v):.3f}" if _is_number(v) else NA


def fmt_ci(ci: Any) -> str:
    """A 95% CI ``[lo, hi]`` as ``0.550–0.670``; "n/a" unless both bounds are finite numbers."""
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(_is_number(b) for b in ci):
        return f"{fmt_metric(ci[0])}–{fmt_metric(ci[1])}"
    return NA


def fmt_value(v: Any) -> str:
    """Counts and names as they are, other numbers with 3 decimals, lists comma-separated; "n/a" for missing."""
    if v is None or v == "" or (isinstance(v, float) and not math.isfinite(v)):
        return NA
    if isinstance(v, bool | str):
        return str(v)
    if isinstance(v, Integral):
        return str(int(v))
    if isinstance(v, Real):
        return fmt_metric(v)
    if isinstance(v, list | tuple):
        return ", ".join(fmt_value(x) for x in v) if v else "none"
    return str(v)


def _count(v: Any) -> str:
    """A stream-table size: 0 / missing means "does not apply"."""
    return str(int(v)) if isinstance(v, Integral) and not isinstance(v, bool) and v > 0 else NA


def performance_lines(validation: Mapping[str, Any]) -> list[str]:
    """Markdown bullets of a pipeline's ``metadata["validation"]`` (written by ``api.attach_validation``): each
    metric's mean over folds with its 95% CI in brackets (``0.612 (0.550–0.670)``), other entries formatted alike.
    A ``<metric>_bootstrap`` CI equal to the metric's own CI (its alias in studies where every CI is a bootstrap over
    patients) is not repeated."""
    lines: list[str] = []
    for key, v in validation.items():
        if key.endswith(_CI) and f"{key[: -len(_CI)]}{_MEAN}" in validation:
            continue  # shown with its mean
        if key.endswith(f"_bootstrap{_CI}") and validation.get(key.replace(f"_bootstrap{_CI}", _CI)) == v:
            continue  # the alias of the metric's own CI
        if key.endswith(_MEAN):
            name = key[: -len(_MEAN)]
            ci = validation.get(f"{name}{_CI}")
            if ci is None:
                lines.append(f"- {name} (mean over folds): {fmt_metric(v)}")
            else:
                lines.append(f"- {name} (mean over folds) with 95% CI: {fmt_metric(v)} ({fmt_ci(ci)})")
        elif key.endswith(_CI):
            lines.append(f"- {key}: {fmt_ci(v)}")
        elif key == "study":  # the run folder by name: a card travels, the local path does not
            lines.append(f"- study: run folder `{Path(str(v)).name}`" if v else f"- study: {NA}")
        elif key == "oracle c_index":
            if _is_number(v):  # synthetic cohorts only
                lines.append(f"- oracle c_index (synthetic cohort: the c-index of the generator's true risk, the "
                             f"best any model can reach): {fmt_metric(v)}")
        elif isinstance(v, Mapping):
            lines.append(f"- {key}:")
            lines += [f"  - {k}: {fmt_value(x)}" for k, x in v.items()]
        else:
            lines.append(f"- {key}: {fmt_value(v)}")
    return lines


def recalibration_line(recalibration: Any) -> str:
    """The model-details bullet on the recalibration maps of ``metadata["recalibration"]`` (each part fitted, or the
    reason it was skipped); "" for a pipeline that predates recalibration."""
    if not isinstance(recalibration, Mapping):
        return ""
    if "skipped" in recalibration:
        return f"\n- Probabilities are not recalibrated: {fmt_value(recalibration['skipped'])}."
    parts = []
    for part in ("survival", "response"):
        entry = recalibration.get(part)
        if isinstance(entry, Mapping) and "slope" in entry:
            parts.append(f"{part} slope {fmt_metric(entry['slope'])}")
        elif isinstance(entry, Mapping) and "skipped" in entry:
            parts.append(f"{part} not recalibrated: {fmt_value(entry['skipped'])}")
    detail = f" ({'; '.join(parts)})" if parts else ""
    return (f"\n- Probabilities are recalibrated on the {fmt_value(recalibration.get('n_val'))} inner-validation "
            f"patients{detail}; risk scores and attributions are the model's own.")


def render_model_card(pipe: Pipeline) -> str:
    m = pipe.metadata
    cfg = pipe.model.config
    streams = "\n".join(
        f"| {s.get('modality', NA)} | {s.get('kind', NA)} | {_count(s.get('feature_dim'))} | "
        f"{_count(s.get('num_slots'))} | {_count(s.get('vocab_size'))} |" for s in cfg.streams
    )
    perf_lines = "\n".join(performance_lines(m.get("validation") or {})) or (
        "- see the cross-validation summary of the study")
    edges = ", ".join(f"{float(e):.1f}" if _is_number(e) else NA for e in cfg.bin_edges or [])
    edges = f"{edges} {m.get('time_unit') or ''}".strip() if edges else "none"
    arms = fmt_value(list(m.get("treatment_arms") or []))
    n_train, n_val, epoch, seed = (fmt_value(m.get(k)) for k in ("n_train", "n_val", "best_epoch", "seed"))
    score = fmt_metric(m.get("best_val_score"))
    n_avg = m.get("averaged_epochs")
    averaged = f"; weights averaged over that epoch and the next {int(n_avg) - 1}" if isinstance(n_avg, int) \
        and n_avg > 1 else ""
    members = m.get("ensemble") or []
    ensemble = (f"\n- Deep ensemble of {len(members)} members trained from seeds "
                f"{fmt_value([e.get('seed') for e in members])} (selected epochs "
                f"{fmt_value([e.get('best_epoch') for e in members])});\n  predictions and attributions are the "
                "members' mean.") if members else ""
    recalibrated = recalibration_line(m.get("recalibration"))
    refs = m.get("attribution_reference") or {}
    reference = (f"\n- Genomic attributions in reports are read against the mean attribution of "
                 f"{max(int(r.get('n_patients', 0)) for r in refs.values())} inner-validation patients\n"
                 "  (what sets a patient apart from them; docs/explainability.md).") if refs else ""
    return f"""# Model card — {m.get('cohort', 'cohort')} ({m.get('task', 'survival')})

**Research use only. Not a medical device; not for clinical decision making.**

## Model details
- Package: precision-multimodal {__version__}; architecture: latent cross-attention fusion
  (d_model {cfg.d_model}, depth {cfg.depth}, heads {cfg.num_heads}, latents {cfg.num_latents}).
- Survival head: {cfg.survival} (bins: {len(cfg.bin_edges or []) + 1}, edges {edges});
  response classes: {cfg.response_classes}; treatment arms: {arms}.
- Trained on {n_train} patients; early stopping on {n_val} inner-validation patients
  (selected epoch {epoch}, inner-validation score {score}{averaged}). Seed {seed}.{recalibrated}{ensemble}{reference}

## Inputs
| modality | kind | feature dim | slots | vocabulary |
|---|---|---|---|---|
{streams}

Any modality may be missing for a patient; the model then uses a learned "missing" token for it.

## Intended use
Estimating survival risk and treatment-response probability for research cohorts resembling the training cohort.

## Performance
{perf_lines}

## Limitations
- Validated only on the cohort named above; performance on other sites, scanners, encoders or populations is unknown.
- Attributions explain the model, not the disease: they are not causal. Against planted truth (docs/explainability.md)
  patch and EHR attributions found the causal inputs, and pathways ranked by the spread of their attributions over
  patients put two or three of three causal pathways in the top five: read a report's top pathways as hypotheses.
- Survival probabilities are discrete-time estimates at the bin edges; calibration can drift across populations.
"""


def write_model_card(directory: Path, pipe: Pipeline) -> Path:
    return write_text_atomic(Path(directory) / "MODEL_CARD.md", render_model_card(pipe))
