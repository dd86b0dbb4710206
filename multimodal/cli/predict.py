"""``multimodal predict --pipeline DIR --manifest M --out preds.parquet``: risks and probabilities for patients.

The patients need no outcome: the manifest's patient table may lack time / event / response or leave them empty."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from multimodal.cli.common import add_common, check_out, echo, positive_int

EXAMPLE = """examples:
  multimodal predict --pipeline pipelines/demo --manifest new_cohort/manifest.yaml --out preds.parquet
  multimodal predict --pipeline pipelines/demo --manifest new_cohort/manifest.yaml --out preds.csv \\
      --times 365,730,1825

output (one row per patient of the manifest; the format follows the suffix of --out: .parquet or .csv):
  patient_id                    as in the manifest's patient table
  risk                          risk score, higher = worse (a ranking, not a probability)
  surv_<k>                      S(t) at the end of survival bin k (discrete-time models)
  response_prob                 probability of response (models with a response head)
  risk_arm_<a>, response_prob_arm_<a>
                                the same under arm a (its position in the pipeline's treatment arms)
  risk_<arm>, response_prob_<arm>
                                the same, named by the arm
  risk_diff_<arm1>_vs_<arm0>, response_prob_diff_<arm1>_vs_<arm0>
                                arm 1 minus arm 0 (models with exactly two arms)
  with --times T1,T2,... (in the cohort's time unit, any times, not only bin edges):
  survival_t<T>                 S(T): linear in time between the bin ends, S(0) = 1 (the study's rule)
  cumhaz_t<T>                   cumulative hazard -log S(T)
  survival_t<T>_<arm>, cumhaz_t<T>_<arm>, survival_t<T>_diff_<arm1>_vs_<arm0>
                                the same per arm, and arm 1 minus arm 0
  Without an arm: a patient's own arm (the manifest's treatment column; the first arm when it has none).
  Survival and response probabilities are recalibrated when the pipeline holds recalibration maps.

metadata (time unit, bin edges, arm names, times, pipeline folder and id, what each column is):
  .parquet: the file's key-value metadata, key "multimodal" (JSON):
            json.loads(pyarrow.parquet.read_schema(path).metadata[b"multimodal"])
  .csv:     the sidecar <name>.csv.json

See docs/data-formats.md, "Predictions file"."""


def times_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated times >= 0 (a usage error, exit 2, naming --times otherwise)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {part!r}") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"times must be finite and >= 0, got {part!r}")
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return tuple(out)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a saved pipeline", description=__doc__, epilog=EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", type=Path, required=True, help="pipeline directory written by 'multimodal train'")
    p.add_argument("--manifest", type=Path, required=True,
                   help="cohort manifest of the patients to predict (outcome columns may be absent or empty)")
    p.add_argument("--out", type=Path, required=True,
                   help="output file: .parquet or .csv (the format follows the suffix)")
    p.add_argument("--times", type=times_list, default=(), metavar="T1,T2,...",
                   help="also give survival and cumulative hazard at these times (in the cohort's time unit)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="patients per forward pass")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodal.api import predict_to_file

    check_out(args.out, folder=False)
    n = predict_to_file(args.pipeline, args.manifest, args.out, times=args.times, batch_size=args.batch_size,
                        overwrite=args.overwrite)
    echo(f"{n} patients predicted: {args.out}")
    return 0
