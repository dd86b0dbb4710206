"""A markdown model card written next to every saved pipeline (TRIPOD+AI-style headings)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from multimodal import __version__
from multimodal.io import write_text_atomic

if TYPE_CHECKING:
    from multimodal.pipeline import Pipeline


def render_model_card(pipe: Pipeline) -> str:
    m = pipe.metadata
    cfg = pipe.model.config
    streams = "\n".join(
        f"| {s['modality']} | {s['kind']} | {s.get('feature_dim', '')} | {s.get('num_slots', '') or ''} | "
        f"{s.get('vocab_size', '') or ''} |" for s in cfg.streams
    )
    perf = m.get("validation", {})
    perf_lines = "\n".join(f"- {k}: {v}" for k, v in perf.items()) or "- see the cross-validation summary of the study"
    return f"""# Model card — {m.get('cohort', 'cohort')} ({m.get('task', 'survival')})

**Research use only. Not a medical device; not for clinical decision making.**

## Model details
- Package: precision-multimodal {__version__}; architecture: latent cross-attention fusion
  (d_model {cfg.d_model}, depth {cfg.depth}, heads {cfg.num_heads}, latents {cfg.num_latents}).
- Survival head: {cfg.survival} (bins: {len(cfg.bin_edges or []) + 1}, edges {cfg.bin_edges} {m.get('time_unit', '')});
  response classes: {cfg.response_classes}; treatment arms: {m.get('treatment_arms', [])}.
- Trained on {m.get('n_train')} patients; early stopping on {m.get('n_val')} inner-validation patients
  (selected epoch {m.get('best_epoch')}, inner-validation score {m.get('best_val_score')}). Seed {m.get('seed')}.

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
- Attributions explain the model, not the disease: they are not causal.
- Survival probabilities are discrete-time estimates at the bin edges; calibration can drift across populations.
"""


def write_model_card(directory: Path, pipe: Pipeline) -> Path:
    return write_text_atomic(Path(directory) / "MODEL_CARD.md", render_model_card(pipe))
