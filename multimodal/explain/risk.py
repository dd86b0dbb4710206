"""Compute a patient's :class:`RiskResult`: prediction with uncertainty, percentile, per-arm response,
Shapley modality contributions and per-token evidence from integrated gradients."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from multimodal import __version__
from multimodal.calibration import recalibrate_response, recalibrate_survival, recalibrated_parts
from multimodal.data import PatientDataset, collate_patients
from multimodal.errors import InputError
from multimodal.explain.attribution import integrated_gradients, modality_shapley
from multimodal.explain.genes import gene_effects, set_scores, shares_members
from multimodal.explain.reference import centered, explain_target, read_reference
from multimodal.explain.result import RiskResult
from multimodal.model import MultimodalEnsemble
from multimodal.model.fusion import CrossAttention, SelfAttention

if TYPE_CHECKING:
    from multimodal.cohorts.cohort import Cohort
    from multimodal.pipeline import Pipeline


def pseudonym(patient_id: str, salt: str = "") -> str:
    """A stable pseudonym that does not reveal the patient id."""
    return "PT-" + hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()[:10].upper()


#: Cross-validated metrics whose 95% CI reaching 0.5 means "not distinguishable from chance", and what it concerns.
_CHANCE_CHECKS = {"c_index": "survival risk estimates", "auroc": "treatment-response probabilities"}


def performance_limitations(validation: dict[str, Any] | None) -> list[str]:
    """Limitations a report must state because the attached cross-validation did not beat chance.

    ``validation`` is a pipeline's ``metadata["validation"]`` (written by ``api.attach_validation``); for each metric
    in ``_CHANCE_CHECKS`` whose 95% CI lower bound is ≤ 0.5 the report says so in plain words.
    """
    out: list[str] = []
    for metric, what in _CHANCE_CHECKS.items():
        ci = (validation or {}).get(f"{metric} 95% CI")
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and ci[0] is not None and float(ci[0]) <= 0.5:
            out.append(f"In cross-validation the {what} were not distinguishable from chance ({metric} 95% CI "
                       f"{float(ci[0]):.2f}–{float(ci[1]):.2f}); do not base decisions on them.")
    return out


def _mc_dropout(model: nn.Module, on: bool) -> None:
    model.eval()
    if on:
        for mod in model.modules():
            if isinstance(mod, (nn.Dropout, CrossAttention, SelfAttention)):
                mod.train()


@torch.no_grad()
def _mc_predictions(model: nn.Module, batch: Any, samples: int, seed: int, tokens: dict | None = None) -> list[Any]:
    """``samples`` forward passes with dropout on; for an ensemble, each member's own passes (members × samples), so
    the band also spans the members' disagreement."""
    g = torch.random.get_rng_state()
    torch.manual_seed(seed)
    outs = []
    members = [(m, model.member_tokens(tokens, k)) for k, m in enumerate(model.members)] \
        if isinstance(model, MultimodalEnsemble) else [(model, tokens)]
    try:
        _mc_dropout(model, True)
        for _ in range(samples):
            for m, mt in members:
                outs.append(m(batch, per_arm=True, token_overrides=mt))
    finally:
        _mc_dropout(model, False)
        torch.random.set_rng_state(g)
    return outs


def explain_patient(
    pipe: Pipeline, cohort: Cohort, patient_id: str, *, horizons: list[float] | None = None, mc_samples: int = 10,
    top_k: int = 10, n_steps: int = 16, seed: int = 0,
) -> RiskResult:
    """Everything the per-patient report shows, for ``patient_id`` of ``cohort``.

    Survival (curve, its MC-dropout band, risks at horizons) and response probabilities go through the pipeline's
    recalibration maps as in :meth:`~multimodal.pipeline.Pipeline.predict` (:mod:`multimodal.calibration`; the band
    maps each dropout sample before its quantiles). The risk score, its percentile / group and the attributions are
    the model's raw output (the maps are monotone and keep every ranking).
    """
    if patient_id not in cohort.patients.index:
        raise InputError("unknown patient id", patient=patient_id, field="patient_id",
                         hint="use an id from the manifest's patient table")
    pipe.bind(cohort)
    model = pipe.model
    model.eval()
    meta = pipe.metadata
    recalibration = meta.get("recalibration")
    target = explain_target(model)  # what the attributions explain: survival risk, or response for response-only
    reference = read_reference(meta, target)  # checked before any work
    ds = PatientDataset(cohort, pipe.adapters, [patient_id], train=False)
    item = ds[0]
    batch = collate_patients([item], num_response_classes=max(int(meta.get("response_classes", 2)), 2),
                             time_unit=cohort.time_unit)
    arms = list(meta.get("treatment_arms", []))
    with torch.no_grad():
        tokens = model.encode_tokens(batch)  # encoders are per token and dropout-free: encode once, reuse below
        out = model(batch, per_arm=True, token_overrides=tokens)
    risk = float(out.risk[0])
    present = {m: bool(v[0]) for m, v in out.present.items()}
    used = [m for m, p in present.items() if p]
    missing = [m for m, p in present.items() if not p]

    # percentile and group against the inner-validation cohort of the pipeline
    ref = np.asarray(meta.get("reference_risks", []), dtype=float)
    percentile = group = None
    if ref.size:
        percentile = float((ref < risk).mean() * 100)
        lo, hi = np.quantile(ref, [1 / 3, 2 / 3])
        group = "low" if risk <= lo else ("high" if risk > hi else "intermediate")

    mc = _mc_predictions(model, batch, mc_samples, seed, tokens) if mc_samples > 0 else []
    time_unit = meta.get("time_unit", cohort.time_unit)
    survival = None
    at_h: list[dict[str, Any]] = []
    cfg = model.config
    if out.survival is not None:
        edges = list(cfg.bin_edges or [])
        s = recalibrate_survival(out.survival[0].numpy()[None], recalibration)[0]
        band = recalibrate_survival(np.stack([o.survival[0].numpy() for o in mc]), recalibration) if mc else s[None]
        t_end = edges + [edges[-1] * 1.5 if edges else 1.0]
        times = [0.0, *t_end]
        survival = {
            "times": times, "survival": [1.0, *s.tolist()],
            "lower": [1.0, *np.quantile(band, 0.05, axis=0).tolist()],
            "upper": [1.0, *np.quantile(band, 0.95, axis=0).tolist()],
            "time_unit": time_unit, "note": "S(t) at the end of each discrete-time bin; band = 90% MC-dropout range"
            + (" over every ensemble member" if isinstance(model, MultimodalEnsemble) else "")
            + ("; recalibrated on the inner-validation patients" if "survival" in recalibrated_parts(recalibration)
               else ""),
        }
        hs = horizons or edges[:3]
        for h in hs:
            def s_at(vals: np.ndarray, h: float = h) -> float:
                return float(np.interp(h, times, [1.0, *vals.tolist()]))

            est = 1 - s_at(s)
            draws = [1 - s_at(b) for b in band]
            at_h.append({"horizon": float(h), "time_unit": time_unit, "risk": est,
                         "lower": float(np.quantile(draws, 0.05)), "upper": float(np.quantile(draws, 0.95))})

    response = []
    if out.response_prob_per_arm is not None:
        probs = recalibrate_response(out.response_prob_per_arm[0, :, -1].numpy(), recalibration)
        draws = recalibrate_response(np.stack([o.response_prob_per_arm[0, :, -1].numpy() for o in mc]),
                                     recalibration) if mc else probs[None]
        for a, p in enumerate(probs):
            response.append({"arm": arms[a] if a < len(arms) else str(a), "probability": float(p),
                             "lower": float(np.quantile(draws[:, a], 0.05)),
                             "upper": float(np.quantile(draws[:, a], 0.95))})
    elif out.response_prob is not None:
        p = float(recalibrate_response(float(out.response_prob[0, -1]), recalibration))
        draws = recalibrate_response(np.array([float(o.response_prob[0, -1]) for o in mc]), recalibration) \
            if mc else np.array([p])
        response.append({"arm": None, "probability": p, "lower": float(np.quantile(draws, 0.05)),
                         "upper": float(np.quantile(draws, 0.95))})

    shap = modality_shapley(model, batch, target=target, token_overrides=tokens)
    ig = integrated_gradients(model, batch, target=target, n_steps=n_steps)
    evidence = _evidence(batch, ig, top_k, reference, target)

    arm_value = cohort.patients.loc[patient_id].get("treatment") if "treatment" in cohort.patients.columns else None
    cutoff = cohort.patients.loc[patient_id].get("prediction_time") if "prediction_time" in cohort.patients.columns else None
    model_hash = meta.get("model_sha256") or _model_hash(model)
    validation = meta.get("validation")
    return RiskResult(
        patient={"pseudonym": pseudonym(patient_id, str(meta.get("cohort", ""))),
                 "data_cutoff": None if cutoff is None or pd.isna(cutoff) else str(pd.Timestamp(cutoff)),
                 "arm": arms[int(arm_value)] if arm_value is not None and not pd.isna(arm_value) and arms else None},
        model={"name": f"precision-multimodal/{meta.get('cohort', 'model')}", "version": __version__,
               "hash": model_hash, "cohort": meta.get("cohort"), "task": meta.get("task"), "time_unit": time_unit,
               "n_train": meta.get("n_train"), "target": target,
               "ensemble_members": int(getattr(model, "num_members", 1)),
               "recalibrated": recalibrated_parts(recalibration)},
        inputs_used=used, inputs_missing=missing, risk_score=risk, percentile=percentile, risk_group=group,
        survival=survival, risks_at_horizons=at_h, response=response,
        modality_contributions={"values": shap["values"], "f_all": shap["f_all"], "f_none": shap["f_none"],
                                "target": target},
        evidence=evidence, validation=validation,
        completeness={"ig_relative_error": ig.completeness_error, "ig_delta": ig.delta},
        limitations=[f"Trained on {meta.get('n_train')} patients of cohort {meta.get('cohort')}.",
                     *performance_limitations(validation)],
    )


def _model_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _evidence(batch: Any, ig: Any, top_k: int, reference: dict[str, Any] | None = None,
              target: str = "risk") -> dict[str, Any]:
    """Top evidence per modality; slot tokens (pathways, genes) are read against ``reference``
    (:mod:`multimodal.explain.reference`) where the pipeline has one, keeping the plain value as
    ``attribution_vs_baseline``."""
    what = "risk" if target == "risk" else "response probability"
    ev: dict[str, Any] = {}
    for m, raw in ig.tokens.items():
        stream = batch.streams[m]
        pmeta = (stream.meta.get("per_patient") or [{}])[0]
        ref = (reference or {}).get(m) if stream.positions is None and stream.features is not None else None
        ta = centered(raw, ref)
        order = np.argsort(-np.abs(ta.scores))
        if stream.positions is not None:  # patches: heatmap + top patches
            mask = stream.mask[0].numpy()
            pos = stream.positions[0].numpy()[mask]
            sidx = stream.slide_index[0].numpy()[mask] if stream.slide_index is not None else np.zeros(len(pos), int)
            slide_ids = list(pmeta.get("slide_ids", []))
            coords0 = pmeta.get("coords_level0")
            coords0 = np.asarray(coords0) if coords0 is not None else None
            heat = []
            for si in np.unique(sidx):
                sel = sidx == si
                heat.append({"slide_id": slide_ids[si] if si < len(slide_ids) else f"slide{si}",
                             "x": pos[sel, 0].astype(int).tolist(), "y": pos[sel, 1].astype(int).tolist(),
                             "value": np.round(ta.scores[sel], 6).tolist()})
            top = []
            for i in order[:top_k]:
                si = int(sidx[i])
                rec = {"slide_id": slide_ids[si] if si < len(slide_ids) else f"slide{si}",
                       "grid_x": int(pos[i, 0]), "grid_y": int(pos[i, 1]), "attribution": float(ta.scores[i])}
                if coords0 is not None and len(coords0) == len(pos):
                    rec["x_level0"], rec["y_level0"] = int(coords0[i, 0]), int(coords0[i, 1])
                top.append(rec)
            ev[m] = {"kind": "patches", "heatmaps": heat, "top_patches": top, "n_patches": int(len(pos))}
        elif stream.features is not None:  # slots: pathways / genes with direction
            ev[m] = _slot_evidence(ta, raw, pmeta.get("members"), top_k, what, with_raw=ref is not None)
            if ref is not None:
                ev[m]["relative_to"] = f"the mean of {int(ref.get('n_patients', 0))} reference patients (inner validation)"
        else:  # events: codes with value and time before prediction
            top = []
            for i in order[:top_k]:
                top.append({"name": ta.names[i], "attribution": float(ta.scores[i]),
                            "direction": _direction(ta.scores[i], what)})
            ev[m] = {"kind": "events", "top": top}
    return ev


def _slot_evidence(ta: Any, raw: Any, members: Any, top_k: int, what: str, *, with_raw: bool) -> dict[str, Any]:
    """Top slot tokens with direction. Overlapping gene sets are scored at gene level (a gene's attribution summed
    over every token carrying it, :mod:`multimodal.explain.genes`), with each token's own attribution kept as
    ``token_attribution``, and the top genes are listed once each."""
    gene_level = (members is not None and ta.member_scores is not None and len(members) == len(ta.names)
                  and shares_members(members))
    effects = gene_effects(ta.member_scores, members) if gene_level else {}
    scores = set_scores(ta.member_scores, members, effects=effects) if gene_level else ta.scores
    raw_scores = set_scores(raw.member_scores, members) if gene_level and with_raw else raw.scores
    top = []
    for i in np.argsort(-np.abs(scores))[:top_k]:
        rec = {"name": ta.names[i], "attribution": float(scores[i]), "direction": _direction(scores[i], what)}
        if with_raw:
            rec["attribution_vs_baseline"] = float(raw_scores[i])
        if gene_level:
            rec["token_attribution"] = float(ta.scores[i])
        if members is not None and ta.member_scores is not None and i < len(members):
            labels = members[i]
            ms = np.array([effects.get(lab, ta.member_scores[i][j]) for j, lab in enumerate(labels)]) if gene_level \
                else ta.member_scores[i][: len(labels)]
            rec["top_members"] = [{"name": labels[j], "attribution": float(ms[j])} for j in np.argsort(-np.abs(ms))[:5]]
        top.append(rec)
    out: dict[str, Any] = {"kind": "slots", "top": top}
    if gene_level:
        out["scoring"] = "gene level: each gene's attribution summed over every gene set that carries it"
        genes = sorted(effects, key=lambda g: -abs(effects[g]))[:top_k]
        out["top_genes"] = [{"name": g, "attribution": effects[g], "direction": _direction(effects[g], what)}
                            for g in genes]
    return out


def _direction(score: float, what: str) -> str:
    return f"raises {what}" if score > 0 else f"lowers {what}"
