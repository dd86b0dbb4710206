"""Child of tests/reliability/test_followups_multiprocess.py (not collected by pytest); run under ``torchrun``.

usage: torchrun --nproc_per_node=2 followups_mp_child.py CONFIG MANIFEST OUT_ROOT LOG_DIR

Every process runs ``multimodal train``, ``predict`` and ``cv`` through the Python API (as ``accelerate launch
multimodal ...`` does) into OUT_ROOT. A Python audit hook records every file-system change a process makes under
OUT_ROOT (opening for writing, mkdir, rename/replace, remove, rmtree); each process writes its list to
LOG_DIR/rank<RANK>.json at the end.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate", "os.symlink",
            "os.link", "shutil.copyfile", "shutil.copytree", "shutil.move"}


def _recorder(root: Path, log: list[list[str]]):
    root_s = str(root.resolve())

    def under(p: object) -> bool:
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        return isinstance(p, str | os.PathLike) and os.path.abspath(os.fspath(p)).startswith(root_s)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and under(path):
                log.append([event, os.fspath(path)])
        elif event in _CHANGES and args and any(under(a) for a in args[:2]):
            log.append([event, *[os.fspath(a) for a in args[:2] if isinstance(a, str | bytes | os.PathLike)]])

    return hook


def main() -> None:
    config, manifest, root, log_dir = (Path(a) for a in sys.argv[1:5])
    import torch

    torch.set_num_threads(1)
    from multimodal import api

    log: list[list[str]] = []
    sys.addaudithook(_recorder(root, log))
    api.train_pipeline(config, root / "pipeline")
    n = api.predict_to_parquet(root / "pipeline", manifest, root / "preds.parquet")
    summary = api.run_cv(config, root / "run")
    rank = int(os.environ.get("RANK", "0"))
    (log_dir / f"rank{rank}.json").write_text(json.dumps({"changes": log, "n_predicted": n,
                                                          "methods": sorted(summary["methods"])}))


if __name__ == "__main__":
    main()
    import torch.distributed as dist

    if dist.is_initialized():  # a clean shutdown: exiting with live gloo threads can abort ("terminate called ...")
        dist.destroy_process_group()
