"""Adapter benchmarks (issue #3): EHR tokenization of a 10M-event MEDS dataset and slide-bag reads.

Writes ``bench/results/adapters.json`` with ``ehr_events_per_s``, ``ehr_peak_rss_mb``, ``slide_read_gb_per_s`` and
``slide_sample_rss_growth_mb`` (targets: >= 1M events/s, < 4 GB; >= 1 GB/s, < 100 MB).

Usage: ``python -m bench.adapters`` (``--quick``: 5k subjects and 1M events instead of 50k and 10M).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench import bench_ehr, bench_slides
from bench.common import write_results

QUICK_EHR = ["--subjects", "5000", "--events", "1000000"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 1M-event EHR dataset (5k subjects)")
    return ap


def bench_config(argv: list[str] | None = None) -> dict[str, Any]:
    """The settings of ``python -m bench.adapters ARGV`` (``None``: the defaults): both sub-benchmarks' configs."""
    a = _parser().parse_args(argv or [])
    return {"quick": a.quick, "ehr": bench_ehr.bench_config(QUICK_EHR if a.quick else []),
            "slides": bench_slides.bench_config([])}


def run(config: dict[str, Any]) -> dict:
    ehr_cfg, sl = config["ehr"], config["slides"]
    ehr = bench_ehr.run(ehr_cfg["n_subjects"], ehr_cfg["n_events"], transform_all=ehr_cfg["transform_all"])
    slides = bench_slides.run(sl["patches"], sl["dim"], sample=sl["sample"], trident_layout=sl["trident_layout"])
    res = {"ehr": ehr, "slides": slides}
    for k in ("ehr_events_per_s", "ehr_peak_rss_mb"):
        res[k] = ehr.get(k)
    for k in ("slide_read_gb_per_s", "slide_sample_rss_growth_mb"):
        res[k] = slides.get(k)
    res["targets"] = {"ehr_events_per_s": ">= 1e6", "ehr_peak_rss_mb": "< 4096", "slide_read_gb_per_s": ">= 1",
                      "slide_sample_rss_growth_mb": "< 100"}
    return res


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = bench_config(argv)
    out = run(config)
    write_results("adapters", out, config)
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
