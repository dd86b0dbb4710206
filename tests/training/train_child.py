"""Child process for the fault-injection and multi-process tests (not collected by pytest).

usage: python train_child.py MANIFEST CONFIG OUT_DIR [--kill-at STEP] [--ddp]
Trains on a fixed split with checkpoints every step; writes OUT_DIR/predictions.json (rank 0) with the final
predictions of every patient and facts about the run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import TRAIN_OVERRIDES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--kill-at", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from multimodal.data import PatientDataset
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.pipeline import build_model
    from multimodal.training import fit_model, make_accelerator, predict_dataset

    cfg = load_experiment(args.config, [f"data.manifest={args.manifest}", *TRAIN_OVERRIDES,
                                        f"training.epochs={args.epochs}", "training.checkpoint_every=1",
                                        "training.average_epochs=3",
                                        "model.modality_dropout=0.3"])
    cohort = load_cohort(cfg.data)
    ids = cohort.patient_ids
    train, val = ids[:30], ids[30:]
    adapters = {m: a.fit(cohort, train) for m, a in make_adapters(cfg).items()}
    torch.manual_seed(0)
    model = build_model(cfg.model, adapters, cohort, train, task=cfg.task)
    acc = make_accelerator(cfg.training, Path(args.out))

    def on_step(step: int) -> None:
        if os.environ.get("DEBUG_RNG"):
            print("STEP", step, int(torch.get_rng_state().float().sum()), float(sum(p.detach().sum() for p in model.parameters())), file=sys.stderr)
        if args.kill_at and step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train_ds = PatientDataset(cohort, adapters, train, train=True, seed=0)
    val_ds = PatientDataset(cohort, adapters, val, train=False, seed=0)
    res = fit_model(model, train_ds, val_ds, cfg.training, seed=0, out_dir=args.out, accelerator=acc,
                    on_step=on_step, time_unit=cohort.time_unit)
    all_ds = PatientDataset(cohort, adapters, ids, train=False)
    pred = predict_dataset(model, all_ds, acc, batch_size=4, time_unit=cohort.time_unit)
    if acc.is_main_process:
        facts = {
            "num_processes": res.num_processes,
            "ddp": res.wrapper == "DistributedDataParallel",
            "best_epoch": res.best_epoch,
            "best_score": res.best_score,
            "averaged_epochs": res.averaged_epochs,
            "resumed_from": res.resumed_from,
            "patients": pred["patient_id"].tolist(),
            "risk": pred["risk"].to_numpy(np.float64).tolist(),
        }
        Path(args.out, "predictions.json").write_text(json.dumps(facts))


if __name__ == "__main__":
    main()
    import torch.distributed as dist

    if dist.is_initialized():  # a clean shutdown: exiting with live gloo threads can abort ("terminate called ...")
        dist.destroy_process_group()
