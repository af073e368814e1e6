"""Direction and magnitude noise on unit spheres (WN §3.2-3.3)."""

import math

import pytest
import torch
from scipy import stats

from pyro_varnet.directions import (
    direction_noise,
    magnitude_noise,
    mean_direction_length,
    normalize,
    projected_gaussian,
    random_tangent_direction,
    rotate,
    sample_angle,
    tangent_projected_gaussian,
)
from pyro_varnet.poutine.local_reparameterization_messenger import per_object_tangent_projection
from tests.common import assert_within_se


def _unit(n=50, k=400, seed=0):
    torch.manual_seed(seed)
    return normalize(torch.randn(k, n, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["projected", "tangent", "rotate-tn", "rotate-beta"])
def test_sampled_directions_have_unit_norm(kind):
    v = _unit()
    out = direction_noise(v, kind, 0.3 if kind != "rotate-beta" else 2.0)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(len(v), dtype=v.dtype))
    assert not torch.allclose(out, v)


def test_tangent_projection_stays_within_half_pi():
    v = _unit()
    out = tangent_projected_gaussian(v, 100.0)  # huge noise: still on v's half-sphere
    assert ((v * out).sum(-1) > 0).all()
    # the plain projected Gaussian with that noise crosses to the other half often
    assert ((v * projected_gaussian(v, 100.0)).sum(-1) < 0).float().mean() > 0.3


def test_rotation_by_angle_is_exact():
    v = _unit()
    angle = torch.rand(len(v), dtype=v.dtype) * math.pi - math.pi / 2
    phi = random_tangent_direction(v)
    torch.testing.assert_close((phi * v).sum(-1), torch.zeros(len(v), dtype=v.dtype), atol=1e-12, rtol=0)
    out = rotate(v, angle, phi)
    torch.testing.assert_close((out * v).sum(-1), angle.cos(), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(len(v), dtype=v.dtype))


def test_angle_samplers_match_their_distributions():
    torch.manual_seed(1)
    a = sample_angle((20000,), "truncated-normal", scale=0.7)
    ref = stats.truncnorm(-math.pi / 2 / 0.7, math.pi / 2 / 0.7, scale=0.7)
    assert stats.kstest(a.numpy(), ref.cdf).pvalue > 1e-3
    b = sample_angle((20000,), "beta", scale=2.0)
    assert stats.kstest((b / math.pi + 0.5).numpy(), stats.beta(2.0, 2.0).cdf).pvalue > 1e-3
    assert (sample_angle((100,), "beta", 0.5, symmetric=False) >= 0).all()
    with pytest.raises(ValueError, match="angle distribution"):
        sample_angle((3,), "cauchy")


@pytest.mark.parametrize("kind", ["normal", "gamma"])
def test_magnitude_noise_has_mean_one_and_variance_alpha(kind):
    torch.manual_seed(2)
    k, alpha = 40000, 0.3
    e = magnitude_noise((k,), kind, alpha).double()
    assert_within_se(e.mean(), 1.0, math.sqrt(alpha / k), msg="mean")
    m4 = (e - 1).pow(4).mean()
    assert_within_se(e.var(), alpha, math.sqrt((m4 - alpha**2) / k), msg="variance")
    if kind == "gamma":
        assert (e > 0).all()  # keeps the sign of g
    with pytest.raises(ValueError, match="alpha >= 0"):
        magnitude_noise((2,), kind, -1.0)


@pytest.mark.parametrize("n", [2, 3, 10])
def test_per_object_tangent_marginal_matches_explicit_directions(n):
    """φᵀx for φ uniform on the tangent sphere of v̂: the closed-form marginal used for
    per-object directions vs explicit directions (two-sample KS)."""
    torch.manual_seed(3)
    v = normalize(torch.randn(1, n, dtype=torch.float64))
    x = torch.randn(1, n, dtype=torch.float64)
    k = 20000
    explicit = (random_tangent_direction(v.expand(k, n)) * x).sum(-1)
    marginal = per_object_tangent_projection(x.expand(k, n), v)[:, 0]
    if n == 2:  # the tangent "sphere" is two points: ±||x_perp||, each with probability 1/2
        torch.testing.assert_close(marginal.abs(), explicit.abs())
        assert_within_se((marginal > 0).double().mean(), 0.5, 0.5 / math.sqrt(k))
        return
    assert stats.ks_2samp(explicit.numpy(), marginal.numpy()).pvalue > 1e-3


def test_per_object_tangent_projection_gradient_finite_at_degenerate_inputs():
    """A dead-ReLU input (x = 0) or x parallel to v̂ leaves no orthogonal part: ||x_perp|| = 0,
    where a plain sqrt has an infinite derivative. Its gradient must stay finite and be 0 at
    x = 0."""
    torch.manual_seed(0)
    v = normalize(torch.randn(3, 6))
    x = torch.stack([torch.zeros(6), 2.5 * v[1], torch.randn(6)]).requires_grad_()
    per_object_tangent_projection(x, v).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[0] == 0).all()


@pytest.mark.parametrize(
    "kind,scale",
    [("projected", 0.1), ("projected", 0.014), ("tangent", 0.05), ("rotate-tn", 0.5), ("rotate-beta", 2.0)],
)
def test_mean_direction_length_matches_direct_sampling(kind, scale):
    # E[v_hat . v_tilde] from explicit 30-dimensional directions vs the 1-D formula
    torch.manual_seed(1)
    v = _unit(n=30, k=1).expand(40_000, 30).contiguous()
    proj = (direction_noise(v, kind, scale) * v).sum(-1)
    se = proj.std() / math.sqrt(len(proj))
    assert_within_se(proj.mean(), mean_direction_length(kind, scale, 30), se, msg=kind)
    assert mean_direction_length("none", scale, 30) == 1.0


def test_mean_direction_length_of_projected_noise_is_about_inverse_sqrt():
    # ||v_hat + eps||^2 concentrates at 1 + alpha*d, so c -> 1/sqrt(1 + alpha*d) in high dimension
    c = mean_direction_length("projected", 0.014, 1024)
    assert abs(c * math.sqrt(1 + 0.014 * 1024) - 1) < 2e-3


def test_bad_inputs():
    with pytest.raises(ValueError, match="direction dimension >= 2"):
        mean_direction_length("projected", 0.1, 1)
    with pytest.raises(ValueError, match="dimension >= 2"):
        projected_gaussian(torch.ones(5, 1), 0.1)
    with pytest.raises(ValueError, match="alpha >= 0"):
        tangent_projected_gaussian(_unit(), -0.1)
    with pytest.raises(ValueError, match="direction noise"):
        direction_noise(_unit(), "spin", 0.1)
