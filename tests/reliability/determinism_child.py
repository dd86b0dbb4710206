"""Child process for the determinism tests (not collected by pytest).

usage: python determinism_child.py MANIFEST CONFIG OUT_DIR [--epochs N] [--batch-size B]

Trains the tiny model on a fixed 30-patient training set without validation (the last epoch is kept), dropout and
modality dropout off, and writes (rank 0 only) ``OUT_DIR/step_<k>.safetensors`` (the weights after each optimizer
step) and ``OUT_DIR/result.json`` (patients, risks, number of processes). Run directly (1 process) or under
``torchrun --standalone --nproc_per_node=2`` (DDP on CPU, with ``ACCELERATE_USE_CPU=true``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from safetensors.torch import save_file

    from multimodal.data import PatientDataset
    from multimodal.experiment import load_cohort, load_experiment, make_adapters
    from multimodal.pipeline import build_model
    from multimodal.training import fit_model, make_accelerator, predict_dataset

    cfg = load_experiment(args.config, [f"data.manifest={args.manifest}", f"training.epochs={args.epochs}",
                                        f"training.batch_size={args.batch_size}", "model.dropout=0.0",
                                        "model.modality_dropout=0.0"])
    cohort = load_cohort(cfg.data)
    ids = cohort.patient_ids
    train = ids[:30]
    adapters = {m: a.fit(cohort, train) for m, a in make_adapters(cfg).items()}
    torch.manual_seed(0)
    model = build_model(cfg.model, adapters, cohort, train, task=cfg.task)
    acc = make_accelerator(cfg.training)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def on_step(step: int) -> None:
        if acc.is_main_process:
            save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
                      str(out / f"step_{step}.safetensors"))

    train_ds = PatientDataset(cohort, adapters, train, train=True, seed=0)
    res = fit_model(model, train_ds, None, cfg.training, seed=0, accelerator=acc, time_unit=cohort.time_unit,
                    num_classes=max(cohort.response_classes, 2), on_step=on_step)
    pred = predict_dataset(model, PatientDataset(cohort, adapters, ids, train=False), acc, batch_size=4,
                           time_unit=cohort.time_unit)
    if acc.is_main_process:
        (out / "result.json").write_text(json.dumps({
            "num_processes": res.num_processes,
            "patients": pred["patient_id"].tolist(),
            "risk": pred["risk"].to_numpy(np.float64).tolist(),
        }))


if __name__ == "__main__":
    main()
    import torch.distributed as dist

    if dist.is_initialized():  # a clean shutdown: exiting with live gloo threads can abort ("terminate called ...")
        dist.destroy_process_group()
