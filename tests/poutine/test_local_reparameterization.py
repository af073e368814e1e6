"""Local reparameterization: output moments against direct weight sampling (VN eq. 39-42)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_varnet import ops
from pyro_varnet.distributions import ZeroMeanNormal
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.models import MLP, Classifier
from pyro_varnet.poutine import local_reparameterization
from tests.common import assert_within_se
from tests.helpers import FAMILY_NAMES, batched_op, plain_op, random_input, random_site

K = 20000
OPS = {"linear": ops.linear, "conv2d": ops.conv2d}


def _check_moments(samples, mean, var, what):
    # mean: SE = sqrt(var / K); variance of Gaussian draws: SE = var * sqrt(2 / (K - 1)); 5 SE each
    assert_within_se(samples.mean(0), mean, (var / K).sqrt(), msg=f"{what} mean")
    assert_within_se(samples.var(0), var, var * math.sqrt(2 / (K - 1)), msg=f"{what} variance")


@pytest.mark.parametrize("op", ["linear", "conv2d"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_lrt_moments_match_direct_sampling(family, op):
    site = random_site(family, op)
    q, base = site(), site.base()
    x, bias = random_input(op), torch.randn(3)
    with torch.no_grad():
        mean = plain_op(op)(x, base.mean, bias)
        var = plain_op(op)(x.square(), base.variance)
        with local_reparameterization():
            w = pyro.sample("w", q)
            lrt = OPS[op](x.repeat(K, *([1] * (x.dim() - 1))), w, bias).reshape(K, *mean.shape)
        direct = batched_op(op, x, base.sample((K,)), bias)
    _check_moments(lrt, mean, var, f"LRT {family}/{op}")
    _check_moments(direct, mean, var, f"direct {family}/{op}")


@pytest.mark.parametrize("op", ["linear", "conv2d"])
def test_zero_mean_site_runs_only_the_variance_op(op):
    site = random_site("zero-mean", op)
    x, bias = random_input(op), torch.randn(3)
    view = bias if op == "linear" else bias[:, None, None]
    with torch.no_grad(), local_reparameterization(eps=0.0):
        pyro.set_rng_seed(3)
        w = pyro.sample("w", site())
        out = OPS[op](x, w, bias)
    pyro.set_rng_seed(3)
    site().sample()  # the same draw of w, then the output noise
    var = plain_op(op)(x.square(), site.base().variance.detach())
    noise = torch.randn(var.shape)
    # output = bias + eps * sqrt(var): no mean term at all, so E[output - bias] = 0 exactly
    torch.testing.assert_close(out, view + noise * var.sqrt())


def test_deterministic_weights_pass_through():
    x, w, b = torch.randn(5, 4), torch.randn(3, 4), torch.randn(3)
    with local_reparameterization():
        out = ops.linear(x, w, b)
    torch.testing.assert_close(out, torch.nn.functional.linear(x, w, b))


def test_sampled_gaussian_bias_adds_its_variance():
    x = torch.randn(2, 4)
    wq = dist.Normal(torch.randn(3, 4), torch.rand(3, 4) + 0.1)
    bq = dist.Normal(torch.randn(3), torch.rand(3) + 0.5)
    with torch.no_grad(), local_reparameterization():
        w, b = pyro.sample("w", wq.to_event(2)), pyro.sample("b", bq.to_event(1))
        out = ops.linear(x.repeat(K, 1), w, b).reshape(K, 2, 3)
    mean = x @ wq.loc.T + bq.loc
    var = x.square() @ wq.variance.T + bq.variance
    _check_moments(out, mean, var, "bias")


def test_non_gaussian_weight_raises_or_moment_matches():
    x = torch.randn(2, 4)
    q = dist.Uniform(-torch.ones(3, 4), torch.ones(3, 4)).to_event(2)
    with local_reparameterization(), pytest.raises(TypeError, match="moment_matching"):
        ops.linear(x, pyro.sample("w", q))
    with torch.no_grad(), local_reparameterization(moment_matching=True):
        out = ops.linear(x.repeat(K, 1), pyro.sample("w", q)).reshape(K, 2, 3)
    var = x.square().sum(-1, keepdim=True).expand(2, 3) / 3  # Var U(-1, 1) = 1/3
    _check_moments(out, torch.zeros(2, 3), var, "fast dropout")


def test_noise_is_per_object_under_svi_traces():
    model = Classifier(MLP([4, 5, 3]), num_data=10)
    guide = NetworkGuide(model, default="additive")
    x = torch.randn(1, 4).repeat(6, 1)  # six identical objects
    with torch.no_grad():
        tr = pyro.poutine.trace(guide).get_trace(x)
        plain = pyro.poutine.replay(model, tr)(x)
        with local_reparameterization():
            tr = pyro.poutine.trace(guide).get_trace(x)
            lrt = pyro.poutine.replay(model, tr)(x)
    assert torch.allclose(plain, plain[:1].expand_as(plain))  # one weight sample per batch
    assert lrt.std(0).min() > 0  # independent noise per object


def test_lrt_handler_clears_and_checks_eps():
    with pytest.raises(ValueError, match="eps"):
        local_reparameterization(eps=-1.0)
    with local_reparameterization() as h:
        w = pyro.sample("w", ZeroMeanNormal(torch.ones(3, 4)).to_event(2))
        assert len(h._drawn) == 1
        del w  # entries are weak: they go with the sampled tensor
        assert len(h._drawn) == 0
        w = pyro.sample("w", ZeroMeanNormal(torch.ones(3, 4)).to_event(2))
        assert len(h._drawn) == 1
    assert len(h._drawn) == 0 and w.shape == (3, 4)  # the registry is cleared on exit


def test_lazy_sites_skip_the_weight_draw_exactly():
    """A lazy site's weight is never drawn: the trace holds a NaN placeholder and the op's output is
    the LRT formula with the op's own noise as the only random draw."""
    torch.manual_seed(0)
    loc, scale = torch.randn(3, 4), torch.rand(3, 4) + 0.1
    x = torch.randn(5, 4)
    torch.manual_seed(1)
    with local_reparameterization(lazy_sites={"w"}):
        tr = pyro.poutine.trace(lambda: pyro.sample("w", dist.Normal(loc, scale).to_event(2))).get_trace()
        w = tr.nodes["w"]["value"]
        out = ops.linear(x, w)
    assert w.shape == (3, 4) and torch.isnan(w).all() and w.stride() == (0, 0)
    torch.manual_seed(1)
    expected = x @ loc.T + torch.randn(5, 3) * ((x.square() @ scale.square().T) + 1e-16).sqrt()
    torch.testing.assert_close(out, expected)
    # any other use of the placeholder is loud (NaN, or an error under validation), never a wrong number
    assert torch.isnan(dist.Normal(loc, scale, validate_args=False).log_prob(w)).all()
    with pytest.raises(ValueError, match="support"):
        dist.Normal(loc, scale, validate_args=True).log_prob(w)


def test_the_elbo_makes_lazy_only_the_sites_with_analytic_kl():
    """DecomposedELBO(lrt=True) finds the analytic-KL sites itself, by a probe that leaves the RNG
    alone, and draws no weight for them; nothing is passed by name between fit and the handler."""
    from pyro_varnet.infer import DecomposedELBO, fit

    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    for prior, expected in (("log-uniform", {"net.fc1.weight", "net.fc2.weight"}), ("student-t", set())):
        pyro.clear_param_store()
        model = Classifier(MLP([4, 6, 2], prior=prior), num_data=40)
        guide = NetworkGuide(model, default="layer")
        guide(x)
        elbo = DecomposedELBO(lrt=True)
        state = torch.get_rng_state()
        elbo._prepare(model, guide, (x, y), {})
        assert elbo.analytic_sites == expected
        assert torch.equal(torch.get_rng_state(), state)  # the probe leaves the RNG alone
        model_trace, guide_trace = elbo._get_trace(model, guide, (x, y), {})
        for name in guide.site_names:
            assert bool(torch.isnan(guide_trace.nodes[name]["value"]).all()) == (name in expected)
        assert math.isfinite(float(elbo(model, guide)(x, y).detach()))
        h = fit(model, guide, (x, y), epochs=2, batch_size=20, seed=0, progress=False)
        assert all(math.isfinite(e["elbo"]) for e in h.epochs)


def test_conv_lrt_makes_output_positions_independent_unlike_a_weight_draw():
    """LRT on a convolution is exact per output position but not jointly: one kernel draw gives
    equal outputs at positions that see equal patches, LRT gives them independent noise. A net
    trained under LRT therefore has to be evaluated under LRT (``predict(lrt=True)``)."""
    site = random_site("zero-mean", "conv2d")
    x = torch.ones(1, 2, 5, 5)  # every 3x3 patch is the same
    n = 4000
    with torch.no_grad():
        direct = torch.stack([plain_op("conv2d")(x, site().sample()) for _ in range(n)])[:, 0, 0]
        with local_reparameterization():
            lrt = torch.cat([ops.conv2d(x, pyro.sample("w", site())) for _ in range(n)])[:, 0]
    torch.testing.assert_close(direct[:, 0, 0], direct[:, 2, 2])  # fully dependent
    corr = torch.corrcoef(torch.stack([lrt[:, 0, 0], lrt[:, 2, 2]]))[0, 1]
    assert abs(float(corr)) < 5 / math.sqrt(n)  # independent: |corr| within 5 SE of 0


def _seeded(fn):
    def call(*args):
        torch.manual_seed(0)  # the same ε at every call, so that gradcheck differentiates one draw
        return fn(*args)

    return call


@pytest.mark.parametrize("with_mean", [True, False])
def test_gaussian_output_is_the_autograd_expression_with_its_gradients(with_mean):
    from pyro_varnet.poutine.local_reparameterization_messenger import gaussian_output

    mean = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True) if with_mean else None
    var = torch.rand(4, 3, 5, dtype=torch.float64, requires_grad=True) + 0.1
    inputs = (mean, var) if with_mean else (var,)

    def plain(*a):
        m, v = a if with_mean else (None, a[0])
        std = (v + 1e-3).sqrt()
        eps = torch.randn_like(std)
        return eps * std if m is None else m + eps * std

    fused = _seeded(lambda *a: gaussian_output(*((a[0], a[1]) if with_mean else (None, a[0])), 1e-3))
    plain = _seeded(plain)
    out = fused(*inputs)
    assert torch.allclose(out, plain(*inputs), rtol=1e-13, atol=0)  # the same draws from the same RNG
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(fused(*inputs), inputs, g), torch.autograd.grad(plain(*inputs), inputs, g)):
        assert torch.allclose(a, b, rtol=1e-12, atol=0)
    assert torch.autograd.gradcheck(fused, inputs)


def test_gaussian_output_with_a_broadcast_mean_gradchecks():
    from pyro_varnet.poutine.local_reparameterization_messenger import gaussian_output

    # a zero-mean weight with a Gaussian bias: the mean is the bias, broadcast over the objects
    mean = torch.randn(5, dtype=torch.float64, requires_grad=True)
    var = torch.rand(3, 5, dtype=torch.float64, requires_grad=True) + 0.1
    fused = _seeded(lambda m, v: gaussian_output(m, v, 1e-3))
    assert fused(mean, var).shape == (3, 5)
    assert torch.autograd.gradcheck(fused, (mean, var))


def test_square_gradcheck_and_value():
    from pyro_varnet._numerics import square

    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.equal(square(x), x.square())
    assert torch.autograd.gradcheck(square, (x,))
    assert not square(x.detach()).requires_grad
