"""KL divergences against ground truth: quadrature, torch.distributions, closed forms."""

import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from scipy import integrate, optimize, stats
from torch.distributions import kl_divergence

from pyro_varnet.distributions import (
    ARD,
    KL_UNIFORM_LOG_UNIFORM,
    GaussianDropoutNormal,
    LogUniform,
    SymmetricUniform,
    TruncatedNormal,
    ZeroMeanNormal,
    kl_ard_optimal,
    kl_divergence_sum,
    kl_log_uniform,
    log_alpha_of,
    optimal_ard_scale,
)
from tests.common import assert_close

# KL(N(mu, alpha mu^2) || LogU) = C - 1/2 log alpha + E log|1 + sqrt(alpha) eps|   (VN eq. 8)
#                               = C + E log|eps + 1/sqrt(alpha)|
# with C = (gamma + log 2) / 2 so that KL -> 0 as alpha -> inf (E log|eps| = -C).
EULER_C = (np.euler_gamma + np.log(2)) / 2


def kl_log_uniform_quadrature(log_alpha: float) -> float:
    c = math.exp(-log_alpha / 2)
    f = lambda e: stats.norm.pdf(e) * math.log(abs(e + c))  # noqa: E731
    value, _ = integrate.quad(f, -12, 12, points=[-c] if c < 12 else None, limit=500, epsabs=1e-12)
    return value + EULER_C


LOG_ALPHAS = np.linspace(-8, 8, 65)


@pytest.fixture(scope="module")
def exact_kl():
    return np.array([kl_log_uniform_quadrature(la) for la in LOG_ALPHAS])


def test_log_uniform_constant_matches_k1():
    # the -k1 constant of the approximation is the exact limit (gamma + log 2)/2 = 0.63518 to 6e-4
    assert abs(EULER_C - 0.63576) < 1e-3


def test_log_uniform_kl_against_quadrature(exact_kl):
    approx = kl_log_uniform(torch.tensor(LOG_ALPHAS, dtype=torch.float64)).numpy()
    err = np.abs(approx - exact_kl)
    # measured: max |error| = 0.0094 nats at log alpha = -3.5 (the Sparse VD approximation)
    assert err.max() < 0.01, err.max()


def test_log_uniform_kl_differences_against_quadrature(exact_kl):
    approx = kl_log_uniform(torch.tensor(LOG_ALPHAS, dtype=torch.float64)).numpy()
    diff_err = np.abs((approx[:, None] - approx[None, :]) - (exact_kl[:, None] - exact_kl[None, :]))
    # measured: max |error| of KL(a1) - KL(a2) over the grid = 0.0137 nats
    assert diff_err.max() < 0.015, diff_err.max()


def test_log_uniform_kl_decreasing_in_alpha():
    la = torch.linspace(-20, 20, 401, dtype=torch.float64)
    kl = kl_log_uniform(la)
    assert bool((kl[1:] < kl[:-1]).all())
    assert kl[-1].item() == pytest.approx(0.0, abs=1e-8)


def test_normal_log_uniform_registration_uses_alpha():
    loc = torch.tensor([0.5, -2.0, 1e-3])
    scale = torch.tensor([0.1, 4.0, 1.0])
    q, p = dist.Normal(loc, scale), LogUniform((3,))
    assert_close(kl_divergence(q, p), kl_log_uniform(2 * scale.log() - 2 * loc.abs().log()), atol=1e-5)
    # wrapped with to_event as in a model: summed
    assert_close(kl_divergence(q.to_event(1), p.to_event(1)), kl_divergence(q, p).sum(), atol=1e-5)


def test_normal_log_uniform_finite_at_zero_mean():
    loc = torch.tensor([0.0, 0.0, 0.3], requires_grad=True)
    scale = torch.tensor([1e-3, 2.0, 0.5], requires_grad=True)
    kl = kl_divergence(dist.Normal(loc, scale), LogUniform((3,)))
    assert torch.isfinite(kl).all()
    assert kl[0].item() == 0.0 and kl[1].item() == 0.0  # constant in sigma at mu = 0 (VN appendix F)
    kl.sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()
    assert loc.grad[:2].abs().max() == 0 and scale.grad[:2].abs().max() == 0


def test_zero_mean_normal_log_uniform_is_zero():
    scale = torch.tensor([1e-4, 1.0, 30.0], requires_grad=True)
    kl = kl_divergence(ZeroMeanNormal(scale), LogUniform((3,)))
    assert_close(kl, torch.zeros(3))


def test_log_alpha_gradcheck():
    loc = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([0.5, 0.1, 3.0], dtype=torch.float64, requires_grad=True)
    f = lambda m, s: kl_log_uniform(log_alpha_of(m, s))  # noqa: E731
    assert torch.autograd.gradcheck(f, (loc, scale))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_alpha_kl_gradient_finite_as_loc_underflows(dtype):
    """A mean that crosses zero can land where μ² underflows (|μ| < 1e-19 in float32): the KL's
    gradient must stay finite there (it NaN'd a WN run's g mean) and vanish, as it does in the
    limit: dKL/dμ -> 0 as log α -> ∞."""
    loc = torch.tensor([0.0, 1e-30, -1e-25, 1e-170, 1e-3], dtype=dtype).requires_grad_()
    scale = torch.full((5,), 0.1, dtype=dtype, requires_grad=True)
    kl_log_uniform(log_alpha_of(loc, scale)).sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()
    underflows = loc.detach().abs() < torch.finfo(dtype).tiny ** 0.5
    assert underflows[[0, 3]].all() and not underflows[4]
    assert (loc.grad[underflows] == 0).all() and (loc.grad[:4].abs() < 1e-20).all() and loc.grad[4] != 0
    assert torch.isinf(log_alpha_of(loc, scale)[underflows]).all()


@pytest.mark.parametrize("loc,scale,lam", [(0.3, 0.2, 1.0), (-1.0, 0.5, 0.2), (0.0, 0.7, 2.0)])
def test_normal_ard_against_torch(loc, scale, lam):
    q = dist.Normal(torch.tensor(loc), torch.tensor(scale))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.tensor(loc), torch.tensor(scale)),
        torch.distributions.Normal(torch.tensor(0.0), torch.tensor(lam)),
    )
    assert_close(kl_divergence(q, ARD(torch.tensor(lam))), expected, atol=1e-6)


@pytest.mark.parametrize("log_alpha", [-6.0, -1.0, 0.0, 2.0, 7.0])
def test_ard_optimum_closed_form(log_alpha):
    # at lambda^2 = (alpha + 1) mu^2 the KL is 0.5 log(1 + 1/alpha): VN eq. 11 with the 1/2
    mu = torch.tensor(0.7, dtype=torch.float64)
    sigma = mu.abs() * math.exp(log_alpha / 2)
    q = dist.Normal(mu, sigma)
    lam = optimal_ard_scale(mu, sigma)
    at_opt = kl_divergence(q, ARD(lam))
    assert_close(at_opt, kl_ard_optimal(torch.tensor(log_alpha, dtype=torch.float64)), atol=1e-10)
    # and it is the minimum over lambda (numerical optimisation)
    f = lambda log_lam: kl_divergence(q, ARD(torch.tensor(math.exp(log_lam)))).item()  # noqa: E731
    res = optimize.minimize_scalar(f, bounds=(-20, 20), method="bounded", options={"xatol": 1e-10})
    assert res.fun == pytest.approx(at_opt.item(), abs=1e-8)
    assert math.exp(res.x) == pytest.approx(lam.item(), rel=1e-4)


def test_normal_ard_gradients_finite_at_zero_mean():
    loc = torch.zeros(3, requires_grad=True)
    scale = torch.tensor([0.1, 1.0, 3.0], requires_grad=True)
    kl_divergence(dist.Normal(loc, scale), ARD(torch.ones(3))).sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()
    la = torch.tensor([math.inf, 50.0], requires_grad=True)
    kl_ard_optimal(la).sum().backward()
    assert torch.isfinite(la.grad).all()


@pytest.mark.parametrize("mu,sigma", [(0.3, 0.2), (1.5, 1.0), (-0.5, 0.1), (2.5, 0.05), (0.0, 5.0)])
def test_truncated_normal_uniform_kl_against_quadrature(mu, sigma):
    a, b = 0.0, math.pi / 2
    q = TruncatedNormal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64), a, b)
    log_z = math.log(stats.norm.cdf((b - mu) / sigma) - stats.norm.cdf((a - mu) / sigma))
    log_q = lambda x: stats.norm.logpdf(x, mu, sigma) - log_z  # noqa: E731
    integrand = lambda x: math.exp(log_q(x)) * (log_q(x) + math.log(b - a))  # noqa: E731
    expected, _ = integrate.quad(integrand, a, b, epsabs=1e-12, points=[min(max(mu, a), b)])
    kl = kl_divergence(q, dist.Uniform(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)))
    assert kl.item() == pytest.approx(expected, abs=1e-8)
    # cross-check with scipy's truncnorm entropy
    sp = stats.truncnorm((a - mu) / sigma, (b - mu) / sigma, loc=mu, scale=sigma)
    assert q.entropy().item() == pytest.approx(sp.entropy(), abs=1e-8)


def test_truncated_normal_uniform_kl_infinite_outside_support():
    q = TruncatedNormal(torch.tensor(0.5), torch.tensor(0.2), -1.0, 1.0)
    assert kl_divergence(q, dist.Uniform(torch.tensor(0.0), torch.tensor(1.0))).item() == math.inf


@pytest.mark.parametrize("a", [1e-3, 0.7, 25.0])
def test_symmetric_uniform_log_uniform_kl_is_constant(a):
    # E_q log q - E_q log(1/|w|) by quadrature, plus the constant that zeroes a zero-mean Gaussian
    inner, _ = integrate.quad(lambda w: (math.log(1 / (2 * a)) + math.log(abs(w))) / (2 * a), -a, a, points=[0.0])
    const = 0.5 * math.log(2 * math.pi * math.e) + EULER_C
    kl = kl_divergence(SymmetricUniform(torch.tensor([a], dtype=torch.float64)), LogUniform((1,)))
    assert kl.item() == pytest.approx(inner + const, abs=1e-8)
    assert KL_UNIFORM_LOG_UNIFORM == pytest.approx(0.3610, abs=1e-4)


@pytest.mark.parametrize(
    "alpha_shape", [(), (1, 1), (6, 1), (1, 5), (6, 5)], ids=["layer", "layer2d", "neuron", "column", "weight"]
)
@pytest.mark.parametrize("event_dims", [0, 2])
def test_kl_divergence_sum_equals_the_summed_kl_and_its_gradients(alpha_shape, event_dims):
    # the compact sum (one KL per distinct alpha times the weights sharing it) against the
    # registered per-weight KL summed, value and gradients, as Pyro's guides wrap the sites
    torch.manual_seed(0)
    theta = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    log_alpha = torch.randn(alpha_shape, dtype=torch.float64, requires_grad=True)
    q = GaussianDropoutNormal(theta, log_alpha).to_event(event_dims)
    p = LogUniform().expand([6, 5]).to_event(event_dims)
    fast, slow = kl_divergence_sum(q, p), kl_divergence(q, p).sum()
    assert fast.shape == () and torch.allclose(fast, slow, rtol=1e-12, atol=0)
    (g_fast,) = torch.autograd.grad(fast, log_alpha)
    (g_slow,) = torch.autograd.grad(slow, log_alpha)
    assert torch.allclose(g_fast, g_slow, rtol=1e-12, atol=0)
    # expanded with a leading batch dimension (e.g. vectorised particles): each alpha stands for more weights
    q3 = GaussianDropoutNormal(theta, log_alpha).expand([3, 6, 5])
    assert torch.allclose(kl_divergence_sum(q3, LogUniform().expand([3, 6, 5])), 3 * slow, rtol=1e-12, atol=0)


def test_kl_divergence_sum_of_other_pairs_is_the_summed_kl():
    scale = torch.rand(4, 3) + 0.1
    zero = kl_divergence_sum(ZeroMeanNormal(scale).to_event(2), LogUniform().expand([4, 3]).to_event(2))
    assert zero.shape == () and zero == 0
    q, p = dist.Normal(torch.randn(4, 3), scale), LogUniform().expand([4, 3])
    assert torch.equal(kl_divergence_sum(q, p), kl_divergence(q, p).sum())
    # event dims that do not match fall back to kl_divergence, which declines
    with pytest.raises(NotImplementedError):
        kl_divergence_sum(q.to_event(1), p.to_event(2))
