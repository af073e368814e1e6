"""TruncatedNormal: samples against the CDF (KS), entropy by quadrature, gradients, tails."""

import math

import pytest
import torch
from scipy import integrate, stats

from pyro_varnet.distributions import TruncatedNormal

HALF_PI = math.pi / 2
CASES = [(0.3, 0.2), (1.0, 1.0), (-0.5, 0.3), (2.5, 0.05), (0.0, 10.0), (1.5, 1e-3)]


@pytest.mark.parametrize("mu,sigma", CASES)
def test_samples_match_cdf_ks(mu, sigma):
    q = TruncatedNormal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64), 0.0, HALF_PI)
    x = q.sample((20000,))
    assert float(x.min()) >= 0.0 and float(x.max()) <= HALF_PI
    ref = stats.truncnorm(-mu / sigma, (HALF_PI - mu) / sigma, loc=mu, scale=sigma)
    # KS at level 1e-3 against scipy's truncnorm, and our own CDF agrees with scipy's
    assert stats.kstest(x.numpy(), ref.cdf).pvalue > 1e-3
    grid = torch.linspace(0, HALF_PI, 50, dtype=torch.float64)
    torch.testing.assert_close(q.cdf(grid), torch.as_tensor(ref.cdf(grid.numpy())), atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("mu,sigma", CASES)
def test_entropy_mean_variance_against_quadrature(mu, sigma):
    q = TruncatedNormal(torch.tensor(mu, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64), 0.0, HALF_PI)
    ref = stats.truncnorm(-mu / sigma, (HALF_PI - mu) / sigma, loc=mu, scale=sigma)
    lo, hi = max(0.0, mu - 40 * sigma), min(HALF_PI, mu + 40 * sigma)
    pts = [min(max(mu, lo), hi)]
    ent, _ = integrate.quad(lambda x: -ref.pdf(x) * ref.logpdf(x), lo, hi, points=pts, epsabs=1e-12)
    mean, _ = integrate.quad(lambda x: x * ref.pdf(x), lo, hi, points=pts, epsabs=1e-12)
    assert q.entropy().item() == pytest.approx(ent, abs=1e-7)
    assert q.mean.item() == pytest.approx(mean, abs=1e-7)
    assert q.variance.item() == pytest.approx(ref.var(), rel=1e-5, abs=1e-12)


def test_log_prob_normalised():
    q = TruncatedNormal(torch.tensor(0.4), torch.tensor(0.5), 0.0, HALF_PI)
    total, _ = integrate.quad(lambda x: math.exp(q.log_prob(torch.tensor(x)).item()), 0, HALF_PI)
    assert total == pytest.approx(1.0, abs=1e-5)


def test_rsample_gradcheck():
    u = torch.rand(7, dtype=torch.float64)

    def f(mu, log_sigma):
        return TruncatedNormal(mu, log_sigma.exp(), 0.0, HALF_PI).icdf(u)

    mu = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.tensor(-0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (mu, log_sigma))


@pytest.mark.parametrize("mu,sigma", [(50.0, 0.1), (-50.0, 0.1), (0.7, 1e-6), (0.7, 1e4), (3.0, 0.01)])
def test_float32_tails_finite(mu, sigma):
    loc = torch.tensor(mu, requires_grad=True)
    scale = torch.tensor(sigma, requires_grad=True)
    q = TruncatedNormal(loc, scale, 0.0, HALF_PI)
    x = q.rsample((1000,))
    assert torch.isfinite(x).all() and bool((x >= 0).all()) and bool((x <= q.high).all())
    loss = x.sum() + q.entropy() + q.log_prob(x).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(loc.grad) and torch.isfinite(scale.grad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="high > low"):
        TruncatedNormal(0.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        TruncatedNormal(0.0, -1.0, 0.0, 1.0, validate_args=True)


@pytest.mark.parametrize("loc", [-50.0, 50.0 + math.pi / 2])
def test_far_tail_entropy_and_moments_match_the_exponential_limit(loc):
    """5000 σ outside [0, π/2] the truncated normal is an exponential with rate λ = |α|/σ at the
    near end: entropy 1 - log λ, mean distance 1/λ, variance 1/λ², up to O(1/α²) relative.
    In float32 the textbook formula loses these to cancellations of size α²/2 = 1.25e7."""
    loc_t, scale = torch.tensor(loc, requires_grad=True), torch.tensor(0.01, requires_grad=True)
    d = TruncatedNormal(loc_t, scale, 0.0, math.pi / 2)
    alpha = (-loc if loc < 0 else loc - math.pi / 2) / 0.01
    rate = alpha / 0.01
    assert d.entropy().item() == pytest.approx(1 - math.log(rate), abs=1e-4)
    edge = 0.0 if loc < 0 else math.pi / 2
    # in float64: a float32 mean cannot resolve 1/λ = 2e-6 next to π/2
    d64 = TruncatedNormal(
        torch.tensor(loc, dtype=torch.float64), torch.tensor(0.01, dtype=torch.float64), 0.0, math.pi / 2
    )
    assert abs(d64.mean.item() - edge) == pytest.approx(1 / rate, rel=1e-3)
    assert d64.variance.item() == pytest.approx(1 / rate**2, rel=0.3)  # float64 cancellation leaves ~α²·eps
    d.entropy().backward()
    assert math.isfinite(loc_t.grad.item()) and scale.grad.item() == pytest.approx(2 / 0.01, rel=1e-3)
