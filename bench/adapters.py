"""Adapter benchmarks (issue #3): EHR tokenization of a 10M-event MEDS dataset and slide-bag reads.

Writes ``bench/results/adapters.json`` with ``ehr_events_per_s``, ``ehr_peak_rss_mb``, ``slide_read_gb_per_s`` and
``slide_sample_rss_growth_mb`` (targets: >= 1M events/s, < 4 GB; >= 1 GB/s, < 100 MB).
"""

from __future__ import annotations

import json
import sys

from bench import bench_ehr, bench_slides
from bench.common import write_results


def run(quick: bool = False) -> dict:
    ehr = bench_ehr.run(n_subjects=5_000, n_events=1_000_000) if quick else bench_ehr.run()
    slides = bench_slides.run()
    res = {"ehr": ehr, "slides": slides}
    for k in ("ehr_events_per_s", "ehr_peak_rss_mb"):
        res[k] = ehr.get(k)
    for k in ("slide_read_gb_per_s", "slide_sample_rss_growth_mb"):
        res[k] = slides.get(k)
    res["targets"] = {"ehr_events_per_s": ">= 1e6", "ehr_peak_rss_mb": "< 4096", "slide_read_gb_per_s": ">= 1",
                      "slide_sample_rss_growth_mb": "< 100"}
    return res


if __name__ == "__main__":
    out = run(quick="--quick" in sys.argv)
    write_results("adapters", out)
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)}, indent=2))
