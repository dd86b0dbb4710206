"""What page 1 of a patient report states: horizons in years, the cohort's average survival, the patient's clinical
header, how the risk group was formed, the validation status and the endpoint.

Pure functions over plain data; :func:`multimodal.explain.risk.explain_patient` stores their output in the
:class:`~multimodal.explain.result.RiskResult` and the template only prints it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from multimodal.training_record import survival_at, survival_record

__all__ = ["REPORT_HORIZON_YEARS", "UNITS_PER_YEAR", "clinical_header", "cohort_average", "endpoint_text",
           "horizons_in_years", "risk_group_rule", "units_per_year", "validation_rows", "validation_status", "years_text"]

if TYPE_CHECKING:
    from multimodal.cohorts.cohort import Cohort

#: Length of one year in each supported time unit.
UNITS_PER_YEAR = {"days": 365.25, "weeks": 365.25 / 7, "months": 12.0, "years": 1.0}
#: Horizons a clinician asks for, in years; those past the model's follow-up are left out.
REPORT_HORIZON_YEARS = (1.0, 2.0, 3.0, 5.0)
#: Metric of the validation line: survival tasks, then response-only.
_STATUS_METRICS = (("c_index", "c-index"), ("auroc", "AUROC"))
#: Clinical columns shown in the header (first match, case-insensitive) -> label.
_HEADER_COLUMNS = {
    "age": ("age", "age_at_diagnosis", "age_at_index", "age_at_initial_pathologic_diagnosis"),
    "sex": ("sex", "gender"),
    "stage": ("stage", "ajcc_pathologic_stage", "ajcc_pathologic_tumor_stage", "clinical_stage", "tumor_stage"),
}


def units_per_year(time_unit: str) -> float | None:
    return UNITS_PER_YEAR.get(str(time_unit).lower())


def horizons_in_years(time_unit: str, follow_up: float | None) -> list[tuple[float, float]]:
    """``(years, time in time_unit)`` for each of 1, 2, 3, 5 years that lies within ``follow_up`` (the model's last
    survival time); an unknown unit gives none."""
    f = units_per_year(time_unit)
    if f is None or follow_up is None or not np.isfinite(follow_up):
        return []
    return [(y, y * f) for y in REPORT_HORIZON_YEARS if y * f <= follow_up + 1e-9]


def years_text(t: float, time_unit: str) -> str:
    """``t`` (in ``time_unit``) in words: "2 years", "1.5 years", or the raw unit when it is unknown."""
    f = units_per_year(time_unit)
    if f is None:
        return f"{t:.0f} {time_unit}"
    y = t / f
    return f"{y:.0f} year{'s' if round(y) != 1 else ''}" if abs(y - round(y)) < 0.05 else f"{y:.1f} years"


def cohort_average(cohort: Cohort, times: list[float], training: dict[str, Any] | None = None,
                   ) -> dict[str, Any] | None:
    """Kaplan–Meier survival at ``times`` beside which a patient's prediction is shown: of the model's training
    patients where the pipeline recorded it (``training``, :func:`multimodal.training_record.survival_record`), else
    of the scored cohort's patients with a known outcome; None below
    :data:`multimodal.training_record.MIN_PATIENTS_FOR_AVERAGE` such patients."""
    if not times:
        return None
    if training is not None:
        return {"survival": survival_at(training, times), "n_patients": training["n_patients"],
                "n_events": training["n_events"],
                "method": f"Kaplan–Meier estimate over the model's {training['n_patients']} training patients "
                          f"({training['n_events']} events)"}
    rec = survival_record(cohort, cohort.patient_ids)
    if rec is None:
        return None
    return {"survival": survival_at(rec, times), "n_patients": rec["n_patients"], "n_events": rec["n_events"],
            "method": f"Kaplan–Meier estimate over the {rec['n_patients']} patients of cohort {cohort.name} with a "
                      "known outcome (the pipeline records no training survival)"}


def clinical_header(cohort: Cohort, patient_id: str) -> dict[str, str]:
    """Age, sex and stage of the patient where the cohort's clinical table holds them (missing ones left out)."""
    out: dict[str, str] = {}
    tables = [src.table for src in cohort.modalities.values() if getattr(src, "kind", None) == "clinical"]
    tables.append(cohort.patients)
    for key, names in _HEADER_COLUMNS.items():
        for tab in tables:
            cols = {str(c).lower(): c for c in tab.columns}
            col = next((cols[n] for n in names if n in cols), None)
            if col is None or patient_id not in tab.index:
                continue
            v = tab.loc[patient_id, col]
            if isinstance(v, pd.Series):
                v = v.iloc[0]
            if v is None or (not isinstance(v, str) and pd.isna(v)) or str(v).strip() == "":
                continue
            if key == "age":
                try:
                    v = f"{float(v):.0f}"
                except ValueError:
                    v = str(v)
            out[key] = str(v)
            break
    return out


def risk_group_rule(n_reference: int) -> str:
    if n_reference <= 0:
        return "no reference patients stored with the model: no risk group"
    return (f"tertiles of the model's risk score among the {n_reference} inner-validation patients held out while the "
            "model was trained (low = lowest third, high = highest third)")


def validation_status(validation: dict[str, Any] | None, task: str | None) -> dict[str, Any]:
    """The one-line validation status beside the prediction: the cross-validated c-index (AUROC for response-only)
    with its bootstrap CI; ``chance`` when the CI reaches 0.5; ``validated`` False without an attached study."""
    if not validation:
        return {"validated": False, "chance": False,
                "text": "Not validated: no cross-validation study is attached to this model."}
    metrics = _STATUS_METRICS[::-1] if task == "response" else _STATUS_METRICS
    for key, label in metrics:
        mean = validation.get(f"{key} (mean over folds)")
        ci = validation.get(f"{key} 95% CI")
        if mean is None:
            continue
        lo, hi = (float(ci[0]), float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 and ci[0] is not None \
            else (None, None)
        if lo is not None:  # bootstrap CIs are bounded to the metric's range; older t-intervals were not
            lo, hi = max(0.0, lo), min(1.0, hi)
        chance = lo is not None and lo <= 0.5
        folds = validation.get("n_folds")
        ci_text = f" (95% CI {lo:.2f}–{hi:.2f}, bootstrap over patients)" if lo is not None else " (no CI recorded)"
        text = (f"Cross-validated {label} {float(mean):.2f}{ci_text}"
                + (f" over {folds} folds" if folds else "") + ".")
        text += (" The interval reaches 0.5 (chance): do not base decisions on this prediction." if chance
                 else (" The interval lies above 0.5 (chance)." if lo is not None else ""))
        return {"validated": True, "chance": chance, "metric": key, "label": label, "mean": float(mean),
                "ci": [lo, hi] if lo is not None else None, "text": text}
    return {"validated": False, "chance": False,
            "text": "Not validated: the attached cross-validation holds no c-index or AUROC."}


def endpoint_text(task: str | None, time_unit: str, cohort_name: str) -> str:
    """The endpoint in words."""
    parts = []
    if task in ("survival", "both", None):
        parts.append(f"Survival endpoint: time ({time_unit}) from the time origin of cohort {cohort_name} (diagnosis in "
                     "TCGA) to the event recorded as its outcome (death from any cause in TCGA overall survival), "
                     "patients without the event censored at last follow-up. Predicted survival = probability of "
                     "being event-free at that time.")
    if task in ("response", "both"):
        parts.append("Response endpoint: the response class recorded in the cohort's patient table "
                     "(binary: responder vs non-responder).")
    return " ".join(parts)


def validation_rows(validation: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per cross-validated metric: mean over folds and its 95% CI (the bootstrap duplicates left out)."""
    rows = []
    for k, v in (validation or {}).items():
        if not k.endswith(" (mean over folds)"):
            continue
        name = k[: -len(" (mean over folds)")]
        ci = validation.get(f"{name}_bootstrap 95% CI") or validation.get(f"{name} 95% CI")  # type: ignore[union-attr]
        rows.append({"metric": name.replace("_", " "), "mean": v,
                     "ci": list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 and ci[0] is not None else None})
    return rows
