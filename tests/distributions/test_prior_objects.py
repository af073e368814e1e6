"""Priors as objects: the registry, a prior with latent sites of its own (the horseshoe) checked
against a Monte Carlo ELBO, a scale-mixture prior given by a callable, and a prior registered
by a user in one class."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_varnet.data import toy_problem
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.guides.families import AutoSite
from pyro_varnet.infer import DecomposedELBO, fit, predict
from pyro_varnet.models import MLP, BayesLinear, Classifier
from pyro_varnet.priors import REGISTRY, Horseshoe, Prior, build_prior, make_prior, prior_names, register_prior


def test_registry_names_and_errors():
    assert set(prior_names()) >= {"log-uniform", "student-t", "ard", "normal", "horseshoe"}
    with pytest.raises(ValueError, match="expected prior"):
        build_prior("laplace-nope")
    with pytest.raises(TypeError, match="prior name"):
        build_prior(3.0)
    with pytest.raises(ValueError, match="registered already"):
        register_prior("horseshoe")(type("Other", (Prior,), {}))
    owned = BayesLinear(3, 2, prior=Horseshoe())
    with pytest.raises(ValueError, match="belongs to a layer"):
        build_prior(owned.weight_prior)


def _sites(model, x):
    tr = pyro.poutine.trace(model).get_trace(x)
    return {n: s for n, s in tr.nodes.items() if s["type"] == "sample" and not s["is_observed"]}


@pytest.mark.parametrize("local", ["neuron", "weight"])
def test_horseshoe_owns_its_scales(local):
    model = Classifier(MLP([2, 8, 3], prior=Horseshoe(global_scale=0.5, local=local)), num_data=10)
    sites = _sites(model, torch.randn(4, 2))
    assert {"net.fc1.weight_prior.tau", "net.fc1.weight_prior.lam", "net.fc1.weight"} <= set(sites)
    tau, lam = sites["net.fc1.weight_prior.tau"]["value"], sites["net.fc1.weight_prior.lam"]["value"]
    assert lam.shape == ((8,) if local == "neuron" else (8, 2)) and (lam > 0).all() and tau > 0
    prior_w = sites["net.fc1.weight"]["fn"].base_dist
    expected = tau * (lam[:, None] if local == "neuron" else lam)
    torch.testing.assert_close(prior_w.scale, expected.expand(8, 2))
    assert float(sites["net.fc1.weight_prior.tau"]["fn"].scale) == 0.5
    guide = NetworkGuide(model, default="additive")
    guide(torch.randn(4, 2))
    assert isinstance(guide.site("net.fc1.weight_prior.tau"), AutoSite)  # log-normal q for a positive scale
    assert isinstance(guide.site("net.fc1.weight_prior.tau").base(), dist.LogNormal)  # its mean is known
    for mode in ("mean", "sample", "ensemble", "zero_mean"):
        p = predict(model, guide, torch.randn(5, 2), mode=mode, num_samples=3)
        assert p.shape == (5, 3) and torch.isfinite(p).all(), mode
    assert model.net.fc1.prior.startswith("horseshoe(")


def test_horseshoe_elbo_matches_monte_carlo():
    """The ELBO with the weights' KL in closed form given the sampled scales equals Pyro's plain
    Monte Carlo ELBO (every term sampled), within the standard error of the difference."""
    pyro.set_rng_seed(0)
    x, y = toy_problem(30, seed=0)
    model = Classifier(MLP([2, 6, 4], prior="horseshoe"), num_data=len(x))
    guide = NetworkGuide(model, default="additive")
    fit(model, guide, (x, y), epochs=20, batch_size=30, lr=1e-2, progress=False, seed=0, eval_modes=())
    loss = DecomposedELBO(lrt=False)(model, guide)
    n = 500  # ~25 ms per loss evaluation of each kind (Pyro's per-call overhead)
    with torch.no_grad():
        ours = torch.tensor([float(loss(x, y)) for _ in range(n)], dtype=torch.float64)
        mc = torch.tensor([Trace_ELBO().loss(model, guide, x, y) for _ in range(n)], dtype=torch.float64)
    se = math.sqrt(ours.var() / n + mc.var() / n)
    assert abs(float(ours.mean() - mc.mean())) < 4 * se, (float(ours.mean()), float(mc.mean()), se)
    assert float(ours.var()) < float(mc.var())  # the closed-form part removes variance


def test_horseshoe_trains_and_shrinks_neurons():
    pyro.set_rng_seed(0)
    x, y = toy_problem(200, seed=0)
    model = Classifier(MLP([2, 64, 4], prior=Horseshoe(global_scale=1.0)), num_data=len(x))
    guide = NetworkGuide(model, default="additive")
    h = fit(model, guide, (x, y), epochs=150, batch_size=100, lr=1e-2, progress=False, seed=0, eval_modes=())
    elbo = h["elbo"]
    assert sum(elbo[-10:]) / 10 > sum(elbo[:10]) / 10
    acc = float((predict(model, guide, x, mode="ensemble", num_samples=10).argmax(-1) == y).float().mean())
    assert acc > 0.9
    # most hidden units are switched off: their weights' posterior means shrink to < 1 % of the
    # largest unit's, and the posterior medians of their scales tau * lambda_i to a few % of the largest
    med = guide.median()
    norms = med["net.fc1.weight"].norm(dim=1)
    off = float((norms < 0.01 * norms.max()).float().mean())
    scale = med["net.fc1.weight_prior.tau"] * med["net.fc1.weight_prior.lam"]
    ratio = float(scale.median() / scale.max())
    print(
        f"horseshoe toy: acc {acc:.3f}, {off:.0%} of fc1 units with |mu| < 1% of the largest, "
        f"median/max scale {ratio:.3f}"
    )
    assert off > 0.5 and ratio < 0.1


def test_scale_mixture_prior_given_by_a_callable():
    def scale_mixture(shape, pi=0.5, s1=1.0, s2=math.exp(-6)):
        mix = dist.Categorical(torch.tensor([pi, 1 - pi]).expand(*shape, 2))
        comp = dist.Normal(torch.zeros(*shape, 2), torch.tensor([s1, s2]).expand(*shape, 2))
        return dist.MixtureSameFamily(mix, comp).to_event(len(shape))

    pyro.set_rng_seed(0)
    x, y = toy_problem(100, seed=0)
    model = Classifier(MLP([2, 16, 4], prior=scale_mixture), num_data=len(x))
    guide = NetworkGuide(model, default="additive")
    h = fit(model, guide, (x, y), epochs=60, batch_size=100, lr=1e-2, progress=False, seed=0, eval_modes=())
    assert h["elbo"][-1] > h["elbo"][0] and model.net.fc1.prior.endswith("scale_mixture")
    with pytest.raises(ValueError, match="shape"):
        BayesLinear(3, 2, prior=lambda shape: dist.Normal(0.0, 1.0))


class LaplaceTest(Prior):
    """A user's prior in one class: Laplace(0, b) with a learnable b (a PyroParam)."""

    def setup(self, shape):
        super().setup(shape)
        from pyro.nn import PyroParam
        from torch.distributions import constraints

        self.b = PyroParam(torch.tensor(0.1), constraints.positive)

    def distribution(self):
        return dist.Laplace(self._like.new_zeros(()).expand(self.shape), self.b.expand(self.shape)).to_event(
            len(self.shape)
        )


@pytest.fixture
def laplace_registered():
    # what a user writes as a class decorator, undone afterwards so other tests see the library's priors
    register_prior("laplace-test")(LaplaceTest)
    yield
    del REGISTRY["laplace-test"]


def test_a_prior_registered_in_one_class_trains(laplace_registered):
    pyro.set_rng_seed(0)
    x, y = toy_problem(100, seed=0)
    model = Classifier(MLP([2, 16, 4], prior="laplace-test"), num_data=len(x))
    assert "laplace-test" in prior_names()
    guide = NetworkGuide(model, default="weight")
    h = fit(model, guide, (x, y), epochs=40, batch_size=100, lr=1e-2, progress=False, seed=0, eval_modes=())
    assert h["elbo"][-1] > h["elbo"][0]
    assert "net.fc1.weight_prior.b" in dict(model.named_pyro_params())


def test_make_prior_keeps_working():
    assert make_prior("normal", (3, 2), scale=2.0).base_dist.scale.max() == 2.0
    ard = make_prior("ard", (3,), scale=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert ard.base_dist.scale.dtype == torch.float64 and ard.base_dist.scale.tolist() == [1.0, 2.0, 3.0]


def test_make_prior_takes_a_tensor_scale_for_every_prior_with_a_scale():
    # as make_prior always did for "normal" and "ard"; priors without a scale ignore it
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    for name in ("normal", "ard"):
        base = make_prior(name, (2,), scale=s).base_dist
        assert base.scale.dtype == torch.float64 and base.scale.tolist() == [0.5, 2.0], name
    assert make_prior("log-uniform", (2,), scale=s).event_shape == (2,)
