"""A Lightning training script for the tests: ``python -m tests.infer.lightning_run OUT DEVICES
PLAN`` (Lightning's ``"ddp"`` strategy starts the other processes by running this command
again). PLAN ``same``: 2 epochs of direct sampling; ``resume``: under LRT, 4 epochs in one go,
then 2 epochs saved to a checkpoint and resumed to 4. Each rank saves what it saw to
OUT/<phase>-rank<r>.pt."""

from __future__ import annotations

import sys
import warnings

import lightning.pytorch as L
import pyro
import torch

from pyro_varnet.distributed import leave
from pyro_varnet.lightning import VarnetModule, global_batches

from .dist_workers import BATCH, _params, toy


class Record(L.Callback):
    """This rank's data term and KL after every step."""

    def __init__(self) -> None:
        self.data, self.kl = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.data.append(float(module.elbo.last_tensors["data"]))
        self.kl.append(float(module.elbo.last_tensors["kl"]))


def run(out: str, phase: str, devices: int, epochs: int, lrt, ckpt_in=None, ckpt_out=None) -> None:
    pyro.set_rng_seed(0)
    model, guide, (x, y) = toy("layer")
    module = VarnetModule(model, guide, example=(x, y), lr=1e-2, lrt=lrt)
    record = Record()
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[record],
    )  # fmt: skip
    trainer.fit(module, global_batches(x, y, BATCH, seed=0), ckpt_path=ckpt_in)
    if ckpt_out:
        trainer.save_checkpoint(ckpt_out)  # every rank: the RNG states are gathered
    result = {"data": record.data, "kl": record.kl, "state": _params(model, guide)}
    torch.save(result, f"{out}/{phase}-rank{trainer.global_rank}.pt")


def main(out: str, devices: int, plan: str) -> None:
    warnings.filterwarnings("ignore")  # Lightning's advice on workers and loggers
    torch.set_num_threads(1)
    if plan == "same":
        run(out, f"same{devices}", devices, 2, False)
    else:
        run(out, "whole", devices, 4, True)
        run(out, "first", devices, 2, True, ckpt_out=f"{out}/half.ckpt")
        run(out, "resumed", devices, 4, True, ckpt_in=f"{out}/half.ckpt")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        leave()  # Lightning keeps its group alive; torn down unsynchronised at exit, a rank aborted (SIGABRT)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
