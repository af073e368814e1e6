"""mean_propagation and zero_mean_approximation (VN §2, eq. 3; §4.3, Theorem 1)."""

import pyro
import pytest
import torch

from pyro_varnet._sites import unwrap
from pyro_varnet.distributions import ZeroMeanNormal
from pyro_varnet.guides import GaussianDropout, NetworkGuide, ZeroMean
from pyro_varnet.models import MLP, Classifier
from pyro_varnet.poutine import local_reparameterization, mean_propagation, zero_mean_approximation


def _predict(model, guide, x):
    tr = pyro.poutine.trace(guide).get_trace(x)
    return pyro.poutine.replay(model, tr)(x), tr


@pytest.mark.parametrize("lrt", [False, True])
def test_mean_propagation_through_variance_layer_ignores_input(lrt):
    model = Classifier(MLP([4, 8, 6, 3]), num_data=100)
    guide = NetworkGuide(model, default="layer", families={"fc2": ZeroMean()})
    x = torch.randn(16, 4)
    with torch.no_grad(), mean_propagation():
        if lrt:
            with local_reparameterization():
                out, _ = _predict(model, guide, x)
        else:
            out, _ = _predict(model, guide, x)
    # E W = 0 in fc2, so every object gets the same logits: the weight scaling rule fails
    torch.testing.assert_close(out, out[:1].expand_as(out))
    assert guide.median()["net.fc1.weight"].abs().sum() > 0


def test_mean_propagation_uses_posterior_means():
    model = Classifier(MLP([4, 5, 3]), num_data=100)
    guide = NetworkGuide(model, default=GaussianDropout("weight", init_log_alpha=0.0))
    x = torch.randn(7, 4)
    with torch.no_grad(), mean_propagation():
        out, tr = _predict(model, guide, x)
    means = guide.median()
    net = model.net
    h = torch.relu(x @ means["net.fc1.weight"].T + net.fc1.bias)
    torch.testing.assert_close(out, h @ means["net.fc2.weight"].T + net.fc2.bias)
    assert isinstance(unwrap(tr.nodes["net.fc1.weight"]["fn"])[0], pyro.distributions.Delta)


def test_mean_propagation_of_improper_prior_raises():
    model = Classifier(MLP([4, 3]), num_data=10)
    with mean_propagation(), pytest.raises(ValueError, match="has no mean"):
        model(torch.randn(2, 4))


def test_zero_mean_approximation_of_gaussian_dropout():
    model = Classifier(MLP([4, 5, 3]), num_data=100)
    guide = NetworkGuide(model, default=GaussianDropout("layer", init_log_alpha=1.0))
    x = torch.randn(3, 4)
    guide(x)
    site = guide.site("net.fc1.weight")
    with torch.no_grad(), zero_mean_approximation(sites=["fc1"]):
        tr = pyro.poutine.trace(guide).get_trace(x)
    q1, _ = unwrap(tr.nodes["net.fc1.weight"]["fn"])
    q2, _ = unwrap(tr.nodes["net.fc2.weight"]["fn"])
    assert isinstance(q1, ZeroMeanNormal) and not isinstance(q2, ZeroMeanNormal)
    # N(theta, alpha theta^2) -> N(0, alpha theta^2)
    torch.testing.assert_close(q1.scale, (site.log_alpha_param / 2).exp() * site.theta.abs())
    assert q1.loc.abs().max() == 0
    torch.testing.assert_close(q2.loc, guide.site("net.fc2.weight").theta)


def test_zero_mean_approximation_samples_are_centered():
    model = Classifier(MLP([4, 3]), num_data=10)
    guide = NetworkGuide(model, default=GaussianDropout("layer", init_log_alpha=-2.0))
    x = torch.randn(2, 4)
    guide(x)
    theta = guide.site("net.fc1.weight").theta.detach()
    with torch.no_grad(), zero_mean_approximation():
        draws = torch.stack([guide(x)["net.fc1.weight"] for _ in range(4000)])
    sd = (-1.0 / 2 * torch.ones(())).exp() * theta.abs()  # sqrt(alpha) |theta|, alpha = e^-2
    # mean 0 within 5 SE, where the unapproximated posterior has mean theta (about 2.7 sd away)
    assert ((draws.mean(0)).abs() <= 5 * sd / 4000**0.5).all()
