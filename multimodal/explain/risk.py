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
from multimodal.data import collate_patients
from multimodal.errors import InputError
from multimodal.explain.attribution import integrated_gradients, modality_shapley
from multimodal.explain.clinical_terms import code_descriptions, code_ranges, direction, event_rows
from multimodal.explain.genes import gene_effects, set_scores, shares_members
from multimodal.explain.key_findings import (
    clinical_header,
    cohort_average,
    endpoint_text,
    horizons_in_years,
    risk_group_rule,
    units_per_year,
    validation_status,
    years_text,
)
from multimodal.explain.privacy import scrub, slide_label
from multimodal.explain.reference import centered, explain_target, read_reference
from multimodal.explain.result import RiskResult
from multimodal.explain.slide_crops import add_crops, slide_thumbnails
from multimodal.model import MultimodalEnsemble
from multimodal.model.fusion import CrossAttention, SelfAttention
from multimodal.training_record import was_training_patient

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


def survival_knots(edges: list[float], follow_up: float | None) -> tuple[list[float], int]:
    """The times of the survival curve (0, each bin's end) and how many bin values it keeps. Bin k ends at edge k;
    the last (open) bin ends at the last training follow-up (``follow_up``, where the study reads it too) when that
    lies past the last edge, otherwise the curve stops at the last edge: no time is invented."""
    if not edges:
        return ([0.0, float(follow_up)], 1) if follow_up else ([0.0], 0)
    if follow_up is not None and float(follow_up) > edges[-1]:
        return [0.0, *map(float, edges), float(follow_up)], len(edges) + 1
    return [0.0, *map(float, edges)], len(edges)


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
    ds = pipe.dataset(cohort, [patient_id])
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
        s = recalibrate_survival(out.survival[0].numpy()[None], recalibration)[0]
        band = recalibrate_survival(np.stack([o.survival[0].numpy() for o in mc]), recalibration) if mc else s[None]
        times, keep = survival_knots(list(cfg.bin_edges or []), meta.get("max_train_time"))
        s, band = s[:keep], band[:, :keep]
        survival = {
            "times": times, "survival": [1.0, *s.tolist()],
            "lower": [1.0, *np.quantile(band, 0.05, axis=0).tolist()],
            "upper": [1.0, *np.quantile(band, 0.95, axis=0).tolist()],
            "time_unit": time_unit, "follow_up": times[-1],
            "note": f"S(t) at the end of each discrete-time bin up to the last training follow-up; band = 90% range "
            f"of {mc_samples} MC-dropout passes"
            + (" of every ensemble member" if isinstance(model, MultimodalEnsemble) else "")
            + ("; recalibrated on the inner-validation patients" if "survival" in recalibrated_parts(recalibration)
               else ""),
        }
        hs = [(h / per_year if (per_year := units_per_year(time_unit)) else None, h) for h in horizons] if horizons \
            else [(y, t) for y, t in horizons_in_years(time_unit, times[-1])]
        for years, h in hs:
            def s_at(vals: np.ndarray, h: float = h) -> float:
                return float(np.interp(h, times, [1.0, *vals.tolist()]))

            est = 1 - s_at(s)
            draws = [1 - s_at(b) for b in band]
            at_h.append({"horizon": float(h), "years": years, "label": years_text(h, time_unit),
                         "time_unit": time_unit, "risk": est, "survival": 1 - est,
                         "lower": float(np.quantile(draws, 0.05)), "upper": float(np.quantile(draws, 0.95))})
        avg = cohort_average(cohort, [h["horizon"] for h in at_h], meta.get("training_survival"))
        if avg is not None:
            for h, v in zip(at_h, avg["survival"], strict=True):
                h["cohort_survival"] = v
            survival["cohort_average"] = avg["method"]

    response = []
    response_difference: dict[str, Any] | None = None
    if out.response_prob_per_arm is not None:
        probs = recalibrate_response(out.response_prob_per_arm[0, :, -1].numpy(), recalibration)
        draws = recalibrate_response(np.stack([o.response_prob_per_arm[0, :, -1].numpy() for o in mc]),
                                     recalibration) if mc else probs[None]
        for a, p in enumerate(probs):
            response.append({"arm": arms[a] if a < len(arms) else str(a), "probability": float(p),
                             "lower": float(np.quantile(draws[:, a], 0.05)),
                             "upper": float(np.quantile(draws[:, a], 0.95))})
        if len(probs) == 2:  # the difference between the arms, each dropout pass paired with itself
            d = draws[:, 1] - draws[:, 0]
            response_difference = {"arms": [response[1]["arm"], response[0]["arm"]],
                                   "difference": float(probs[1] - probs[0]), "lower": float(np.quantile(d, 0.05)),
                                   "upper": float(np.quantile(d, 0.95))}
    elif out.response_prob is not None:
        p = float(recalibrate_response(float(out.response_prob[0, -1]), recalibration))
        draws = recalibrate_response(np.array([float(o.response_prob[0, -1]) for o in mc]), recalibration) \
            if mc else np.array([p])
        response.append({"arm": None, "probability": p, "lower": float(np.quantile(draws, 0.05)),
                         "upper": float(np.quantile(draws, 0.95))})

    shap = modality_shapley(model, batch, target=target, token_overrides=tokens)
    ig = integrated_gradients(model, batch, target=target, n_steps=n_steps)
    descriptions = {m: code_descriptions(getattr(src, "root", None)) for m, src in cohort.modalities.items()
                    if getattr(src, "kind", None) == "meds"}
    ranges = {m: code_ranges(getattr(src, "root", None)) for m, src in cohort.modalities.items()
              if getattr(src, "kind", None) == "meds"}
    slides = {m: slide_thumbnails(cohort, m, patient_id, list((s.meta.get("per_patient") or [{}])[0]
                                                              .get("slide_ids") or []))
              for m, s in batch.streams.items() if s.positions is not None}
    evidence = _evidence(batch, ig, top_k, reference, target, descriptions, ranges, slides)
    for m, ev in evidence.items():
        if ev.get("kind") == "slots" and m in pipe.adapters:
            _annotate_genes(ev, pipe.adapters[m], cohort, patient_id, m)

    stack_terms = None
    if pipe.stack is not None and target == ("risk" if pipe.stack.head == "survival" else "response"):
        # the stack's part of the output (log hazard / log odds): exact terms, no attribution needed
        stack_terms = pipe.stack.contributions(cohort, patient_id, top=top_k)

    arm_value = cohort.patients.loc[patient_id].get("treatment") if "treatment" in cohort.patients.columns else None
    cutoff = cohort.patients.loc[patient_id].get("prediction_time") if "prediction_time" in cohort.patients.columns else None
    model_hash = meta.get("model_sha256") or _model_hash(model)
    validation = meta.get("validation")
    alias = pseudonym(patient_id, str(meta.get("cohort", "")))
    result = RiskResult(
        patient={"pseudonym": alias,
                 "data_cutoff": None if cutoff is None or pd.isna(cutoff) else str(pd.Timestamp(cutoff)),
                 "arm": arms[int(arm_value)] if arm_value is not None and not pd.isna(arm_value) and arms else None,
                 "cohort": str(cohort.name), **clinical_header(cohort, patient_id)},
        model={"name": f"precision-multimodal/{meta.get('cohort', 'model')}", "version": __version__,
               "hash": model_hash, "cohort": meta.get("cohort"), "task": meta.get("task"), "time_unit": time_unit,
               "n_train": meta.get("n_train"), "target": target,
               "ensemble_members": int(getattr(model, "num_members", 1)),
               "recalibrated": recalibrated_parts(recalibration), "mc_samples": int(mc_samples),
               "training_patient": _training_patient(meta, cohort, patient_id),
               "trained": (meta.get("provenance") or {}).get("created"),
               "git_commit": (meta.get("provenance") or {}).get("git_commit")},
        inputs_used=used, inputs_missing=missing, risk_score=risk, percentile=percentile, risk_group=group,
        survival=survival, risks_at_horizons=at_h, response=response,
        modality_contributions={"values": shap["values"], "f_all": shap["f_all"], "f_none": shap["f_none"],
                                "target": target},
        evidence=evidence, validation=validation,
        completeness={"ig_relative_error": ig.completeness_error, "ig_delta": ig.delta},
        limitations=[f"Trained on {meta.get('n_train')} patients of cohort {meta.get('cohort')}.",
                     *performance_limitations(validation)],
        report_date=pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d"),
        n_reference=int(ref.size), risk_group_rule=risk_group_rule(int(ref.size)),
        validation_status=validation_status(validation, meta.get("task")),
        response_difference=response_difference, stack_terms=stack_terms,
        endpoint=endpoint_text(meta.get("task"), time_unit, str(meta.get("cohort", cohort.name))),
    )
    # every string the report writes: the raw id, and identifiers that may embed it, become the pseudonym
    return RiskResult.from_dict(scrub(result.to_dict(), [patient_id, *_identifiers(batch)], alias))


def _identifiers(batch: Any) -> list[str]:
    """Per-patient identifiers the adapters expose (slide ids, sample ids) and their file-name stems."""
    out: list[str] = []
    for stream in batch.streams.values():
        pmeta = (stream.meta.get("per_patient") or [{}])[0]
        for key in ("slide_ids", "sample_ids", "sample_id", "paths", "files"):
            vals = pmeta.get(key)
            vals = [vals] if isinstance(vals, str) else list(vals or [])
            for v in vals:
                out += [str(v), str(v).replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]]
    return [v for v in out if len(v) >= 4]


def _training_patient(meta: dict[str, Any], cohort: Cohort, patient_id: str) -> dict[str, Any] | None:
    """Whether ``patient_id`` was one of the model's training patients: ``{"value": bool, "basis": ...}``, or None
    when unknown. From the pipeline's hashed training ids (:mod:`multimodal.training_record`); a pipeline without them
    (an older one) is read as "trained on the manifest the patient is scored from" (then most likely a training
    patient)."""
    known = was_training_patient(meta.get("training_patients"), patient_id)
    if known is not None:
        return {"value": known, "basis": "the pipeline's record of its training patients"}
    trained = ((meta.get("experiment") or {}).get("data") or {}).get("manifest")
    if not trained or cohort.manifest_path is None:
        return None
    from pathlib import Path

    try:
        same = Path(str(trained)).resolve() == Path(cohort.manifest_path).resolve()
    except OSError:
        return None
    return {"value": same, "basis": "scored from the manifest the model was trained on"} if same else None


def _model_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _evidence(batch: Any, ig: Any, top_k: int, reference: dict[str, Any] | None = None,
              target: str = "risk", descriptions: dict[str, dict[str, str]] | None = None,
              ranges: dict[str, dict[str, tuple[float | None, float | None]]] | None = None,
              slides: dict[str, list[Any]] | None = None) -> dict[str, Any]:
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
            n_slides = max(len(pmeta.get("slide_ids", []) or []), int(sidx.max()) + 1 if len(sidx) else 0)
            coords0 = pmeta.get("coords_level0")
            coords0 = np.asarray(coords0) if coords0 is not None else None
            heat = []
            for si in np.unique(sidx):
                sel = sidx == si
                heat.append({"slide_id": slide_label(int(si), n_slides),
                             "x": pos[sel, 0].astype(int).tolist(), "y": pos[sel, 1].astype(int).tolist(),
                             "value": np.round(ta.scores[sel], 6).tolist()})
            top, slide_of = [], []
            for i in order[:top_k]:
                si = int(sidx[i])
                rec = {"slide_id": slide_label(si, n_slides),
                       "grid_x": int(pos[i, 0]), "grid_y": int(pos[i, 1]), "attribution": float(ta.scores[i])}
                if coords0 is not None and len(coords0) == len(pos):
                    rec["x_level0"], rec["y_level0"] = int(coords0[i, 0]), int(coords0[i, 1])
                top.append(rec)
                slide_of.append(si)
            ev[m] = {"kind": "patches", "heatmaps": heat, "top_patches": top, "n_patches": int(len(pos)),
                     **_totals(ta.scores, [t["attribution"] for t in top])}
            refs = (slides or {}).get(m)
            if refs and any(r is not None and r.thumbnail is not None for r in refs):
                ev[m].update(add_crops(top, slide_of, refs, list(pmeta.get("patch_size_level0") or [])))
        elif stream.features is not None:  # slots: pathways / genes with direction
            ev[m] = _slot_evidence(ta, raw, pmeta.get("members"), top_k, what, with_raw=ref is not None)
            if ref is not None:
                ev[m]["relative_to"] = f"the mean of {int(ref.get('n_patients', 0))} reference patients (inner validation)"
        elif any(" @ " in str(n) for n in ta.names):  # EHR events: one row per code, in words
            top = event_rows(ta.names, ta.scores, (descriptions or {}).get(m, {}), what, top_k, (ranges or {}).get(m))
            ev[m] = {"kind": "events", "top": top, "grouping": "one row per code: its records' attributions summed",
                     **_totals(ta.scores, [t["attribution"] for t in top])}
        else:  # clinical variables
            top = []
            for i in order[:top_k]:
                top.append({"name": ta.names[i], "attribution": float(ta.scores[i]),
                            "direction": _direction(ta.scores[i], what)})
            ev[m] = {"kind": "events", "top": top, **_totals(ta.scores, [t["attribution"] for t in top])}
    return ev


#: At most this many cohort patients place a gene value in its cohort (percentile).
MAX_PERCENTILE_PATIENTS = 5000


def _annotate_genes(ev: dict[str, Any], adapter: Any, cohort: Cohort, patient_id: str, modality: str) -> None:
    """Add the patient's value to each listed gene (``name`` like ``GENE:rna``): for ``mut`` whether the patient
    carries a mutation (and how often the cohort does), otherwise the standardized value and its percentile among
    the cohort's patients with this modality. Slot tokens without per-gene members are left as they are."""
    own_stream = adapter.transform(patient_id)
    members = (own_stream.meta or {}).get("members")
    if own_stream.features is None or not members:
        return
    own = own_stream.features[0].numpy()
    index: dict[str, tuple[int, int]] = {}
    for i, row in enumerate(members):
        for j, lab in enumerate(row):
            if lab and j < own.shape[1]:
                index.setdefault(str(lab), (i, j))
    ids = [p for p in cohort.patient_ids if cohort.has(modality, p)][:MAX_PERCENTILE_PATIENTS]
    rows = [f[0].numpy() for f in (adapter.transform(p).features for p in ids) if f is not None]
    ref = np.stack([r for r in rows if r.shape == own.shape]) if rows else own[None]

    def describe(label: str) -> dict[str, Any]:
        ij = index.get(label)
        if ij is None or not (label.endswith((":rna", ":cnv", ":mut", ":meth", ":prot"))):
            return {}
        v, col = float(own[ij]), ref[:, ij[0], ij[1]]
        if label.endswith(":mut"):
            return {"carried": v > 0, "cohort_frequency": float((col > 0).mean()), "n_cohort": int(len(col))}
        pct = float(((col < v).mean() + 0.5 * (col == v).mean()) * 100)
        return {"value_z": v, "percentile": pct, "n_cohort": int(len(col))}

    for rec in ev.get("top", []):
        rec.update(describe(rec["name"]))
        for g in rec.get("top_members", []):
            g.update(describe(g["name"]))
    for g in ev.get("top_genes", []):
        g.update(describe(g["name"]))


def _totals(scores: np.ndarray, listed: list[float]) -> dict[str, float]:
    """The modality's total attribution and the part of it its unlisted tokens carry ("other"), so that the listed
    rows plus "other" add up to the total."""
    total = float(np.sum(scores))
    return {"total": total, "other": total - float(np.sum(listed)), "n_tokens": int(len(scores))}


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
    listed = np.argsort(-np.abs(scores))[:top_k]
    for i in listed:
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
    # totals over the tokens' own attributions (additive; gene-level scores count a gene in every set that holds it)
    out: dict[str, Any] = {"kind": "slots", "top": top, **_totals(ta.scores, [float(ta.scores[i]) for i in listed])}
    if gene_level:
        out["scoring"] = "gene level: each gene's attribution summed over every gene set that carries it"
        genes = sorted(effects, key=lambda g: -abs(effects[g]))[:top_k]
        out["top_genes"] = [{"name": g, "attribution": effects[g], "direction": _direction(effects[g], what)}
                            for g in genes]
    return out


def _direction(score: float, what: str) -> str:
    return direction(score, what)
