"""Reference attributions: each fixed token's mean attribution over reference patients, to read a patient against.

Integrated Gradients attribute f(x) − f(baseline) from an all-zero input (every standardized value at its training
mean), which no patient resembles. The model is not additive in its tokens (each slot encoder ends in a LayerNorm,
which responds to the size of its inputs), so a pathway the model does not use to tell patients apart can carry an
attribution of the same sign and size for every patient, and would lead every report's list. Subtracting each fixed
token's (pathway's, gene family's, gene's) mean attribution over reference patients — the pipeline's inner
validation — leaves what sets this patient apart from them (were every token centered, the attributions would add up
to f(x) minus the reference patients' mean f: the reading of SHAP values against a background cohort). Event tokens
(EHR events, clinical factors, named with their values) and patches differ from patient to patient and are not
centered.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from multimodal.data import collate_patients
from multimodal.errors import IntegrityError
from multimodal.explain.attribution import TokenAttributions, integrated_gradients

if TYPE_CHECKING:
    from multimodal.cohorts.cohort import Cohort
    from multimodal.pipeline import Pipeline

#: Reference patients at most (the first ones of the inner validation) and IG steps: a mean, not a per-patient reading.
MAX_REFERENCE_PATIENTS = 32
REFERENCE_STEPS = 8


def explain_target(model: Any) -> str:
    """What explanations attribute: the survival risk, or the response probability for a response-only model."""
    return "risk" if model.config.survival != "none" else "response"


def attribution_reference(pipe: Pipeline, cohort: Cohort, patient_ids: list[str], *,
                          max_patients: int = MAX_REFERENCE_PATIENTS, n_steps: int = REFERENCE_STEPS) -> dict[str, Any]:
    """``{modality: {"n_patients", "target", "tokens": {name: mean}, "members": {name: [mean per member]}}}`` for the
    model's slot modalities, over the first ``max_patients`` of ``patient_ids`` that have the modality."""
    model = pipe.model.eval()
    slots = [m for m, s in model.specs.items() if s["kind"] == "slots"]
    if not slots or not patient_ids:
        return {}
    pipe.bind(cohort)
    target = explain_target(model)
    sums: dict[str, dict[str, list[np.ndarray]]] = {m: defaultdict(list) for m in slots}
    members: dict[str, dict[str, list[np.ndarray]]] = {m: defaultdict(list) for m in slots}
    ds = pipe.dataset(cohort, list(patient_ids)[:max_patients])
    for i in range(len(ds)):
        ig = integrated_gradients(model, collate_patients([ds[i]]), target=target, n_steps=n_steps)
        for m in slots:
            ta = ig.tokens.get(m)
            if ta is None or not ta.names:
                continue
            for j, name in enumerate(ta.names):
                sums[m][name].append(np.asarray(ta.scores[j], dtype=float))
                if ta.member_scores is not None:
                    members[m][name].append(np.asarray(ta.member_scores[j], dtype=float))
    out: dict[str, Any] = {}
    for m in slots:
        if not sums[m]:
            continue
        tokens = {k: float(np.mean(v)) for k, v in sums[m].items()}
        mems = {k: np.mean(np.stack(v), axis=0) for k, v in members[m].items()}
        keep = [k for k, v in tokens.items() if np.isfinite(v) and (k not in mems or np.isfinite(mems[k]).all())]
        out[m] = {"n_patients": max(len(v) for v in sums[m].values()), "target": target,
                  "tokens": {k: tokens[k] for k in keep},  # a non-finite mean is left out: that token stays plain
                  "members": {k: mems[k].round(8).tolist() for k in keep if k in mems}}
    return out


def check_reference(metadata: dict[str, Any], where: str = "pipeline.json") -> None:
    """IntegrityError naming ``where`` when the metadata's ``attribution_reference`` is something else than
    :func:`attribution_reference` writes (none at all is fine: pipelines from earlier versions)."""
    refs = metadata.get("attribution_reference")
    if refs is None:
        return

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))

    ok = isinstance(refs, dict) and all(
        isinstance(r, dict) and isinstance(r.get("target"), str) and number(r.get("n_patients"))
        and isinstance(r.get("tokens"), dict) and all(number(v) for v in r["tokens"].values())
        and isinstance(r.get("members", {}), dict)
        and all(isinstance(v, list) and all(number(x) for x in v) for v in r.get("members", {}).values())
        for r in refs.values())
    if not ok:
        msg = (f"{where}: metadata 'attribution_reference' is not the per-modality table of mean attributions that "
               "training writes; re-train the pipeline or restore pipeline.json from a trusted copy")
        raise IntegrityError(msg)


def read_reference(metadata: dict[str, Any], target: str) -> dict[str, Any]:
    """The metadata's ``attribution_reference`` entries for ``target`` (``{}`` without one), checked first."""
    check_reference(metadata)
    return {m: r for m, r in (metadata.get("attribution_reference") or {}).items() if r["target"] == target}


def centered(ta: TokenAttributions, reference: dict[str, Any] | None) -> TokenAttributions:
    """``ta`` minus the reference mean of each token (and member) it names; tokens without a reference keep theirs."""
    if not reference:
        return ta
    ref_tok, ref_mem = reference.get("tokens", {}), reference.get("members", {})
    scores = np.array([s - ref_tok.get(n, 0.0) for s, n in zip(ta.scores, ta.names, strict=True)], dtype=float)
    member_scores = ta.member_scores
    if member_scores is not None:
        member_scores = np.array(member_scores, dtype=float, copy=True)
        for j, n in enumerate(ta.names):
            ref = ref_mem.get(n)
            if ref is not None and len(ref) == member_scores.shape[1]:
                member_scores[j] -= np.asarray(ref, dtype=float)
    return replace(ta, scores=scores, member_scores=member_scores)
