"""``multimodal validate MANIFEST``: check a cohort and list every problem at once (exit 2 when invalid)."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from multimodal.errors import Problem

EPILOG = """\
example:
  multimodal validate cohort/manifest.yaml
  multimodal validate cohort/manifest.yaml --json validation.json
  multimodal validate new_patients/manifest.yaml --for-scoring
  multimodal validate configs/demo.yaml

Given an experiment config, validate checks the cohort manifest it names (data.manifest).
--for-scoring checks a cohort of patients to score (predict / explain / report): the outcome columns (time, event /
censorship, response) may then be absent or empty; every other check is the same. Training and cv need them.
validate reads every file with the readers the model commands use (every slide patch included), so what it accepts,
train / cv / predict / explain / report accept, and what they refuse, it reports.
Each problem is printed on one line: file, patient, field, message (hint).
Exit codes: 0 valid (warnings allowed), 2 invalid.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check a cohort manifest and every file it names; list all problems",
        description="Check a cohort manifest, its patient table and every modality source (slide feature files, "
                    "omics, MEDS, clinical table, split files). Reports every problem at once.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", metavar="MANIFEST", help="the cohort manifest YAML")
    p.add_argument("--json", metavar="OUT", default=None, help="also write the full report as JSON to OUT")
    p.add_argument("--for-scoring", action="store_true",
                   help="the patients are to be scored, not trained on: outcome columns may be absent or empty")
    p.set_defaults(func=run)


def format_problem(p: Problem, kind: str = "problem") -> str:
    """One line: ``problem: file F | patient P | field X | message (hint: H)``."""
    parts = [f"file {p.file}" if p.file else "file -", f"patient {p.patient}" if p.patient else "patient -",
             f"field {p.field}" if p.field else "field -", p.message]
    line = f"{kind}: " + " | ".join(parts)
    return line + (f" (hint: {p.hint})" if p.hint else "")


def render_summary(summary: dict[str, Any]) -> list[str]:
    name = summary.get("name")
    lines = [f"cohort {name!r} ({summary.get('manifest')})" if name else f"manifest {summary.get('manifest')}"]
    if "n_patients" in summary:
        median = summary.get("median_time")
        median_text = f"{median:.4g} {summary.get('time_unit', '')}" if median is not None and median == median \
            else "-"
        lines.append(f"  patients: {summary['n_patients']}, events: {summary.get('n_events', '?')}, "
                     f"median time: {median_text}")
    if "treatment_arms" in summary:
        lines.append(f"  treatment arms: {summary['treatment_arms']}")
    if "response" in summary:
        lines.append(f"  response: {summary['response']}")
    for name, m in summary.get("modalities", {}).items():
        extra = []
        if "slides" in m:
            extra.append(f"{m['slides']} slides, encoders {m.get('encoders') or '-'}, dims {m.get('feature_dims')}")
        if "rows" in m:
            extra.append(f"{m['rows']} events in {m.get('files', 0)} shard(s), "
                         f"{m.get('events_after_prediction_time', 0)} after prediction time")
        cov = f" ({100 * m['coverage']:.0f}%)" if "coverage" in m else ""
        lines.append(f"  {name} [{m['type']}]: {m['patients']} patients{cov}" + (f"; {'; '.join(extra)}" if extra
                                                                                  else ""))
    if "folds" in summary:
        lines.append(f"  external folds: {summary['folds']}")
    return lines


def run(args: argparse.Namespace) -> int:
    from multimodal.cohorts.loading import outcome_rules
    from multimodal.cohorts.validate import validate_manifest
    from multimodal.experiment import manifest_named_by
    from multimodal.io import write_json_atomic

    manifest, from_config = manifest_named_by(args.manifest)
    if from_config:
        print(f"experiment config: validating its cohort manifest data.manifest = {manifest}")
    for_scoring = bool(getattr(args, "for_scoring", False))
    with outcome_rules("optional" if for_scoring else "required"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)  # the median of no time
        report = validate_manifest(manifest)
    if for_scoring:
        print("for scoring: outcome columns may be absent or empty")
        median = report.summary.get("median_time")
        if median is not None and median != median:  # NaN: no patient has a time
            report.summary.pop("median_time")
    lines = render_summary(report.summary)
    lines += [format_problem(p) for p in report.problems]
    lines += [format_problem(w, "warning") for w in report.warnings]
    verdict = "VALID" if report.ok else "INVALID"
    lines.append(f"{verdict}: {len(report.problems)} problem(s), {len(report.warnings)} warning(s)")
    print("\n".join(lines))
    if args.json:
        write_json_atomic(args.json, report.to_dict())
    return 0 if report.ok else 2

