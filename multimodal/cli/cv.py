"""``multimodal cv CONFIG --out RUN``: cross-validated study with baselines and ablations on identical folds."""

from __future__ import annotations

import argparse
from pathlib import Path

from multimodal.cli.common import add_common, add_config_args, check_out, echo

EXAMPLE = """example:
  multimodal cv configs/demo.yaml --out runs/demo --set training.epochs=10
  multimodal cv configs/demo.yaml --out runs/quick --set evaluation.folds=2 --set evaluation.ablations=false
  multimodal cv configs/tcga_blca.yaml --out runs/tcga_blca --set data.root=../shared/data
  multimodal cv configs/tcga_response_blca.yaml --out runs/response_blca --set data.root=../shared/data
  multimodal cv runs/tcga/blca/config.yaml --out runs/blca_lr --set training.lr=0.001   (a run's own config)
  (re-running the same command resumes: finished folds are kept when made from the same config and inputs;
   --overwrite starts over; one run at a time per --out folder)"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="cross-validated study: our model vs baselines on the same folds",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--out", type=Path, required=True, help="run directory (predictions.parquet, summary.json, ...; locked while the run goes on)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodal.api import run_cv
    from multimodal.study import summary_markdown

    check_out(args.out, folder=True)
    summary = run_cv(args.config, args.out, overrides=args.overrides, overwrite=args.overwrite, progress=echo)
    echo("")
    echo(summary_markdown(summary))
    echo(f"outputs: {args.out}/summary.json, {args.out}/summary.md, {args.out}/predictions.parquet")
    return 0
