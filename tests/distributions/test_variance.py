"""Weight variances for local reparameterization (GaussianDropoutNormal's αθ², VN eq. 14, and a
Gaussian's σ²): hand-written backwards against autograd, subnormal entries flushed to 0."""

import pytest
import torch

from pyro_varnet.distributions import GaussianDropoutNormal, ZeroMeanNormal
from pyro_varnet.distributions.variance import dropout_variance, squared_scale
from pyro_varnet.poutine.weight_rules import weight_rules

LOG_ALPHA_SHAPES = [(), (1, 1), (6, 1), (1, 5), (6, 5), (5,)]


@pytest.mark.parametrize("la_shape", LOG_ALPHA_SHAPES)
def test_variance_gradcheck(la_shape):
    theta = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    log_alpha = torch.randn(la_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, la: GaussianDropoutNormal(t, la).variance, (theta, log_alpha))


@pytest.mark.parametrize("la_shape", LOG_ALPHA_SHAPES)
def test_variance_and_gradients_equal_the_plain_expression(la_shape):
    torch.manual_seed(0)
    theta = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    log_alpha = torch.randn(la_shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 5, dtype=torch.float64)
    d = GaussianDropoutNormal(theta, log_alpha)
    plain = log_alpha.exp() * theta.square()
    assert torch.allclose(d.variance, plain, rtol=1e-12, atol=0)
    assert torch.allclose(d.variance, d.scale.square(), rtol=1e-12, atol=0)
    fast = torch.autograd.grad(d.variance, (theta, log_alpha), g)
    slow = torch.autograd.grad(plain, (theta, log_alpha), g)
    for a, b in zip(fast, slow):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-12, atol=1e-15)


def test_variance_of_an_expanded_distribution_and_with_one_input_differentiable():
    theta = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    log_alpha = torch.randn(6, 1, dtype=torch.float64, requires_grad=True)
    var = GaussianDropoutNormal(theta, log_alpha).expand([3, 6, 5]).variance
    assert var.shape == (3, 6, 5)
    (g_theta, g_la) = torch.autograd.grad(var.sum(), (theta, log_alpha))
    assert torch.allclose(g_theta, 3 * 2 * log_alpha.exp() * theta, rtol=1e-12)
    assert torch.allclose(g_la, 3 * (log_alpha.exp() * theta.square()).sum(1, keepdim=True), rtol=1e-12)
    # θ fixed (e.g. a frozen mean): only log α is differentiated, and the other way round
    (g_la,) = torch.autograd.grad(GaussianDropoutNormal(theta.detach(), log_alpha).variance.sum(), log_alpha)
    assert torch.allclose(g_la, (log_alpha.exp() * theta.square()).sum(1, keepdim=True), rtol=1e-12)
    (g_theta,) = torch.autograd.grad(GaussianDropoutNormal(theta, log_alpha.detach()).variance.sum(), theta)
    assert torch.allclose(g_theta, 2 * log_alpha.exp() * theta, rtol=1e-12)


def test_squared_scale_gradcheck_and_gradient():
    scale = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.equal(squared_scale(scale), scale.square())
    assert torch.autograd.gradcheck(squared_scale, (scale,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_subnormal_variances_are_flushed_to_zero_and_keep_their_gradient(dtype):
    tiny = torch.finfo(dtype).tiny
    # σ whose square is subnormal (σ < √tiny), at √tiny, and ordinary
    sigma = torch.tensor([tiny**0.5 / 4, tiny**0.5 / 1e3, tiny**0.5 * 2, 1e-3, 0.5], dtype=dtype, requires_grad=True)
    var = squared_scale(sigma)
    assert var[0] == 0 and var[1] == 0  # subnormal squares: exact zeros
    assert torch.equal(var[2:], sigma[2:].detach().square())  # normal ones untouched
    (g,) = torch.autograd.grad(var.sum(), sigma)
    assert torch.equal(g, 2 * sigma.detach())  # the unflushed expression's gradient
    # the same for a Gaussian dropout site: αθ² below tiny is 0, above it αθ²
    theta = sigma.detach().clone().requires_grad_()
    log_alpha = torch.zeros((), dtype=dtype, requires_grad=True)
    dv = dropout_variance(theta, log_alpha)
    assert dv[0] == 0 and dv[1] == 0 and torch.allclose(dv[2:], theta[2:].detach().square(), rtol=1e-6)
    g_theta, _ = torch.autograd.grad(dv.sum(), (theta, log_alpha))
    assert torch.allclose(g_theta, 2 * theta.detach(), rtol=1e-6)


def test_the_lrt_rules_give_flushed_variances():
    tiny = torch.finfo(torch.float32).tiny
    sigma = torch.tensor([[1e-20, 0.1], [2e-22, 1.0]])  # squares 1e-40 and 4e-44 are subnormal
    assert (sigma.square()[:, 0] < tiny).all() and (sigma.square()[:, 0] > 0).all()
    for d in (ZeroMeanNormal(sigma), GaussianDropoutNormal(sigma, torch.tensor(0.0))):
        var = weight_rules(d).local_reparameterization(d).var
        assert torch.equal(var[:, 0], torch.zeros(2)) and torch.allclose(var[:, 1], sigma[:, 1].square())
