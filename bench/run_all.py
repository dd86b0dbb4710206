"""``make bench``: every benchmark, each writing its JSON under bench/results/.

Each module has ``bench_config(argv=None)``, the config its result records (``bench/common.py``); a module that is
not there (yet) is skipped.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

BENCHES = ["bench.adapters", "bench.throughput", "bench.train", "bench.explain", "bench.predict",
           "bench.response", "bench.ceiling", "bench.multitask", "bench.fusion_value"]


def main() -> int:
    failed = []
    for mod in BENCHES:
        try:
            importlib.util.find_spec(mod)
        except ModuleNotFoundError:
            continue
        if importlib.util.find_spec(mod) is None:
            print(f"skip {mod} (not present)")
            continue
        print(f"== {mod}", flush=True)
        # each benchmark in its own process: clean RSS measurements, no shared state
        rc = subprocess.call([sys.executable, "-m", mod])
        if rc:
            failed.append(mod)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
