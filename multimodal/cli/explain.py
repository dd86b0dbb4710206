"""``multimodal explain``: one patient's RiskResult JSON (``--patient ID``), or a whole cohort's patient x feature
attribution table with a beeswarm summary plot (``--cohort``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from multimodal.cli.common import add_common, check_out, echo, positive_int

EXAMPLE = """example:
  multimodal explain --pipeline demo_out/pipeline --manifest demo_out/cohort/manifest.yaml \\
      --patient SYN-0001 --out explain/SYN-0001
  multimodal explain --pipeline demo_out/pipeline --manifest demo_out/cohort/manifest.yaml \\
      --cohort --out explain/cohort

--cohort writes attributions.parquet (one row per patient, one column per feature: 'genomics:<pathway>',
'ehr:<code>', 'clinical:<variable>', '<slides>:patches'; Integrated Gradients of the risk score, or of the response
probability of a response-only model), feature_values.parquet (each feature's input value) and
attribution_beeswarm.png (the features with the largest mean |attribution|, one dot per patient)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="attributions for one patient (JSON) or a whole cohort (table + plot)",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", type=Path, required=True, help="pipeline directory written by 'multimodal train'")
    p.add_argument("--manifest", type=Path, required=True,
                   help="cohort manifest holding the patients (outcome columns may be absent or empty)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", help="patient id as in the manifest's patient table")
    who.add_argument("--cohort", action="store_true", help="every patient of the manifest (or of --patients)")
    p.add_argument("--patients", metavar="ID,ID,...", help="with --cohort: only these patients, comma-separated")
    p.add_argument("--steps", type=positive_int, default=16,
                   help="Integrated Gradients steps per patient with --cohort (default %(default)s)")
    p.add_argument("--top", type=positive_int, default=20,
                   help="features shown in the --cohort plot (default %(default)s)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (risk_result.json; with --cohort the tables and the plot)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, folder=True)
    if args.cohort:
        from multimodal.cohort_explain import explain_cohort

        ids = [s.strip() for s in args.patients.split(",") if s.strip()] if args.patients else None
        paths = explain_cohort(args.pipeline, args.manifest, args.out, patient_ids=ids, n_steps=args.steps,
                               overwrite=args.overwrite, max_features=args.top)
        echo(f"attributions: {paths['attributions']}")
        echo(f"feature values: {paths['values']}")
        echo(f"plot: {paths['plot']}")
        return 0
    if args.patients:
        from multimodal.errors import InputError

        raise InputError("--patients goes with --cohort", field="--patients", hint="use --cohort --patients A,B")
    from multimodal.api import report_patient

    paths = report_patient(args.pipeline, args.manifest, args.patient, args.out, overwrite=args.overwrite,
                           result_only=True)
    echo(f"risk result: {paths['json']}")
    return 0
