"""``multimodal convert omop SRC --out MEDS_DIR``: an OMOP CDM export (a folder or .zip of CSV / CSV.gz / parquet
tables) as a MEDS 0.4 directory for the EHR modality, following the OMOP -> MEDS mapping of meds_etl
(docs/own-data.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from multimodal.cli.common import add_common, check_out, echo, positive_int

EXAMPLE = """example:
  multimodal convert omop ../shared/data/ehr/omop_synthea27nj/Synthea27Nj_5.4.zip --out runs/meds_omop
  multimodal convert omop /data/omop_export/ --out /data/meds --shard-size 50000 --overwrite

Needs the PERSON and CONCEPT tables; converts PERSON (birth, gender, race, ethnicity), DEATH, VISIT_OCCURRENCE,
CONDITION_OCCURRENCE, DRUG_EXPOSURE, PROCEDURE_OCCURRENCE, DEVICE_EXPOSURE, MEASUREMENT, OBSERVATION and SPECIMEN.
subject_id = person_id; codes are '<vocabulary_id>/<concept_code>' (e.g. LOINC/29463-7); a date without a time
is placed at 23:59:59 of that day. Point the manifest's EHR modality at MEDS_DIR (format: meds)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an OMOP CDM export to a MEDS 0.4 directory",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source_format", choices=["omop"], help="the input's data model (omop: OMOP CDM v5.3 / v5.4)")
    p.add_argument("source", type=Path, help="folder (or .zip) of the OMOP tables, e.g. PERSON.csv, CONCEPT.csv")
    p.add_argument("--out", type=Path, required=True, help="the MEDS directory to write (absent or empty)")
    p.add_argument("--shard-size", type=positive_int, default=10_000,
                   help="subjects per data shard (default %(default)s)")
    p.add_argument("--name", default=None, help="dataset_name in metadata/dataset.json (default: CDM_SOURCE's name)")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from multimodal.cohorts.omop import convert_omop

    check_out(args.out, folder=True)
    report = convert_omop(args.source, args.out, shard_size=args.shard_size, overwrite=args.overwrite,
                          dataset_name=args.name)
    echo(f"MEDS 0.4 directory: {args.out}")
    echo(json.dumps(report.to_dict(), indent=2))
    return 0
