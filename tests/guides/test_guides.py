"""Guide families: every family x {linear, conv} x {LRT on, off} trains; composition; errors."""

import contextlib
import math

import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, TraceMeanField_ELBO
from pyro.nn import PyroModule

from pyro_varnet._sites import unwrap
from pyro_varnet.distributions import ZeroMeanNormal
from pyro_varnet.guides import (
    FAMILIES,
    Additive,
    AdditiveSite,
    Angle,
    AngleSite,
    Auto,
    AutoSite,
    BinaryDropout,
    DropoutSite,
    GaussianDropout,
    GaussianDropoutSite,
    Magnitude,
    MagnitudeSite,
    NetworkGuide,
    UniformVariance,
    UniformVarianceSite,
    ZeroMean,
    ZeroMeanSite,
    make_family,
)
from pyro_varnet.models import MLP, BayesConv2d, BayesLinear, Classifier
from pyro_varnet.poutine import flipout, local_reparameterization
from tests.helpers import FAMILY_NAMES


class TinyConvNet(PyroModule):
    def __init__(self):
        super().__init__()
        self.conv = BayesConv2d(1, 4, 3)
        self.fc = BayesLinear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _data(op):
    torch.manual_seed(0)
    y = torch.arange(24) % 3
    if op == "linear":
        return torch.randn(24, 4) + y[:, None].float(), y, MLP([4, 8, 3])
    return torch.randn(24, 1, 6, 6) + y[:, None, None, None].float(), y, TinyConvNet()


@pytest.mark.parametrize("lrt", [False, True])
@pytest.mark.parametrize("op", ["linear", "conv2d"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_trains(family, op, lrt):
    x, y, net = _data(op)
    model = Classifier(net, num_data=len(x))
    guide = NetworkGuide(model, default=family)
    # a signed σ moves by ~lr per Adam step, in absolute terms: a smaller lr for the zero-mean family
    lr = 0.01 if family == "zero-mean" else 0.05
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), TraceMeanField_ELBO())
    losses = []
    for _ in range(40):
        if lrt:
            with local_reparameterization():
                losses.append(svi.step(x, y))
        else:
            losses.append(svi.step(x, y))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    params = pyro.get_param_store()
    assert all(torch.isfinite(params[k]).all() for k in params.keys())


def test_composition_per_site():
    model = Classifier(MLP([4, 6, 5, 3]), num_data=10)
    guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean(), "*.fc3.*": "additive"})
    tr = pyro.poutine.trace(guide).get_trace(torch.randn(2, 4))
    kinds = {n: type(unwrap(tr.nodes[n]["fn"])[0]).__name__ for n in guide.site_names}
    assert kinds == {
        "net.fc1.weight": "ZeroMeanNormal",
        "net.fc2.weight": "GaussianDropoutNormal",
        "net.fc3.weight": "Normal",
    }
    assert guide.site("net.fc2.weight").log_alpha_param.shape == ()  # layer-wise
    assert hasattr(guide.site("net.fc3.weight"), "log_sigma2")  # additive
    assert guide.exact_lrt
    assert guide.log_alpha()["net.fc1.weight"].isinf().all()


@pytest.mark.parametrize("granularity,shape", [("layer", ()), ("neuron", (5, 1)), ("weight", (5, 4))])
def test_granularity_shapes(granularity, shape):
    site = GaussianDropout(granularity).build(torch.Size([5, 4]))
    assert site.log_alpha_param.shape == shape
    conv = GaussianDropout(granularity).build(torch.Size([5, 2, 3, 3]))
    expected = {"layer": (), "neuron": (5, 1, 1, 1), "weight": (5, 2, 3, 3)}[granularity]
    assert conv.log_alpha_param.shape == expected
    q = site.base()
    torch.testing.assert_close(q.scale.square(), site.log_alpha_param.exp() * site.theta.square())


def test_initialisation_is_configurable():
    site = GaussianDropout("layer", init_log_alpha=-8.0).build(torch.Size([3, 100]))
    assert site.log_alpha_param.item() == -8.0
    assert site.theta.abs().max() <= 0.1  # U(±1/sqrt(fan_in))
    assert ZeroMean(init_scale=0.3).build(torch.Size([2, 2])).scale().allclose(torch.full((2, 2), 0.3))
    signed = ZeroMean(parameterization="signed").build(torch.Size([2, 2]))
    assert isinstance(signed.base(), ZeroMeanNormal) and hasattr(signed, "sigma")
    assert hasattr(ZeroMean().build(torch.Size([2, 2])), "sigma")  # the authors' choice is the default
    assert hasattr(make_family("zero-mean-log").build(torch.Size([2, 2])), "log_sigma")
    assert Additive(init_log_sigma2=-6.0).build(torch.Size([2])).log_sigma2.eq(-6.0).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="expected alpha granularity 'layer', 'neuron' or 'weight', got 'row'"):
        GaussianDropout("row")
    with pytest.raises(ValueError, match="expected a positive finite init_scale, got -1.0"):
        ZeroMean(init_scale=-1.0)
    with pytest.raises(ValueError, match="positive finite init_scale"):
        ZeroMean(init_scale=0.0)
    with pytest.raises(ValueError, match="finite"):
        GaussianDropout(init_log_alpha=math.nan)
    # one check per option: a family and its site built directly give the same message
    shape = torch.Size([3, 2])
    for family, site, kwargs in [
        (GaussianDropout, GaussianDropoutSite, {"granularity": "row"}),
        (ZeroMean, ZeroMeanSite, {"init_scale": math.inf}),
        (Additive, AdditiveSite, {"init_log_sigma2": math.nan}),
        (UniformVariance, UniformVarianceSite, {"init_scale": -2.0}),
        (BinaryDropout, DropoutSite, {"p": 1.0}),
        (Magnitude, MagnitudeSite, {"init_mean": 0.0}),
        (Angle, AngleSite, {"init_scale": 0.0}),
        (Auto, AutoSite, {"init_scale": -0.1}),
    ]:
        with pytest.raises(ValueError) as from_family:
            family(**kwargs)
        with pytest.raises(ValueError) as from_site:
            site(shape, **kwargs)
        assert str(from_family.value) == str(from_site.value), family
    with pytest.raises(ValueError, match="parameterization"):
        ZeroMean(parameterization="softplus")
    with pytest.raises(ValueError, match="expected a Family or family name 'zero-mean', 'layer'"):
        make_family("dropout-ish")
    model = Classifier(MLP([4, 3]), num_data=10)
    guide = NetworkGuide(model, families={"fc7": "zero-mean"})
    with pytest.raises(ValueError, match="match no latent site"):
        guide(torch.randn(2, 4))


def test_guide_with_predictive_and_trace():
    # Predictive's shape pass samples the prior, so it needs a proper one (see LogUniform)
    model = Classifier(MLP([4, 6, 3], prior="student-t"), num_data=10)
    guide = NetworkGuide(model, default="neuron")
    x = torch.randn(5, 4)
    guide(x)
    pred = Predictive(model, guide=guide, num_samples=7, return_sites=["obs", "logits", "net.fc1.weight"])(x)
    assert pred["obs"].shape == (7, 5) and pred["logits"].shape == (7, 5, 3)
    assert pred["net.fc1.weight"].squeeze(1).shape == (7, 6, 4)
    others = {"uniform", "bernoulli", "dropout", "zero-mean-log", "magnitude", "angle", "auto"}
    assert set(FAMILIES) == set(FAMILY_NAMES) | others


@pytest.mark.parametrize("how", ["direct", "flipout", "moment-matched LRT"])
def test_uniform_variance_layer_trains(how):
    x, y, net = _data("linear")
    model = Classifier(net, num_data=len(x))
    guide = NetworkGuide(model, default="layer", families={"fc1": UniformVariance()})
    guide(x)
    assert not guide.exact_lrt
    handler = {
        "direct": contextlib.nullcontext,
        "flipout": flipout,
        "moment-matched LRT": lambda: local_reparameterization(moment_matching=True),
    }[how]
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), TraceMeanField_ELBO())
    losses = []
    for _ in range(40):
        with handler():
            losses.append(svi.step(x, y))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    with local_reparameterization(), pytest.raises(TypeError, match="moment_matching"):
        svi.step(x, y)
