"""``multimodal predict --pipeline DIR --manifest M --out preds.parquet``: risks and probabilities for patients."""

from __future__ import annotations

import argparse
from pathlib import Path

from multimodal.cli.common import add_common, check_out, echo, positive_int

EXAMPLE = """example:
  multimodal predict --pipeline pipelines/demo --manifest new_cohort/manifest.yaml --out preds.parquet"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a saved pipeline", description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", type=Path, required=True, help="pipeline directory written by 'multimodal train'")
    p.add_argument("--manifest", type=Path, required=True, help="cohort manifest of the patients to predict")
    p.add_argument("--out", type=Path, required=True, help="output parquet file")
    p.add_argument("--batch-size", type=positive_int, default=8, help="patients per forward pass")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodal.api import predict_to_parquet

    check_out(args.out, folder=False)
    n = predict_to_parquet(args.pipeline, args.manifest, args.out, batch_size=args.batch_size, overwrite=args.overwrite)
    echo(f"{n} patients predicted: {args.out}")
    return 0
