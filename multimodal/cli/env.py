"""``multimodal env``: versions and machine facts for bug reports."""

from __future__ import annotations

import argparse
import json
import os
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions for bug reports", description=__doc__,
                       epilog="example:\n  multimodal env --json", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from multimodal.provenance import git_commit, package_versions

    info = {
        "versions": package_versions(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "git_commit": git_commit(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            if isinstance(v, dict):
                print(f"{k}:")
                for kk, vv in v.items():
                    print(f"  {kk}: {vv}")
            else:
                print(f"{k}: {v}")
    return 0
