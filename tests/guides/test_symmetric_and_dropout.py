"""Bernoulli / uniform variance layers and the binary-dropout baseline (VN §3.3, Table 2)."""

import math

import pyro
import pytest
import torch
from pyro.infer import SVI
from torch.distributions import kl_divergence

from pyro_varnet import ops
from pyro_varnet.data import toy_problem
from pyro_varnet.distributions import InputDropout, SymmetricBernoulli, SymmetricUniform, make_prior
from pyro_varnet.guides import BernoulliVariance, BinaryDropout, NetworkGuide
from pyro_varnet.infer import DecomposedELBO, accuracy, predict
from pyro_varnet.models import MLP, Classifier
from pyro_varnet.poutine import flipout, local_reparameterization, mean_propagation, prune
from tests.common import assert_within_se

K = 20000


@pytest.mark.parametrize(
    "make, var_factor",
    [(SymmetricBernoulli, 1.0), (SymmetricUniform, 1 / 3)],
    ids=["bernoulli", "uniform"],
)
def test_variance_layers_have_zero_mean_and_stated_variance(make, var_factor):
    torch.manual_seed(0)
    theta = torch.tensor([0.3, 1.0, 2.5])
    w = make(theta).rsample((K,))
    var = theta.square() * var_factor
    assert_within_se(w.mean(0), torch.zeros(3), (var / K).sqrt(), msg="mean")
    m4 = w.pow(4).mean(0)
    if make is SymmetricBernoulli:  # w² = θ² for every draw: no Monte Carlo error at all
        torch.testing.assert_close(w.square().mean(0), var)
    else:
        assert_within_se(w.square().mean(0), var, ((m4 - var.square()) / K).sqrt(), msg="variance")
    assert make(theta).mean.eq(0).all() and torch.allclose(make(theta).variance, var)


def test_bernoulli_weights_are_plus_minus_theta_and_reparameterized():
    theta = torch.tensor([0.5, 2.0], requires_grad=True)
    w = SymmetricBernoulli(theta).rsample((1000,))
    assert torch.equal(w.abs(), theta.detach().expand(1000, 2))
    w.sum().backward()
    signs_sum = (w.detach() / theta.detach()).sum(0)
    torch.testing.assert_close(theta.grad, signs_sum)  # dw/dθ = ±1


def test_input_dropout_moments_and_mask_structure():
    torch.manual_seed(1)
    theta, p = torch.randn(3, 4), 0.3
    q = InputDropout(theta, p)
    w = q.rsample((K,))
    # one keep/drop variable per input column, shared by all outputs
    kept = w != 0
    assert torch.equal(kept, kept[:, :1].expand_as(kept))
    var = theta.square() * p / (1 - p)
    assert_within_se(w.mean(0), theta, (var / K).sqrt(), msg="mean")
    torch.testing.assert_close(q.mean, theta)
    torch.testing.assert_close(q.variance, var)
    with pytest.raises(ValueError, match="drop probability"):
        InputDropout(theta, 1.0)


@pytest.mark.parametrize("handler", [local_reparameterization, flipout])
def test_dropout_under_weight_handlers_is_per_object_input_dropout(handler):
    """Under the handlers a dropout weight masks each object's inputs independently: copies of
    one object get different masks, and each output is θ applied to a masked input."""
    torch.manual_seed(2)
    theta, p = torch.randn(6, 4), 0.5  # full column rank: the mask can be read back from the output
    x = torch.randn(1, 4).repeat(K // 10, 1)
    with torch.no_grad(), handler():
        w = pyro.sample("w", InputDropout(theta, p).to_event(2))
        out = ops.linear(x, w)
    # every row is theta @ (x * z / (1 - p)) for some z in {0, 1}^4: solve for z
    z = torch.linalg.lstsq(theta.double(), out.T.double()).solution.T.float() * (1 - p) / x
    assert torch.allclose(z, z.round(), atol=1e-4) and set(z.round().unique().tolist()) <= {0.0, 1.0}
    keep_rate = z.round().mean(0)
    assert_within_se(keep_rate, torch.full((4,), 1 - p), torch.full((4,), math.sqrt(p * (1 - p) / len(x))))
    assert len(torch.unique(z.round(), dim=0)) > 8  # decorrelated across the batch


def test_pruned_symmetric_layers_are_exactly_zero():
    theta = torch.tensor([0.1, 0.2, 1.0, 2.0])
    for q, sigma in [(SymmetricBernoulli(theta), theta), (SymmetricUniform(theta), theta / math.sqrt(3))]:
        with torch.no_grad(), prune(threshold=0.5):
            w = pyro.sample("w", q.to_event(1))
        keep = sigma >= 0.5
        assert (w[~keep] == 0).all() and (w[keep] != 0).all()


@pytest.mark.parametrize("family", ["bernoulli", "dropout"])
def test_bernoulli_and_dropout_networks_train(family):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    x, y = toy_problem(100, seed=0)  # VN §3.2: classes differ in magnitudes, which a variance layer sees
    x = x / 10
    model = Classifier(MLP([2, 32, 32, 4], bayesian=["fc1"]), num_data=len(x))
    fam = BernoulliVariance() if family == "bernoulli" else BinaryDropout(0.2)
    guide = NetworkGuide(model, default=fam)
    guide(x)
    assert guide.exact_lrt == (family == "dropout")
    elbo = DecomposedELBO()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), elbo)
    handler = local_reparameterization if family == "dropout" else flipout
    for _ in range(300):
        with handler():
            svi.step(x, y)
    q = guide.site("net.fc1.weight")()
    kl = kl_divergence(q, make_prior("log-uniform", q.event_shape))
    assert float(kl) == 0.0  # infinite but constant in θ: registered as 0
    acc = accuracy(predict(model, guide, x, mode="ensemble", num_samples=20), y)
    assert acc > 0.9
    with torch.no_grad(), mean_propagation():
        mean_acc = accuracy(predict(model, guide, x, mode="mean"), y)
    if family == "dropout":  # the weight scaling rule keeps the dropout network accurate
        assert mean_acc > 0.9
    else:  # a variance layer's mean is 0: the output does not depend on the input
        assert mean_acc < 0.5
