"""``multimodal report --pipeline DIR --manifest M --patient ID --out OUT``: per-patient risk report (HTML + PDF)."""

from __future__ import annotations

import argparse
from pathlib import Path

from multimodal.cli.common import add_common, check_out, echo

EXAMPLE = """example:
  multimodal report --pipeline demo_out/pipeline --manifest demo_out/cohort/manifest.yaml \\
      --patient SYN-0001 --out reports/SYN-0001"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="clinician-facing per-patient report (HTML + PDF)", description=__doc__,
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", type=Path, required=True, help="pipeline directory written by 'multimodal train'")
    p.add_argument("--manifest", type=Path, required=True,
                   help="cohort manifest holding the patient (outcome columns may be absent or empty)")
    p.add_argument("--patient", required=True, help="patient id as in the manifest's patient table")
    p.add_argument("--out", type=Path, required=True, help="output folder (report.html, report.pdf, risk_result.json)")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodal.api import report_patient

    check_out(args.out, folder=True)
    paths = report_patient(args.pipeline, args.manifest, args.patient, args.out, overwrite=args.overwrite,
                           pdf=not args.no_pdf)
    for k, v in paths.items():
        echo(f"{k}: {v}")
    return 0
