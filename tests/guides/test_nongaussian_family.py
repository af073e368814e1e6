"""A non-Gaussian guide family is one file plus registrations (tests/guides/cauchy_family.py):
its exact local reparameterization, mean propagation and pruning come from its WeightRules,
looked up by distribution type; no handler knows about it."""

import ast
import math
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

from pyro_varnet import ops
from pyro_varnet.data import toy_problem
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import DecomposedELBO, fit, predict
from pyro_varnet.models import MLP, Classifier
from pyro_varnet.poutine import flipout, local_reparameterization, mean_propagation, prune, weight_rules
from tests.guides.cauchy_family import NAME, CauchyRules, registered


def cauchy_cdf(v, loc, scale):
    return 0.5 + torch.atan((v - loc) / scale) / math.pi


def ks_statistic(samples, cdf):
    """One-sample Kolmogorov-Smirnov statistic of each column of ``samples`` (M, k) against ``cdf``."""
    m = samples.shape[0]
    s, _ = samples.sort(0)
    f = cdf(s)
    grid = torch.arange(1, m + 1, dtype=s.dtype)[:, None] / m
    return torch.maximum(grid - f, f - (grid - 1 / m)).amax(0)


def ks_critical(m, alpha):
    """Asymptotic critical value of the one-sample KS statistic at level ``alpha``."""
    return math.sqrt(-0.5 * math.log(alpha / 2)) / math.sqrt(m)


def weight_trace(loc, scale):
    def model():
        return pyro.sample("w", dist.Cauchy(loc, scale).to_event(loc.dim()))

    return model


@pytest.mark.parametrize("op", ["linear", "conv2d"])
def test_lrt_of_cauchy_weights_is_the_exact_stable_law(op):
    # x fixed; every object (row) of a repeated batch gets its own output draw under the
    # registered rule. Each output's marginal must be Cauchy(op(x, μ), op(|x|, γ)).
    g = torch.Generator().manual_seed(0)
    m = 4000
    if op == "linear":
        x, loc, scale = torch.randn(3, 20, generator=g), torch.randn(4, 20, generator=g), torch.rand(4, 20, generator=g)
        run, plain = ops.linear, F.linear
    else:
        x, loc = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 3, 3, generator=g)
        scale = torch.rand(2, 3, 3, 3, generator=g)
        run, plain = ops.conv2d, F.conv2d
    xs = x.repeat(m, *([1] * (x.dim() - 1)))
    pyro.set_rng_seed(1)
    with registered(), local_reparameterization():
        w = weight_trace(loc, scale)()
        out = run(xs, w)
    out = out.reshape(m, -1)
    centre, width = plain(x, loc).reshape(-1), plain(x.abs(), scale).reshape(-1)
    k = out.shape[1]
    stat = ks_statistic(out, lambda v: cauchy_cdf(v, centre, width))
    crit = ks_critical(m, 1e-3 / k)  # Bonferroni over the k outputs
    assert (stat < crit).all(), (stat.max(), crit)
    # the test can fail: direct draws of W agree, a Gaussian with the same scale does not
    direct = torch.stack([plain(x, dist.Cauchy(loc, scale).sample()).reshape(-1) for _ in range(m)])
    assert (ks_statistic(direct, lambda v: cauchy_cdf(v, centre, width)) < crit).all()
    wrong = centre + width * torch.randn(m, k)
    assert (ks_statistic(wrong, lambda v: cauchy_cdf(v, centre, width)) > crit).any()


def test_without_its_rules_the_handlers_say_what_is_missing():
    loc, scale = torch.randn(3, 5), torch.rand(3, 5)
    with registered(rules=False):
        with pytest.raises(TypeError, match="register WeightRules"), local_reparameterization():
            ops.linear(torch.randn(2, 5), weight_trace(loc, scale)())
        with pytest.raises(ValueError, match="non-finite mean.*register WeightRules"), mean_propagation():
            weight_trace(loc, scale)()
    assert type(weight_rules(dist.Cauchy(loc, scale))).__name__ == "WeightRules"  # unregistered again


def test_registered_rules_drive_mean_propagation_prune_and_flipout():
    loc, scale = torch.randn(3, 5), torch.rand(3, 5)
    x = torch.randn(2, 5)
    with registered():
        assert isinstance(weight_rules(dist.Cauchy(loc, scale)), CauchyRules)
        with mean_propagation():
            assert torch.equal(ops.linear(x, weight_trace(loc, scale)()), F.linear(x, loc))
        keep = scale >= 0.5
        with mean_propagation(), prune(threshold=0.5):
            assert torch.equal(ops.linear(x, weight_trace(loc, scale)()), F.linear(x, loc * keep))
        with prune(threshold=0.5):
            w = weight_trace(loc, scale)()
        assert torch.equal(w[~keep], torch.zeros_like(w[~keep])) and w[keep].ne(0).all()
        pyro.set_rng_seed(0)
        with flipout():
            out = ops.linear(x.repeat(2000, 1), weight_trace(loc, scale)())
        # flipout flips the signs of ONE weight draw's perturbation around the registered point (the
        # location): given that draw the rows are bounded and centred on op(x, μ), within 5 standard errors
        rows = out.reshape(2000, -1)
        se = rows.std(0) / math.sqrt(rows.shape[0])
        assert ((rows.mean(0) - F.linear(x, loc).reshape(-1)).abs() < 5 * se).all()


def test_the_family_trains_chosen_by_the_elbo_and_predicts():
    x, y = toy_problem(100, seed=0)
    with registered():
        model = Classifier(MLP([2, 16, 4]), num_data=len(x))
        guide = NetworkGuide(model, default=NAME)
        h = fit(model, guide, (x, y), epochs=60, batch_size=100, lr=1e-2, progress=False, seed=0, eval_modes=())
        assert guide.exact_lrt  # from the registry: the Cauchy rules give an exact rule
        loss = DecomposedELBO(lrt=None)(model, guide)
        loss(x, y)
        assert loss.elbo.lrt is True
        assert math.isfinite(h["elbo"][-1]) and h["elbo"][-1] > h["elbo"][0]
        for mode in ("ensemble", "mean"):
            acc = (predict(model, guide, x, mode=mode, num_samples=10).argmax(-1) == y).float().mean()
            assert acc > 0.9, (mode, acc)


def test_no_handler_tests_the_type_of_a_weight_distribution():
    # per-type behaviour lives in poutine/weight_rules.py only: the handler modules import no
    # distribution class but Delta (a point mass is a parameter, not a weight distribution)
    root = Path(__file__).resolve().parents[2] / "pyro_varnet" / "poutine"
    for path in root.glob("*_messenger.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and "distributions" in node.module:
                names = {a.name for a in node.names}
                assert names <= {"Delta"}, (path.name, names)
