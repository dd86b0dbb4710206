"""``RiskResult``: everything a per-patient report shows, as plain JSON-serializable data (versioned).

Computation (:mod:`multimodal.explain.risk`) fills it; renderers (:mod:`multimodal.report`) only read it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

RISK_RESULT_VERSION = 2
#: Versions :meth:`RiskResult.from_dict` reads (version 1 lacks the key-findings fields, which then keep defaults).
READABLE_VERSIONS = (1, 2)

INTENDED_USE = (
    "Research use only. Estimates survival risk and treatment-response probability from pathology slide embeddings, "
    "genomics and structured EHR for patients resembling the training cohort. Not a medical device; not for "
    "clinical decision making."
)
CAVEATS = (
    "Attributions describe what this model relied on; they are not causal and do not show what would change the "
    "patient's outcome.",
    "Uncertainty bands reflect model (dropout) uncertainty around this prediction, not a calibrated confidence "
    "interval of the patient's true risk.",
    "Performance figures come from cross-validation on the training cohort; other sites, scanners or populations may "
    "differ.",
)


@dataclass
class RiskResult:
    patient: dict[str, Any]  # pseudonym, data_cutoff, arm
    model: dict[str, Any]  # name, version, hash, cohort, task, time_unit, n_train, target, ensemble_members
    inputs_used: list[str]
    inputs_missing: list[str]
    risk_score: float
    percentile: float | None = None
    risk_group: str | None = None
    survival: dict[str, Any] | None = None  # times, survival, lower, upper
    risks_at_horizons: list[dict[str, Any]] = field(default_factory=list)
    response: list[dict[str, Any]] = field(default_factory=list)  # per arm: arm, probability, lower, upper
    modality_contributions: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    completeness: dict[str, float] = field(default_factory=dict)
    intended_use: str = INTENDED_USE
    caveats: list[str] = field(default_factory=lambda: list(CAVEATS))
    limitations: list[str] = field(default_factory=list)
    report_date: str | None = None  # UTC date the result was computed
    n_reference: int = 0  # inner-validation patients behind the percentile / risk group
    risk_group_rule: str | None = None  # how the risk group was formed, in words
    validation_status: dict[str, Any] = field(default_factory=dict)  # validated, chance, metric, mean, ci, text
    endpoint: str | None = None  # the endpoint in words
    response_difference: dict[str, Any] | None = None  # arms [b, a], difference P(b) - P(a), lower, upper
    # the pooled stack's part of the risk (model.stack): offset, its largest exact terms, n_nonzero (None without one)
    stack_terms: dict[str, Any] | None = None
    schema_version: int = RISK_RESULT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A copy of the result as plain dicts and lists (what ``dataclasses.asdict`` gives, without its generic
        per-object dispatch: a result holds ~10^5 heatmap values, and the copy was ~0.25 s of each report)."""
        return {f.name: _plain_copy(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False, default=_default)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RiskResult:
        version = d.get("schema_version")
        if version not in READABLE_VERSIONS:
            msg = f"RiskResult.schema_version: expected one of {READABLE_VERSIONS}, got {version!r}"
            raise ValueError(msg)
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> RiskResult:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


_ATOMS = (str, int, float, bool, type(None))


def _plain_copy(o: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, tuples as lists, atoms as they are); anything else (a nested
    dataclass, an array) through ``dataclasses.asdict`` / as is, like ``asdict`` does."""
    if isinstance(o, _ATOMS):
        return o
    if isinstance(o, dict):
        return {k: _plain_copy(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        if all(isinstance(x, _ATOMS) for x in o):
            return list(o) if isinstance(o, list) else type(o)(o)
        return [_plain_copy(x) for x in o] if isinstance(o, list) else type(o)(_plain_copy(x) for x in o)
    if is_dataclass(o) and not isinstance(o, type):
        return asdict(o)
    return o
