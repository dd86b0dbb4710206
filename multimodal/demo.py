"""``make demo``: the main job on the embedded synthetic cohort, end to end.

synth → validate → cross-validated study (our model vs ablations and baselines, oracle) → train a pipeline →
explain one patient → per-patient report (HTML + PDF) → cohort report. Prints the summary table and output paths.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from multimodal.errors import MultimodalError

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m multimodal.demo", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--patients", type=int, default=200)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    try:
        return run(args.out, args.patients, args.config, args.overrides)
    except MultimodalError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return exc.exit_code


def run(out: Path, patients: int, config: Path, overrides: list[str]) -> int:
    from multimodal.cohorts.synthetic import SyntheticConfig, generate_synthetic_cohort
    from multimodal.cohorts.validate import validate_manifest
    from multimodal.experiment import load_experiment
    from multimodal.study import Study, summary_markdown

    t0 = time.perf_counter()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cohort_dir = out / "cohort"
    print(f"[1/6] synthetic cohort: {patients} patients -> {cohort_dir}", flush=True)
    manifest = generate_synthetic_cohort(cohort_dir, SyntheticConfig(patients=patients, seed=0), overwrite=True,
                                         thumbnails=True)  # the patient report shows its top patches as crops

    print("[2/6] validate", flush=True)
    report = validate_manifest(manifest)
    report.raise_if_invalid()
    print(f"      valid: {len(report.problems)} problems, {len(report.warnings)} warnings", flush=True)

    print("[3/6] cross-validated study (model, ablations, baselines on identical folds)", flush=True)
    cfg = load_experiment(config, [f"data.manifest={manifest}", *overrides])
    run_dir = out / "cv"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    summary = Study(cfg).run(run_dir, progress=lambda s: print("      " + s, flush=True))

    pipe_dir = out / "pipeline"
    report_dir = out / "patient_report"
    cohort_report_dir = out / "cohort_report"
    print("[4/6] train the pipeline on all patients", flush=True)
    from multimodal.api import attach_validation, train_pipeline

    train_pipeline(config, pipe_dir, overrides=[f"data.manifest={manifest}", *overrides], overwrite=True)
    attach_validation(pipe_dir, run_dir / "summary.json")

    paths: dict[str, Path] = {}
    try:
        from multimodal.api import report_patient

        print("[5/6] explain one patient and write the report", flush=True)
        pid = _example_patient(manifest)
        paths.update(report_patient(pipe_dir, manifest, pid, report_dir, overwrite=True))
        paths.update(_page_pictures(report_dir / "report.pdf", "report_pages"))
    except ImportError as exc:  # explanations not installed in this build
        print(f"      skipped: {exc}")
    try:
        from multimodal.api import cohort_report

        print("[6/6] cohort report", flush=True)
        paths.update({f"cohort_{k}": v for k, v in cohort_report(run_dir, cohort_report_dir, overwrite=True).items()})
        paths.update(_page_pictures(cohort_report_dir / "cohort_report.pdf", "cohort_pages"))
    except ImportError as exc:
        print(f"      skipped: {exc}")

    print()
    print(summary_markdown(summary))
    print(f"done in {time.perf_counter() - t0:.0f} s. Outputs:")
    print(f"  cohort:          {manifest}")
    print(f"  study:           {run_dir}/summary.md, {run_dir}/summary.json, {run_dir}/predictions.parquet")
    print(f"  pipeline:        {pipe_dir} (model card: {pipe_dir}/MODEL_CARD.md)")
    for k, v in paths.items():
        print(f"  {k + ':':<16} {v}")
    return 0


def _page_pictures(pdf: Path, key: str) -> dict[str, Path]:
    """PNGs of the report's pages beside it (``<name>-<page>.png``) for a human to look at; none without pdftoppm."""
    from multimodal.report.pages import pdf_pages_to_png

    pages = pdf_pages_to_png(pdf, pdf.parent, pdf.stem) if pdf.exists() else []
    if not pages:
        print("      page pictures skipped: pdftoppm (poppler-utils) not installed")
        return {}
    print(f"      {len(pages)} page pictures beside {pdf.name}: {pages[0].name} … {pages[-1].name}", flush=True)
    return {key: pages[0]}


def _example_patient(manifest: Path) -> str:
    """A patient with every modality present (the most informative report)."""
    from multimodal.cohorts.cohort import Cohort

    c = Cohort.from_manifest(manifest)
    full = [p for p in c.patient_ids if all(c.has(m, p) for m in c.modalities)]
    return (full or c.patient_ids)[0]


if __name__ == "__main__":
    sys.exit(main())
