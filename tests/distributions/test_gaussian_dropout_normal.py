"""GaussianDropoutNormal's variance αθ² (VN eq. 14) and its hand-written backward against autograd."""

import pytest
import torch

from pyro_varnet.distributions import GaussianDropoutNormal

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
