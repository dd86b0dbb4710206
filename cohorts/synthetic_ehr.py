"""Synthetic structured EHR written as a MEDS 0.4 directory (pyarrow, explicit schema, explicit sort).

Per subject: static ``GENDER//F|M``, ``MEDS_BIRTH``, comorbidity diagnoses + medications years back, the cancer
diagnosis and biopsy weeks back, a year of lab panels before the prediction time (``LAB//LDH`` rises or falls with the
patient's latent slope; other labs drift at random), the treatment start code at exactly the prediction time, then
follow-up labs after it (with a terminal LDH rise before death) and ``MEDS_DEATH`` for patients who die. Everything
after the prediction time is there to exercise the leakage guard.

With ``signal="interaction"`` every subject also gets ``LAB//CEA`` (log-normal): measured at every panel plus a
work-up in the last 90 days before the prediction time, where log CEA bends upward (or downward) by the subject's
latent acceleration on top of an unrelated long-run level and slope. Those rows come from a separate RNG, so the
other rows of a seed are the same with and without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

US_PER_DAY = 86_400_000_000
NULL_TIME = np.iinfo(np.int64).min  # marks static rows before they become nulls
DATA_SCHEMA = pa.schema([
    pa.field("subject_id", pa.int64(), nullable=False),
    pa.field("time", pa.timestamp("us"), nullable=True),
    pa.field("code", pa.string(), nullable=False),
    pa.field("numeric_value", pa.float32(), nullable=True),
])
CAUSAL_LAB = "LAB//LDH"
# code -> (description, parent codes)
CODES: dict[str, tuple[str, list[str]]] = {
    "MEDS_BIRTH": ("Birth", []),
    "MEDS_DEATH": ("Death", []),
    "GENDER//F": ("Sex: female", []),
    "GENDER//M": ("Sex: male", []),
    "LAB//LDH": ("Lactate dehydrogenase [U/L]", ["LOINC/14804-9"]),
    "LAB//ALB": ("Albumin [g/dL]", ["LOINC/1751-7"]),
    "LAB//HGB": ("Hemoglobin [g/dL]", ["LOINC/718-7"]),
    "LAB//CRP": ("C-reactive protein [mg/L]", ["LOINC/1988-5"]),
    "LAB//CREA": ("Creatinine [mg/dL]", ["LOINC/2160-0"]),
    "LAB//WBC": ("Leukocytes [10*3/uL]", ["LOINC/6690-2"]),
    "LAB//CEA": ("Carcinoembryonic antigen [ng/mL]", ["LOINC/2039-6"]),
    "DIAGNOSIS//ICD10//C34.90": ("Malignant neoplasm of unspecified part of bronchus or lung", ["ICD10CM/C34.90"]),
    "DIAGNOSIS//ICD10//I10": ("Essential (primary) hypertension", ["ICD10CM/I10"]),
    "DIAGNOSIS//ICD10//E11.9": ("Type 2 diabetes mellitus without complications", ["ICD10CM/E11.9"]),
    "DIAGNOSIS//ICD10//J44.9": ("Chronic obstructive pulmonary disease, unspecified", ["ICD10CM/J44.9"]),
    "MEDICATION//ATC//C09AA05": ("Ramipril", ["ATC/C09AA05"]),
    "MEDICATION//ATC//A10BA02": ("Metformin", ["ATC/A10BA02"]),
    "MEDICATION//ATC//R03BB04": ("Tiotropium bromide", ["ATC/R03BB04"]),
    "PROCEDURE//BIOPSY": ("Diagnostic tumour biopsy", []),
}
# lab code -> (reference_low, reference_high) in the code's unit: typical adult reference intervals, written to
# codes.parquet so that reports can place a value (a site's own codes.parquet carries its laboratory's ranges)
REFERENCE_RANGES: dict[str, tuple[float, float]] = {
    "LAB//LDH": (140.0, 280.0),
    "LAB//ALB": (3.5, 5.0),
    "LAB//HGB": (12.0, 17.5),
    "LAB//CRP": (0.0, 10.0),
    "LAB//CREA": (0.6, 1.3),
    "LAB//WBC": (4.0, 11.0),
    "LAB//CEA": (0.0, 3.0),
}
# comorbidity code -> (base prevalence, extra prevalence per year of age above 50, medication code)
COMORBIDITIES: dict[str, tuple[float, float, str]] = {
    "DIAGNOSIS//ICD10//I10": (0.20, 0.01, "MEDICATION//ATC//C09AA05"),
    "DIAGNOSIS//ICD10//E11.9": (0.12, 0.003, "MEDICATION//ATC//A10BA02"),
    "DIAGNOSIS//ICD10//J44.9": (0.12, 0.004, "MEDICATION//ATC//R03BB04"),
}
# decoy labs: code -> (level mean, level sd, slope sd per year, measurement noise sd, log-normal?)
DECOY_LABS: dict[str, tuple[float, float, float, float, bool]] = {
    "LAB//ALB": (3.9, 0.4, 0.3, 0.15, False),
    "LAB//HGB": (13.0, 1.5, 0.8, 0.4, False),
    "LAB//CRP": (1.5, 0.8, 0.4, 0.3, True),
    "LAB//CREA": (0.95, 0.2, 0.05, 0.08, False),
    "LAB//WBC": (7.5, 1.8, 0.8, 0.7, False),
}
FOLLOW_UP_LABS = ("LAB//LDH", "LAB//HGB", "LAB//CRP")
LDH_NOISE_SD = 15.0
TERMINAL_LDH_RISE = 150.0  # U/L added as death approaches (e-folding 60 days): leaks the outcome if not guarded
#: The lab whose recent acceleration matters under signal="interaction" (written only then).
ACCEL_LAB = "LAB//CEA"
ACCEL_WINDOW_DAYS = 90.0  # the bend happens over this many days before the prediction time
CEA_LOG_NOISE_SD = 0.08  # measurement noise on the log scale
CEA_WORKUP_MEAN = 3.0  # work-up draws in the window: 2 + Poisson(CEA_WORKUP_MEAN - 2)


@dataclass(frozen=True)
class AcceleratingLab:
    """Latent trajectory of ``ACCEL_LAB`` on the log scale (years since the first pre-treatment panel)."""

    log_level: float  # at the first panel
    log_slope: float  # per year, long-run
    log_rise: float  # added over the last ACCEL_WINDOW_DAYS before the prediction time (quadratic bend)

    def log_value(self, days_before: np.ndarray, first_days_before: float) -> np.ndarray:
        """Noise-free log value ``days_before`` the prediction time (negative = after it; the bend then stays)."""
        bend = np.clip((ACCEL_WINDOW_DAYS - days_before) / ACCEL_WINDOW_DAYS, 0.0, 1.0) ** 2
        return self.log_level + self.log_slope * (first_days_before - days_before) / 365.25 + self.log_rise * bend


@dataclass(frozen=True)
class EhrSubject:
    """What the EHR writer needs to know about one subject (times in microseconds since the epoch)."""

    subject_id: int
    split: str
    prediction_time_us: int
    age: float
    sex: str
    ldh_base: float
    ldh_slope: float  # U/L per year
    treatment_code: str
    observed_days: float
    died: bool
    accel_lab: AcceleratingLab | None = None  # signal="interaction" only


def _accel_rows(
    rng: np.random.Generator, lab: AcceleratingLab, days_before: np.ndarray, follow: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(days before the prediction time, value) of ``ACCEL_LAB``: every panel, a work-up in the window, follow-up."""
    n_workup = 2 + int(rng.poisson(CEA_WORKUP_MEAN - 2.0))
    workup = rng.uniform(1.0, ACCEL_WINDOW_DAYS, size=n_workup)
    days = np.concatenate([days_before, workup, -follow])
    log_v = lab.log_value(days, float(days_before[0])) + CEA_LOG_NOISE_SD * rng.standard_normal(days.size)
    return days, np.exp(log_v)


def _subject_rows(
    rng: np.random.Generator, s: EhrSubject, code_ix: dict[str, int], extra_rng: np.random.Generator | None = None
) -> tuple[np.ndarray, ...]:
    """(time_us with NULL_TIME = static, code index, value (NaN = none)) of one subject, unsorted.

    ``extra_rng`` draws the ``ACCEL_LAB`` rows of a subject with ``accel_lab`` (the other rows use ``rng`` only).
    """
    t: list[np.ndarray] = []
    c: list[np.ndarray] = []
    v: list[np.ndarray] = []

    def add(times_us: np.ndarray, code: str, values: np.ndarray | None = None) -> None:
        times_us = np.atleast_1d(np.asarray(times_us, dtype=np.int64))
        t.append(times_us)
        c.append(np.full(times_us.shape, code_ix[code], dtype=np.int32))
        v.append(np.full(times_us.shape, np.nan) if values is None else np.asarray(values, float))

    pt = s.prediction_time_us
    day = US_PER_DAY
    add(np.array([NULL_TIME]), f"GENDER//{s.sex}")
    birth = pt - int(round(s.age * 365.25)) * day
    add(np.array([birth - birth % day]), "MEDS_BIRTH")
    for code, (base, per_year, med) in COMORBIDITIES.items():
        if rng.random() < min(0.9, base + per_year * max(0.0, s.age - 50.0)):
            dx = pt - int(rng.uniform(365, 3650) * day)
            add(np.array([dx]), code)
            add(np.array([dx + int(rng.uniform(0, 60) * day)]), med)
    dx = pt - int(rng.uniform(14, 60) * day)
    add(np.array([dx - int(rng.uniform(3, 10) * day)]), "PROCEDURE//BIOPSY")
    add(np.array([dx]), "DIAGNOSIS//ICD10//C34.90")
    # pre-treatment lab panels over the year before the prediction time
    n_visits = int(np.clip(3 + rng.poisson(4), 3, 12))
    days_before = np.sort(rng.uniform(1.0, 365.0, size=n_visits))[::-1]  # oldest first
    visit_us = pt - (days_before * day).astype(np.int64)
    years_since_first = (days_before[0] - days_before) / 365.25
    add(visit_us, CAUSAL_LAB, s.ldh_base + s.ldh_slope * years_since_first + LDH_NOISE_SD * rng.standard_normal(n_visits))
    decoy_state = {}
    for code, (mean, sd, slope_sd, noise, lognormal) in DECOY_LABS.items():
        level, slope = mean + sd * rng.standard_normal(), slope_sd * rng.standard_normal()
        decoy_state[code] = (level, slope, noise, lognormal)
        keep = rng.random(n_visits) < 0.9
        vals = level + slope * years_since_first[keep] + noise * rng.standard_normal(int(keep.sum()))
        add(visit_us[keep], code, np.exp(vals) if lognormal else vals)
    add(np.array([pt]), s.treatment_code)
    # follow-up after the prediction time (never used by a correct pipeline)
    follow = np.cumsum(rng.uniform(28.0, 42.0, size=max(1, int(s.observed_days // 28) + 1)))
    follow = follow[follow < s.observed_days]
    if follow.size:
        f_us = pt + (follow * day).astype(np.int64)
        yrs = (days_before[0] + follow) / 365.25
        ldh = s.ldh_base + s.ldh_slope * yrs + LDH_NOISE_SD * rng.standard_normal(follow.size)
        if s.died:
            ldh = ldh + TERMINAL_LDH_RISE * np.exp(-(s.observed_days - follow) / 60.0)
        add(f_us, CAUSAL_LAB, ldh)
        for code in FOLLOW_UP_LABS[1:]:
            level, slope, noise, lognormal = decoy_state[code]
            vals = level + slope * yrs + noise * rng.standard_normal(follow.size)
            add(f_us, code, np.exp(vals) if lognormal else vals)
    if s.died:
        add(np.array([pt + int(round(s.observed_days * day))]), "MEDS_DEATH")
    if s.accel_lab is not None:
        if extra_rng is None:
            raise ValueError("a subject with accel_lab needs extra_rng")
        days, vals = _accel_rows(extra_rng, s.accel_lab, days_before, follow)
        add(pt - (days * day).astype(np.int64), ACCEL_LAB, vals)
    return np.concatenate(t), np.concatenate(c), np.concatenate(v)


def write_meds(
    root: Path, rng: np.random.Generator, subjects: list[EhrSubject], *, dataset_name: str, dataset_version: str,
    etl_version: str, shard_size: int, extra_rng: np.random.Generator | None = None,
) -> dict[str, int]:
    """Write ``data/<split>/<shard>.parquet`` and ``metadata/``; returns rows per split.

    ``extra_rng`` draws the ``ACCEL_LAB`` rows of subjects with ``accel_lab`` (signal="interaction").
    """
    treatment_codes = sorted({s.treatment_code for s in subjects})
    vocab = list(CODES) + treatment_codes
    code_ix = {c: i for i, c in enumerate(vocab)}
    parts = [_subject_rows(rng, s, code_ix, extra_rng) for s in subjects]
    sid = np.concatenate([np.full(p[0].shape, s.subject_id, dtype=np.int64) for s, p in zip(subjects, parts,
                                                                                            strict=True)])
    t = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    c = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int32)
    v = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
    null = t == NULL_TIME
    # static (null-time) rows first (NULL_TIME is the smallest int64), then by time; generation order breaks ties
    order = np.lexsort((np.arange(t.size), t, sid))
    sid, t, c, v, null = sid[order], t[order], c[order], v[order], null[order]
    codes = np.array(vocab, dtype=object)[c]
    split_of = {s.subject_id: s.split for s in subjects}
    rows_per_split: dict[str, int] = {}
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split in sorted(set(split_of.values())):
        ids = np.array(sorted(k for k, sp in split_of.items() if sp == split), dtype=np.int64)
        for shard, start in enumerate(range(0, ids.size, shard_size)):
            sel = np.isin(sid, ids[start : start + shard_size])
            table = pa.table(
                {
                    "subject_id": pa.array(sid[sel], pa.int64()),
                    "time": pa.array(t[sel], pa.timestamp("us"), mask=null[sel]),
                    "code": pa.array(codes[sel].tolist(), pa.string()),
                    "numeric_value": pa.array(v[sel].astype(np.float32), pa.float32(), mask=np.isnan(v[sel])),
                },
                schema=DATA_SCHEMA,
            )
            out = root / "data" / split / f"{shard}.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, out)
            rows_per_split[split] = rows_per_split.get(split, 0) + table.num_rows
    meta = root / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    used = sorted(set(codes.tolist()))
    pq.write_table(
        pa.table(
            {
                "code": pa.array(used, pa.string()),
                "description": pa.array([_describe(cd) for cd in used], pa.string()),
                "parent_codes": pa.array([CODES.get(cd, ("", []))[1] for cd in used], pa.list_(pa.string())),
                "reference_low": pa.array([REFERENCE_RANGES.get(cd, (None, None))[0] for cd in used], pa.float64()),
                "reference_high": pa.array([REFERENCE_RANGES.get(cd, (None, None))[1] for cd in used], pa.float64()),
            }
        ),
        meta / "codes.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "subject_id": pa.array([s.subject_id for s in subjects], pa.int64()),
                "split": pa.array([s.split for s in subjects], pa.string()),
            },
            schema=pa.schema([pa.field("subject_id", pa.int64(), nullable=False),
                              pa.field("split", pa.string(), nullable=True)]),
        ),
        meta / "subject_splits.parquet",
    )
    dataset = {
        "dataset_name": dataset_name, "dataset_version": dataset_version, "etl_name": "multimodal synth",
        "etl_version": etl_version, "meds_version": "0.4",
    }
    (meta / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return rows_per_split


def _describe(code: str) -> str:
    if code in CODES:
        return CODES[code][0]
    if code.startswith("TREATMENT//"):
        return f"Start of study treatment, arm {code.split('//', 1)[1].lower()}"
    return code
