"""The open engine: data loaders, Pyro-native state, other latent sites, user optimizers, seeds."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.infer.autoguide import AutoGuideList, AutoNormal
from pyro.nn import PyroModule
from torch.utils.data import DataLoader, TensorDataset

from pyro_varnet.data import toy_problem
from pyro_varnet.guides import Auto, NetworkGuide, ZeroMean
from pyro_varnet.infer import DecomposedELBO, Loop, Step, fit, initialize, predict
from pyro_varnet.models import MLP, BayesLinear, Classifier, LeNet5


def _toy(batchnorm=False, seed=0):
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    if batchnorm:
        net = LeNet5(batchnorm=True, bayesian=["fc1", "fc2"])
        x, y = torch.rand(48, 1, 28, 28), torch.randint(0, 10, (48,))
    else:
        net, (x, y) = MLP([2, 16, 8, 4]), toy_problem(20, seed=3)
    model = Classifier(net, num_data=len(x))
    guide = NetworkGuide(model, default="layer", families={"fc2": ZeroMean()})
    return model, guide, (x, y)


KW = dict(epochs=3, batch_size=16, lr=1e-2, lr_schedule="linear", seed=7, progress=False)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_a_dataloader_gives_the_same_history_as_tensors(batchnorm):
    model, guide, data = _toy(batchnorm)
    with_tensors = fit(model, guide, data, test_data=data, eval_samples=3, **KW)
    # the loader fit builds from tensors: a shuffling DataLoader with a generator seeded by `seed`
    model, guide, data = _toy(batchnorm)
    loader = DataLoader(TensorDataset(*data), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7))
    with_loader = fit(model, guide, loader, test_data=data, eval_samples=3, **{**KW, "batch_size": 1})
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(with_loader) == strip(with_tensors)
    # an iterable of batches in a fixed order, as any data pipeline might give them
    model, guide, data = _toy(batchnorm)
    batches = [(data[0][i : i + 16], data[1][i : i + 16]) for i in range(0, len(data[0]), 16)]
    h = fit(model, guide, batches, epochs=2, lr=1e-2, progress=False, seed=0)
    assert len(h) == 2 and all(math.isfinite(e["elbo"]) for e in h)


def test_param_store_save_and_load_into_fresh_objects(tmp_path):
    model, guide, (x, y) = _toy(batchnorm=True)
    fit(model, guide, (x, y), **KW)
    torch.manual_seed(3)
    expected = predict(model, guide, x, mode="ensemble", num_samples=4)
    mean = predict(model, guide, x, mode="mean")
    pyro.get_param_store().save(tmp_path / "params.pt")
    sd_model, sd_guide = model.state_dict(), guide.state_dict()

    pyro.clear_param_store()
    model2, guide2, _ = _toy(batchnorm=True, seed=99)  # other initial values
    pyro.get_param_store().load(tmp_path / "params.pt")
    model2.load_state_dict(sd_model)  # BatchNorm statistics are buffers: not in the param store
    initialize(model2, guide2, x[:2])  # builds the guide (drawing initial values) and takes the stored ones
    torch.manual_seed(3)
    assert torch.equal(predict(model2, guide2, x, mode="ensemble", num_samples=4), expected)
    # ... and a state_dict round trip into a fresh guide that has never been called
    pyro.clear_param_store()
    model3, guide3, _ = _toy(batchnorm=True, seed=98)
    model3.load_state_dict(sd_model)
    guide3.load_state_dict(sd_guide)
    assert guide3.site_names == guide.site_names
    torch.manual_seed(3)
    assert torch.equal(predict(model3, guide3, x, mode="ensemble", num_samples=4), expected)
    assert torch.equal(predict(model3, guide3, x, mode="mean"), mean)


def test_training_with_module_local_params_gives_the_same_predictions():
    outs = {}
    for local in (False, True):
        with pyro.settings.context(module_local_params=local):
            model, guide, (x, y) = _toy(batchnorm=True)
            fit(model, guide, (x, y), **KW)
            torch.manual_seed(3)
            outs[local] = predict(model, guide, x, num_samples=4)
            if local:
                assert len(pyro.get_param_store()) == 0  # nothing went through the global store
    assert torch.equal(outs[True], outs[False])


class NoisyRegression(PyroModule):
    """A user's model: a Bayesian layer and a latent HalfNormal noise scale."""

    def __init__(self):
        super().__init__()
        self.lin = BayesLinear(3, 1, prior="normal")

    def forward(self, x, y=None):
        sigma = pyro.sample("sigma", dist.HalfNormal(torch.tensor(1.0)))
        mean = self.lin(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


def test_other_latent_sites_get_a_support_aware_family():
    torch.manual_seed(0)
    x = torch.randn(200, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 * torch.randn(200)
    model = NoisyRegression()
    guide = NetworkGuide(model, default="additive")
    guide(x)  # this crashed before: the zero placeholder was not a valid scale
    assert isinstance(guide.site("sigma"), type(Auto().build_site(torch.Size(), dist.HalfNormal(1.0).support)))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.03}), DecomposedELBO(lrt=True))
    for _ in range(1500):
        svi.step(x, y)
    sigma = float(guide.median()["sigma"])
    assert abs(sigma - 0.3) < 0.05, sigma  # the posterior of sigma with 200 points: sd ~ 0.015
    assert (guide.site("sigma")().sample((100,)) > 0).all()


def test_a_pyro_autoguide_can_take_the_other_sites():
    """NetworkGuide on the weights, Pyro's AutoNormal on the rest, composed by AutoGuideList."""
    torch.manual_seed(0)
    x = torch.randn(100, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3 * torch.randn(100)
    model = NoisyRegression()
    guide = AutoGuideList(model)
    guide.append(AutoNormal(pyro.poutine.block(model, expose=["sigma"])))  # in the model's order
    guide.append(NetworkGuide(pyro.poutine.block(model, hide=["sigma"]), default="additive"))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.03}), DecomposedELBO())
    losses = [svi.step(x, y) for _ in range(300)]
    assert losses[-1] < losses[0]


def test_user_optimizer_scheduler_and_the_pieces_of_fit():
    model, guide, (x, y) = _toy()
    initialize(model, guide, x[:2], y[:2])
    loss = DecomposedELBO(lrt=True)(model, guide)
    sgd = torch.optim.SGD(loss.parameters(), lr=1e-4, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(sgd, step_size=1, gamma=0.5)
    h = fit(model, guide, (x, y), epochs=3, optimizer=sgd, scheduler=sched, progress=False)
    assert h["lr"] == pytest.approx([5e-5, 2.5e-5, 1.25e-5])  # stepped after each epoch
    # a factory receives the parameter groups (one per lr multiplier)
    model, guide, (x, y) = _toy()
    seen = []
    fit(model, guide, (x, y), lr_multipliers={"*log_alpha*": 10}, progress=False,
        optimizer=lambda groups: seen.extend(groups) or torch.optim.Adam(groups))  # fmt: skip
    assert sorted(g["lr_mult"] for g in seen) == [1.0, 10.0]
    # an optimizer built before the guide has its parameters is refused with the fix
    model, guide, (x, y) = _toy()
    with pytest.raises(ValueError, match="initialize"):
        fit(model, guide, (x, y), optimizer=torch.optim.Adam(model.parameters()), progress=False)
    # the loop by hand
    model, guide, (x, y) = _toy()
    initialize(model, guide, x[:2], y[:2])
    loss = DecomposedELBO(lrt=True)(model, guide)
    step = Step(loss, torch.optim.Adam(loss.parameters(), lr=1e-2))
    h = Loop(step, DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True), epochs=4, progress=False).run()
    assert h.last["elbo"] > h.epochs[0]["elbo"] and set(h.last) >= {"elbo", "data", "kl", "kl/net.fc1.weight"}


def test_bad_engine_arguments():
    model, guide, (x, y) = _toy()
    with pytest.raises(ValueError, match="either lr_schedule or scheduler"):
        fit(model, guide, (x, y), lr_schedule="linear", scheduler=lambda o: None, progress=False)
    with pytest.raises(ValueError, match="scheduler_interval"):
        fit(model, guide, (x, y), scheduler_interval="batch", progress=False)
    with pytest.raises(TypeError, match="iterable of"):
        fit(model, guide, 5, progress=False)
    with pytest.raises(ValueError, match="targets >= 0 below 4"):
        fit(model, guide, (x, y), test_data=(x, y + 200), progress=False)
    with pytest.raises(TypeError, match="integer labels"):
        fit(model, guide, (x, y.bool()), progress=False)


def test_flush_subnormals_zeroes_exactly_the_subnormal_entries():
    from pyro_varnet.infer import flush_subnormals_

    for dtype in (torch.float32, torch.float64):
        tiny = torch.finfo(dtype).tiny
        t = torch.tensor([0.0, tiny, tiny / 4, -tiny / 1024, 1.0, -0.5, tiny * 2], dtype=dtype)
        assert flush_subnormals_([t, torch.arange(3)]) == 2  # integer tensors are skipped
        assert t.tolist() == [0.0, tiny, 0.0, 0.0, 1.0, -0.5, tiny * 2]


def test_fit_flushes_subnormals_from_parameters_and_adam_state():
    from pyro_varnet.infer import FlushSubnormals, Loop, Step, initialize

    x, y = toy_problem(50, seed=0)
    model = Classifier(MLP([2, 8, 4]), num_data=len(x))
    guide = NetworkGuide(model, default="zero-mean")
    initialize(model, guide, x[:2], y[:2])
    loss = DecomposedELBO(lrt=True)(model, guide)
    opt = torch.optim.Adam(loss.parameters(), lr=0.0)  # lr 0: only the flush changes the values
    step = Step(loss, opt)
    step(x[:20], y[:20])
    sigma = guide.site("net.fc1.weight").sigma
    with torch.no_grad():
        sigma[:3, 0] = torch.tensor([1e-40, -1e-41, 1e-3])
    idle = torch.nn.Parameter(torch.ones(3))  # gets no gradient: Adam leaves its state alone
    opt.add_param_group({"params": [idle]})
    opt.state[idle] = {"exp_avg": torch.tensor([1e-42, 1.0, -1e-40])}
    flush = FlushSubnormals(every=2)
    loop = Loop(step, [(x[:20], y[:20])] * 4, epochs=1, callbacks=[flush], progress=False)
    loop.run()
    assert flush.flushed == 4 and sigma[:3, 0].tolist() == [0.0, 0.0, pytest.approx(1e-3)]
    assert opt.state[idle]["exp_avg"].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="positive int"):
        FlushSubnormals(every=0)
