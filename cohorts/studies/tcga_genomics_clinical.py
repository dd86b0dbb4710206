"""TCGA BLCA / BRCA / KIRC, genomics + clinical, on the published PORPOISE/MCAT 5-fold splits (no slides: no public
patch embeddings are available offline), with configs/tcga_<cohort>.yaml. Our model vs its ablations and CoxPH /
Coxnet / RSF on identical folds; MCAT's reported c-index on the same folds is printed where the data root has it.

    python -m multimodal.cohorts.studies.tcga_genomics_clinical --data-root ../shared/data --out runs/tcga
    python -m multimodal.cohorts.studies.tcga_genomics_clinical --data-root ../shared/data --out /tmp/t --quick \
        --cohorts blca
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from multimodal.experiment import load_experiment
from multimodal.study import Study, summary_markdown

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
QUICK = ["evaluation.max_folds=1", "training.epochs=2", "model.d_model=16", "model.depth=1", "model.num_latents=4",
         "evaluation.bootstrap=20", "evaluation.ablations=false", "evaluation.baselines=[coxph_clinical]"]
MCAT = {"SNN (genomics)": "SNNsm_nll_surv_a0.0_reg1e-04_5foldcv_gc32_sig",
        "MCAT (WSI+genomics)": "MCATsm_nll_surv_a0.0_5foldcv_gc32_concat"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m multimodal.cohorts.studies.tcga_genomics_clinical", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True, help="folder holding tcga_porpoise/ (e.g. ../shared/data)")
    p.add_argument("--out", type=Path, required=True, help="output folder; one cv run per cohort inside")
    p.add_argument("--cohorts", nargs="+", default=["blca", "brca", "kirc"], help="default: blca brca kirc")
    p.add_argument("--configs", type=Path, default=CONFIGS, help="folder of tcga_<cohort>.yaml (default configs/)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 fold, 2 epochs, small model, CoxPH only")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override (repeatable), e.g. --set training.epochs=1")
    args = p.parse_args(argv)

    reported = args.data_root / "tcga_mcat" / "mcat_fold_cindex_reported.csv"
    ref = pd.read_csv(reported) if reported.is_file() else None
    for c in args.cohorts:
        cfg = load_experiment(args.configs / f"tcga_{c}.yaml", [f"data.root={args.data_root.resolve()}",
                                                                  *(QUICK if args.quick else []), *args.overrides])
        summary = Study(cfg).run(args.out / c, progress=print)
        print("\n" + summary_markdown(summary))
        folds = [f["fold"] for f in summary["methods"]["multimodal"]["folds"]]
        for label, model in MCAT.items():
            rows = ref[(ref.model == model) & (ref.cancer == c) & ref.folds.isin(folds)] if ref is not None else []
            if len(rows):
                print(f"reported {label} on the same fold(s) {folds}: c-index {rows.val_cindex.mean():.3f}")
    print(f"outputs: {args.out}/<cohort>/summary.md, summary.json, predictions.parquet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
