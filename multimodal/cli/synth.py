"""``multimodal synth``: write the embedded synthetic cohort (all modalities, real formats, planted ground truth)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

from multimodal.cli.common import check_out
from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort

EPILOG = """\
example:
  multimodal synth --out data/synth --patients 200 --seed 0
  multimodal synth --out /tmp/big --patients 20 --patches-per-slide 100000 --overwrite
  multimodal synth --out data/synth_ix --patients 500 --seed 0 --signal interaction

--signal additive (default) plants a log-hazard that is linear in the latent variables; --signal interaction adds
tumour-adjacent immune patches (TILs, readable only from patch coordinates), a pathway x TP53 term and a recent
acceleration of LAB//CEA, which together carry about 40 % of the log-hazard variance (ground_truth.json
variance_share_by_part).

The folder holds manifest.yaml (give it to 'multimodal validate' / 'multimodal train'), the slides (TRIDENT h5),
omics (h5ad, GMT, MAF), a MEDS 0.4 directory, clinical.csv, outcomes.parquet and ground_truth.json.
See docs/synthetic.md for the generative model.
"""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``synth`` parser."""
    defaults = SyntheticConfig()
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic multimodal cohort with planted ground truth",
        description="Write a complete synthetic cohort (slides, genomics, MEDS EHR, clinical, outcomes) with "
        "documented ground truth into a new folder, atomically.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (absent or empty unless --overwrite)")
    p.add_argument("--patients", type=int, default=defaults.patients, help="number of patients (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
    p.add_argument("--patches-per-slide", type=int, default=defaults.patches_per_slide,
                   help="mean patches per slide (default %(default)s)")
    p.add_argument("--patches-per-slide-sigma", type=float, default=defaults.patches_per_slide_sigma,
                   help="log-normal spread of patches per slide; 0 = every slide exactly --patches-per-slide "
                   "(default %(default)s)")
    p.add_argument("--slides-per-patient", type=int, nargs=2, metavar=("MIN", "MAX"),
                   default=list(defaults.slides_per_patient), help="slides per patient (default %(default)s)")
    p.add_argument("--embed-dim", type=int, default=defaults.embed_dim,
                   help="patch embedding dimension (default %(default)s)")
    p.add_argument("--n-genes", type=int, default=defaults.n_genes, help="genes (default %(default)s)")
    p.add_argument("--n-pathways", type=int, default=defaults.n_pathways, help="pathways (default %(default)s)")
    p.add_argument("--n-arms", type=int, default=defaults.n_arms, help="treatment arms (default %(default)s)")
    for mod in ("pathology", "genomics", "ehr"):
        p.add_argument(f"--missing-{mod}", type=float, default=getattr(defaults, f"missing_{mod}"),
                       metavar="FRAC", help=f"fraction of patients without {mod} (default %(default)s)")
    p.add_argument("--censoring-rate", type=float, default=defaults.censoring_rate,
                   help="target censored fraction (default %(default)s)")
    p.add_argument("--signal", choices=["additive", "interaction"], default=defaults.signal,
                   help="planted log-hazard: 'additive' (linear in the latents) or 'interaction' (adds spatial, "
                   "pathway x mutation and lab-acceleration terms), e.g. --signal interaction (default %(default)s)")
    p.add_argument("--thumbnails", action="store_true", help="also paint an H&E-like thumbnail per slide (from its "
                   "planted tissue map), so that reports show their top patches as image crops")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace) -> SyntheticConfig:
    """The :class:`SyntheticConfig` the options ask for (invalid values raise ConfigError, exit code 2)."""
    return dataclasses.replace(
        SyntheticConfig(),
        patients=args.patients,
        seed=args.seed,
        patches_per_slide=args.patches_per_slide,
        patches_per_slide_sigma=args.patches_per_slide_sigma,
        slides_per_patient=tuple(args.slides_per_patient),
        embed_dim=args.embed_dim,
        n_genes=args.n_genes,
        n_pathways=args.n_pathways,
        n_arms=args.n_arms,
        missing_pathology=args.missing_pathology,
        missing_genomics=args.missing_genomics,
        missing_ehr=args.missing_ehr,
        censoring_rate=args.censoring_rate,
        signal=args.signal,
    )


def run(args: argparse.Namespace) -> int:
    """Generate the cohort and print the manifest path."""
    check_out(args.out, folder=True)
    cfg = config_from_args(args)
    start = time.perf_counter()
    manifest = generate_synthetic_cohort(args.out, cfg, overwrite=args.overwrite, thumbnails=args.thumbnails)
    seconds = time.perf_counter() - start
    print(manifest)
    logging.getLogger(__name__).info("wrote %d patients in %.1f s", cfg.patients, seconds)
    return 0
