"""Data-parallel training (issue: training beyond one machine): 2 CPU processes joined by gloo
against one process, each test a few seconds of spawning plus training on the toy problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pyro_varnet import distributed
from pyro_varnet.infer import CheckpointError, initialize
from pyro_varnet.infer.batches import tensor_loader

from . import dist_workers as W


def _global_loss(runs) -> np.ndarray:
    """Per step: the mean over ranks of each rank's loss (-data + KL), as the loop records it."""
    data = np.mean([r["data"] for r in runs], 0)
    return -data + np.asarray(runs[0]["kl"])


def test_sharded_batches_are_the_single_process_batches():
    x, y = torch.arange(23.0)[:, None], torch.arange(23)
    one = [b[1].tolist() for b in tensor_loader(x, y, 6, torch.Generator().manual_seed(0))]
    parts = [list(tensor_loader(x, y, 6, torch.Generator().manual_seed(0), r, 3)) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]  # the last global batch (5 objects) splits 2/2/1
    for step, batch in enumerate(one):
        assert sorted(sum((p[step][1].tolist() for p in parts), [])) == sorted(batch)
    # a last global batch smaller than the world is left out on every rank (equal step counts)
    parts = [list(tensor_loader(x, y, 11, torch.Generator().manual_seed(0), r, 2)) for r in range(2)]
    assert [len(p) for p in parts] == [2, 2]


def test_two_processes_reproduce_one_with_direct_sampling():
    """Same global batch, one weight draw per step shared by the ranks: the loss trajectory of
    2 processes is that of 1 (10 steps), the ranks' parameters are identical, the KL is counted
    once, and the sharded evaluation gathers the single-process metrics."""
    one = _train_with_eval()
    two = distributed.spawn(_train_with_eval, 2)
    loss1, loss2 = -np.asarray(one["data"]) + np.asarray(one["kl"]), _global_loss(two)
    assert len(loss1) == len(loss2) == 10
    np.testing.assert_allclose(loss2, loss1, rtol=1e-6)
    np.testing.assert_allclose(two[0]["kl"], one["kl"], rtol=1e-6)  # counted once, the 1-process value
    assert two[0]["kl"] == two[1]["kl"]
    for k, v in two[0]["state"].items():
        assert torch.equal(v, two[1]["state"][k]), k  # parameters identical across ranks
        torch.testing.assert_close(v, one["state"][k], rtol=1e-5, atol=1e-6)
    for h1, h2 in zip(one["history"], two[0]["history"]):
        assert h2["elbo"] == pytest.approx(h1["elbo"], rel=1e-6)
    assert two[0]["history"][-1]["test_acc_mean"] == one["history"][-1]["test_acc_mean"]
    assert two[0]["history"][-1]["test_nll_mean"] == pytest.approx(one["history"][-1]["test_nll_mean"], rel=1e-5)
    assert _but_seconds(two[0]["history"]) == _but_seconds(two[1]["history"])


def _train_with_eval():
    return W.train_toy(2, False, family="layer", test_data=W.toy(n_per_class=30)[2], eval_modes=("mean",), eval_every=2)


def _but_seconds(history) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history]


def test_lrt_with_per_rank_noise_trains_as_one_process():
    """Under LRT each rank draws its own per-object noise: not the same numbers as one process,
    the same statistics — the final ELBO of 1 and 2 processes agrees within 2 standard errors
    over 3 seeds."""
    seeds, epochs = (0, 1, 2), 15
    one = np.asarray(W.final_elbos(seeds, epochs))
    two = distributed.spawn(W.final_elbos, 2, seeds, epochs)
    assert two[0] == two[1]  # the recorded ELBO is the mean over ranks, the same on both
    two = np.asarray(two[0])
    se = math.sqrt(one.var(ddof=1) / len(seeds) + two.var(ddof=1) / len(seeds))
    assert abs(one.mean() - two.mean()) <= 2 * se, (one, two, se)
    assert not np.allclose(one, two)  # the noise is the ranks' own, not the single-process draw


def test_two_processes_resume_exactly(tmp_path):
    """2 + 2 epochs through a checkpoint equal 4 epochs bit for bit (per-rank LRT noise: every
    rank's RNG state is in the checkpoint)."""
    runs = distributed.spawn(W.resume_pair, 2, str(tmp_path))
    for rank in (0, 1):
        whole, split = runs[rank]["whole"], runs[rank]["split"]
        for k, v in whole["state"].items():
            assert torch.equal(v, split["state"][k]), (rank, k)
        assert _but_seconds(whole["history"]) == _but_seconds(split["history"])
        assert whole["data"][-10:] == split["data"]  # the resumed steps: this rank's own batches and noise
    assert runs[0]["whole"]["data"] != runs[1]["whole"]["data"]  # the ranks' terms differ: their own objects
    # one process may continue a 2-process run only when told to (not exact: one stream, not two)
    with pytest.raises(CheckpointError, match="world_size 2 \\(now 1\\)"):
        W.train_toy(5, True, checkpoint=tmp_path / "split.pt", seed=3, resume=True)
    more = W.train_toy(5, True, checkpoint=tmp_path / "split.pt", seed=3, resume=True, overrides=["world_size"])
    assert [e["epoch"] for e in more["history"]] == [1, 2, 3, 4, 5] and "world_size" in more["history"][-1]["override"]


def test_each_pitfall_is_a_clear_error():
    out = distributed.spawn(W.pitfalls, 2)[0]
    assert out["num_data"].startswith("DistributedError") and "global N (200)" in out["num_data"]
    assert out["loader"].startswith("DistributedError") and "DistributedSampler" in out["loader"]
    assert out["data"].startswith("DistributedError") and "different tensors" in out["data"]
    assert out["batchnorm"].startswith("DistributedError") and "sync_batchnorm=False" in out["batchnorm"]
    assert out["batchnorm_sync"].startswith("DistributedError") and "GPUs only" in out["batchnorm_sync"]
    assert out["batchnorm_off"] == "no error"


def test_wrapping_before_the_guide_exists_is_refused():
    """DDP registers the parameters it sees; a guide built later would train each rank's sites
    alone (the ranks diverge without any error). ``wrap`` refuses, and ``fit`` builds the guide
    before wrapping (the tests above)."""
    model, guide, (x, y) = W.toy()
    loss = __import__("pyro_varnet.infer", fromlist=["DecomposedELBO"]).DecomposedELBO()(model, guide)
    with pytest.raises(distributed.DistributedError, match="initialize"):
        distributed.wrap(loss)
    initialize(model, guide, x[:2], y[:2])
    assert distributed._guide_built(guide)


def _deterministic_net():
    """A network without latent sites (a deterministic baseline) trains data-parallel too."""
    model, guide, data = W.toy()
    from pyro_varnet.models import Classifier, ToyNet

    model = Classifier(ToyNet(hidden=8, bayesian=()), num_data=len(data[0]))
    guide = type(guide)(model)
    history = __import__("pyro_varnet.infer", fromlist=["fit"]).fit(
        model, guide, data, epochs=1, batch_size=W.BATCH, progress=False, seed=0
    )
    return history.epochs[-1]["elbo"], {k: v.detach().clone() for k, v in model.named_parameters()}


def test_a_network_without_latent_sites_trains_on_two_processes():
    runs = distributed.spawn(_deterministic_net, 2)
    assert runs[0][0] == runs[1][0] and all(torch.equal(v, runs[1][1][k]) for k, v in runs[0][1].items())


def test_rank_noise_is_checked():
    model, guide, data = W.toy()
    with pytest.raises(ValueError, match="rank_noise"):
        __import__("pyro_varnet.infer", fromlist=["fit"]).fit(model, guide, data, rank_noise="per-rank")


def test_batchnorm_becomes_sync_batchnorm_on_gpus_and_keeps_its_parameters():
    """On CUDA ``fit`` converts BatchNorm to SyncBatchNorm in place (checked here on the CPU in eval
    mode, where SyncBatchNorm needs no process group): the optimizer's groups still hold every
    parameter under its Pyro name."""
    from pyro_varnet.guides import NetworkGuide
    from pyro_varnet.infer import DecomposedELBO, param_groups
    from pyro_varnet.models import Classifier, LeNet5

    model = Classifier(LeNet5(batchnorm=True), num_data=100)
    assert distributed.check_batchnorm(model, torch.device("cuda"), None) is True
    assert distributed.check_batchnorm(model, torch.device("cpu"), False) is False
    torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    guide = NetworkGuide(model)
    initialize(model, guide, torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))
    loss = DecomposedELBO()(model, guide)
    grouped = {id(p) for g in param_groups(loss, 1e-3, None) for p in g["params"]}
    assert grouped == {id(p) for p in loss.parameters()}
