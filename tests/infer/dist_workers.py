"""Functions run by :func:`pyro_varnet.distributed.spawn` in the data-parallel tests: at a
module's top level so that the spawned processes import them by name."""

from __future__ import annotations

import pyro
import torch
from torch.utils.data import DataLoader, TensorDataset

from pyro_varnet import distributed
from pyro_varnet.data import toy_problem
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import Callback, fit
from pyro_varnet.models import BayesLinear, Classifier, ToyNet

N_PER_CLASS = 50  # 200 objects: global batch 40 -> 5 steps per epoch
BATCH = 40


def toy(family: str = "layer", hidden: int = 16, n_per_class: int = N_PER_CLASS):
    x, y = toy_problem(n_per_class, seed=1)
    pyro.clear_param_store()
    torch.manual_seed(0)
    model = Classifier(ToyNet(hidden=hidden, bayesian=("fc1", "fc5")), num_data=len(x))
    guide = NetworkGuide(model, families={"*": family})
    return model, guide, (x, y)


class StepLosses(Callback):
    """This rank's data term and KL after every step (the global loss is their mean over ranks)."""

    def __init__(self) -> None:
        self.data, self.kl = [], []

    def on_step_end(self, loop, batch) -> None:
        last = loop.step.loss_module.last_tensors
        self.data.append(float(last["data"]))
        self.kl.append(float(last["kl"]))


def _params(*modules) -> dict[str, torch.Tensor]:
    return {
        f"{i}.{k}": v.detach().clone()
        for i, m in enumerate(modules)
        for k, v in [*m.named_parameters(), *m.named_buffers()]
    }


def train_toy(epochs: int, lrt, family: str = "layer", seed: int = 0, checkpoint=None, resume=False, **kw) -> dict:
    """Train the toy problem (global batch 40); per-step losses, final state, history."""
    model, guide, data = toy(family)
    losses = StepLosses()
    history = fit(
        model, guide, data, epochs=epochs, batch_size=BATCH, lr=1e-2, lrt=lrt, seed=seed, progress=False,
        callbacks=[losses], checkpoint=checkpoint, resume=resume, **kw,
    )  # fmt: skip
    return {"data": losses.data, "kl": losses.kl, "state": _params(model, guide), "history": history.epochs}


def final_elbos(seeds, epochs: int) -> list[float]:
    """Under LRT with each rank's own noise: the last epoch's ELBO for each seed."""
    return [train_toy(epochs, True, seed=s)["history"][-1]["elbo"] for s in seeds]


def resume_pair(folder: str) -> dict:
    """4 epochs in one go, and 2 + 2 epochs through a checkpoint, under LRT with per-rank noise."""
    whole = train_toy(4, True, checkpoint=f"{folder}/whole.pt", seed=3)
    train_toy(2, True, checkpoint=f"{folder}/split.pt", seed=3)
    pyro.set_rng_seed(12345)  # whatever the process did in between, resume restores every RNG
    split = train_toy(4, True, checkpoint=f"{folder}/split.pt", seed=3, resume=True)
    return {"whole": whole, "split": split}


def _message(fn) -> str:
    try:
        fn()
    except Exception as e:  # the test checks type and wording
        return f"{type(e).__name__}: {e}"
    return "no error"


def pitfalls() -> dict[str, str]:
    """What each pitfall of a data-parallel run gives."""
    rank, world = distributed.world()
    out = {}

    def shard_num_data():
        model, guide, (x, y) = toy()
        model.num_data = len(x) // world
        fit(model, guide, (x, y), epochs=1, batch_size=BATCH, progress=False)

    out["num_data"] = _message(shard_num_data)

    def plain_loader():
        model, guide, (x, y) = toy()
        fit(model, guide, DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True), epochs=1, progress=False)

    out["loader"] = _message(plain_loader)

    def different_data():
        model, guide, (x, y) = toy()
        fit(model, guide, (x + rank, y), epochs=1, batch_size=BATCH, progress=False)

    out["data"] = _message(different_data)

    def batchnorm(sync):
        def run():
            x, y = toy_problem(N_PER_CLASS, seed=1)
            net = torch.nn.Sequential(BayesLinear(2, 8, prior=None), torch.nn.BatchNorm1d(8), BayesLinear(8, 4))
            model = Classifier(pyro.nn.PyroModule[torch.nn.Sequential](*net), num_data=len(x))
            fit(model, NetworkGuide(model), (x, y), epochs=1, batch_size=BATCH, progress=False, sync_batchnorm=sync)

        return run

    out["batchnorm"] = _message(batchnorm(None))
    out["batchnorm_sync"] = _message(batchnorm(True))
    out["batchnorm_off"] = _message(batchnorm(False))
    return out
