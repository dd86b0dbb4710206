"""``multimodal train CONFIG --out PIPELINE_DIR``: fit adapters + model on all training patients and save a pipeline."""

from __future__ import annotations

import argparse
from pathlib import Path

from multimodal.cli.common import add_common, add_config_args, check_out, echo

EXAMPLE = """example:
  multimodal train configs/demo.yaml --out runs/pipeline --set data.manifest=runs/cohort/manifest.yaml
  multimodal train configs/demo.yaml --out runs/pipeline --validation runs/demo
  multimodal predict --pipeline runs/pipeline --manifest runs/cohort/manifest.yaml --out runs/preds.parquet
Every config key: docs/config-reference.md; the saved folder holds MODEL_CARD.md."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train on all patients and save a pipeline", description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--out", type=Path, required=True, help="pipeline directory to write")
    p.add_argument("--validation", type=Path, metavar="RUN",
                   help="a finished `multimodal cv` run of the same config: its cross-validated performance goes into "
                        "the model card and every patient report")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodal.api import attach_validation, read_study_summary, train_pipeline

    check_out(args.out, folder=True)  # before training, not after
    if args.validation is not None:
        read_study_summary(args.validation)  # checked before training, not after
    from multimodal.tracking import tracking_run

    logs = args.out.with_name(f"{args.out.name}_logs")  # training.log_with runs (not inside the pipeline folder)
    with tracking_run("train", logs):
        pipe_dir = train_pipeline(args.config, args.out, overrides=args.overrides, overwrite=args.overwrite,
                                  progress=echo)
    if args.validation is not None:
        attach_validation(pipe_dir, args.validation)
        echo(f"validation attached from {args.validation}")
    echo(f"pipeline saved: {pipe_dir} (model card: {pipe_dir}/MODEL_CARD.md)")
    return 0
