"""``multimodal cohort-report RUN --out OUT``: Kaplan–Meier by risk group, per-fold metrics, calibration, td-AUC."""

from __future__ import annotations

import argparse
from pathlib import Path

from multimodal.cli.common import add_common, check_out, echo

EXAMPLE = """example:
  multimodal cohort-report runs/demo --out reports/demo_cohort"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cohort-report", help="cohort report of a cv run (HTML + PDF)", description=__doc__,
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="run directory written by 'multimodal cv'")
    p.add_argument("--out", type=Path, required=True, help="output folder (cohort_report.html, cohort_report.pdf)")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodal.api import cohort_report

    check_out(args.out, folder=True)
    for k, v in cohort_report(args.run, args.out, overwrite=args.overwrite, pdf=not args.no_pdf).items():
        echo(f"{k}: {v}")
    return 0
