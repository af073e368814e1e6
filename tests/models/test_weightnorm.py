"""Weight-normalized layers: the variational direction-magnitude model (WN §4) and noise layers (§3)."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.nn import PyroModule

from pyro_varnet.directions import mean_direction_length
from pyro_varnet.guides import AngleSite, MagnitudeSite, NetworkGuide
from pyro_varnet.infer import DecomposedELBO
from pyro_varnet.models import (
    Classifier,
    NoisyWeightNormConv2d,
    NoisyWeightNormLinear,
    WeightNormConv2d,
    WeightNormLinear,
    set_stochastic,
)
from pyro_varnet.poutine import local_reparameterization, mean_propagation
from tests.common import assert_within_se

K = 2000


class One(PyroModule):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, y=None):
        return self.layer(x)


def _setup(layer, x, angle_loc=0.6):
    torch.manual_seed(0)
    model = One(layer)
    guide = NetworkGuide(model)
    guide(x)
    with torch.no_grad():
        for name in guide.site_names:
            site = guide.site(name)
            if isinstance(site, MagnitudeSite):
                site.m.copy_(torch.linspace(0.5, 1.5, site.m.numel()))
                site.log_lambda.fill_(math.log(0.3))
            else:
                site.mu.fill_(angle_loc)
                site.log_sigma.fill_(math.log(0.3))
    return model, guide


def _draws(model, guide, x, handler=None, k=K):
    out = []
    with torch.no_grad():
        for _ in range(k):
            with handler() if handler else poutine.block():
                tr = poutine.trace(guide).get_trace(x)
                out.append(poutine.replay(model, trace=tr)(x))
    return torch.stack(out).double()


def _same_moments(a, b, msg):
    se_mean = ((a.var(0) + b.var(0)) / K).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() <= 5 * se_mean).all(), f"{msg}: means differ"
    se_var = (
        ((a - a.mean(0)).pow(4).mean(0) - a.var(0).square()) / K
        + ((b - b.mean(0)).pow(4).mean(0) - b.var(0).square()) / K
    ).sqrt()
    assert ((a.var(0) - b.var(0)).abs() <= 5 * se_var).all(), f"{msg}: variances differ"


@pytest.mark.parametrize("kind", ["linear", "reverse", "conv2d"])
def test_per_object_g_and_angle_match_direct_sampling(kind):
    """Local reparameterization draws g and ε per object (WN eq. 45, 48); each object's output
    distribution is the same as with one draw per mini-batch."""
    if kind == "conv2d":
        layer, x = WeightNormConv2d(2, 3, 2), torch.randn(2, 2, 3, 3)
    else:
        layer, x = WeightNormLinear(4, 3, reverse=kind == "reverse"), torch.randn(2, 4)
    model, guide = _setup(layer, x)
    direct = _draws(model, guide, x)
    lrt = _draws(model, guide, x, local_reparameterization)
    _same_moments(direct, lrt, kind)
    # and the objects of a batch no longer share g and ε
    flat_d, flat_l = direct.flatten(2), lrt.flatten(2)
    copies = torch.cat([x[:1], x[:1]])
    same_d = _draws(model, guide, copies, k=20)
    assert torch.equal(same_d[:, 0], same_d[:, 1])
    same_l = _draws(model, guide, copies, local_reparameterization, k=20)
    assert not torch.equal(same_l[:, 0], same_l[:, 1])
    assert flat_d.shape == flat_l.shape


def test_decorrelated_directions_make_copies_independent():
    layer = WeightNormLinear(6, 2)
    x = torch.randn(1, 6).repeat(2, 1)
    model, guide = _setup(layer, x, angle_loc=1.2)  # large angles: the φ term dominates
    shared = _draws(model, guide, x, local_reparameterization)
    indep = _draws(model, guide, x, lambda: local_reparameterization(decorrelate_directions=True))
    corr = lambda d: torch.stack([torch.corrcoef(d[:, :, j].T)[0, 1] for j in range(2)])  # noqa: E731
    assert (corr(shared) > 5 / math.sqrt(K)).all()  # one φ per mini-batch: copies correlated
    assert (corr(indep).abs() < 5 / math.sqrt(K)).all()
    _same_moments(shared, indep, "per-object φ keeps each object's distribution")


def test_mean_propagation_is_deterministic_and_uses_posterior_means():
    layer = WeightNormLinear(5, 3)
    x = torch.randn(4, 5)
    model, guide = _setup(layer, x)
    with torch.no_grad(), mean_propagation():
        a, b = (poutine.replay(model, trace=poutine.trace(guide).get_trace(x))(x) for _ in range(2))
    torch.testing.assert_close(a, b)
    q_g, q_e = guide.site("layer.g").base(), guide.site("layer.angle").base()
    v_norm = layer._direction()
    expected = q_g.mean * q_e.mean.cos() * (x @ v_norm.T) + layer.bias
    torch.testing.assert_close(a, expected.detach())


def test_guide_families_kl_and_training():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 6, 6)
    y = (x.mean((1, 2, 3)) > 0).long()

    class Net(PyroModule):
        def __init__(self):
            super().__init__()
            self.conv = WeightNormConv2d(1, 4, 3)
            self.fc = WeightNormLinear(64, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    pyro.clear_param_store()
    model = Classifier(Net(), num_data=64)
    guide = NetworkGuide(model, default="layer")
    guide(x)
    kinds = {n: type(guide.site(n)) for n in guide.site_names}
    assert kinds == {
        "net.conv.g": MagnitudeSite,
        "net.conv.angle": AngleSite,
        "net.fc.g": MagnitudeSite,
        "net.fc.angle": AngleSite,
    }
    assert guide.exact_lrt
    elbo = DecomposedELBO()
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.02}), elbo)
    losses = []
    for _ in range(150):
        with local_reparameterization(decorrelate_directions=True):
            losses.append(svi.step(x, y))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) < sum(losses[:10])
    # the KL is the sum of WN eq. 37 (g) and eq. 39 (angle) over neurons
    from torch.distributions import kl_divergence

    with torch.no_grad():
        tr = poutine.trace(poutine.replay(model, trace=poutine.trace(guide).get_trace(x, y))).get_trace(x, y)
        kl = sum(float(kl_divergence(guide.site(n)(), tr.nodes[n]["fn"]).sum()) for n in guide.site_names)
        elbo.loss(model, guide, x, y)
    assert elbo.last["kl"] == pytest.approx(kl, rel=1e-5)


@pytest.mark.parametrize("direction", ["projected", "tangent", "rotate-tn", "rotate-beta", "none"])
@pytest.mark.parametrize("on", ["weights", "activations"])
def test_noisy_layers_are_stochastic_only_when_asked(direction, on):
    torch.manual_seed(0)
    layer = NoisyWeightNormLinear(
        6,
        3,
        direction=direction,
        direction_scale=0.5 if "beta" not in direction else 2.0,
        magnitude="gamma",
        magnitude_alpha=0.2,
        on=on,
    )
    x = torch.randn(5, 6)
    layer.train()
    assert not torch.equal(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), x @ layer.weight().T + layer.bias)
    set_stochastic(layer, True)
    assert not torch.equal(layer(x), layer(x))
    conv = NoisyWeightNormConv2d(2, 3, 3, direction=direction, direction_scale=0.5 if "beta" not in direction else 2.0)
    set_stochastic(conv, False)
    xc = torch.randn(2, 2, 5, 5)
    torch.testing.assert_close(conv(xc), conv(xc))


@pytest.mark.parametrize("on", ["weights", "activations"])
def test_noise_free_mean_weights_equal_the_average_noisy_layer(on):
    # deterministic="mean" is E over the direction noise of the noisy layer's output; "direction"
    # (WN §5.1.1) is 1/c times larger apart from the bias
    torch.manual_seed(0)
    layer = NoisyWeightNormLinear(20, 3, direction="projected", direction_scale=0.1, on=on)
    with torch.no_grad():
        layer.bias.fill_(0.7)
    x = torch.randn(2, 20)
    with torch.no_grad():
        set_stochastic(layer, True)
        draws = torch.stack([layer(x) for _ in range(20_000)])
        set_stochastic(layer, False, deterministic="mean")
        mean_pass = layer(x)
        set_stochastic(layer, False)
        direction_pass = layer(x)
    assert_within_se(draws.mean(0), mean_pass, draws.std(0) / math.sqrt(len(draws)))
    c = mean_direction_length("projected", 0.1, 20)
    torch.testing.assert_close(mean_pass - 0.7, c * (direction_pass - 0.7))
    conv = NoisyWeightNormConv2d(2, 3, 3, direction="tangent", direction_scale=0.1)
    xc = torch.randn(1, 2, 5, 5)
    set_stochastic(conv, False, deterministic="mean")
    scaled = conv(xc) - conv.bias[:, None, None]
    set_stochastic(conv, False)
    torch.testing.assert_close(
        scaled, mean_direction_length("tangent", 0.1, 18) * (conv(xc) - conv.bias[:, None, None])
    )
    with pytest.raises(ValueError, match="deterministic weights"):
        set_stochastic(conv, False, deterministic="mode")


def test_bad_arguments():
    with pytest.raises(ValueError, match="direction noise"):
        NoisyWeightNormLinear(3, 2, direction="spin")
    with pytest.raises(ValueError, match="noise placement"):
        NoisyWeightNormLinear(3, 2, on="gradients")
    with pytest.raises(ValueError, match="magnitude_alpha"):
        NoisyWeightNormLinear(3, 2, magnitude="normal", magnitude_alpha=-1.0)
    with pytest.raises(ValueError, match="dimension >= 2"):
        WeightNormLinear(1, 3)
    with pytest.raises(ValueError, match="expected input of shape"):
        WeightNormLinear(3, 2)(torch.randn(4, 5))


def test_posterior_table_sparsity_and_plot(tmp_path):
    from pyro_varnet.analysis import plot_weightnorm_posteriors, structured_sparsity, weightnorm_posteriors

    layer, x = WeightNormLinear(4, 6), torch.randn(3, 4)
    model, guide = _setup(layer, x)
    with torch.no_grad():
        guide.site("layer.g").log_lambda[:2] = 3.0  # two neurons whose magnitude is pure noise
    df = weightnorm_posteriors(guide, "layer")
    assert len(df) == 6 and (df["mean_angle"].between(0, math.pi / 2)).all()
    torch.testing.assert_close(
        torch.tensor(df["log_alpha"].values),
        2 * (torch.tensor(df["lambda"].values) / torch.tensor(df["m"].values)).log(),
    )
    sp = structured_sparsity(guide, ["layer"])
    assert sp.loc[0, "removable"] == 2 and sp.loc[0, "fraction"] == pytest.approx(2 / 6)
    plot_weightnorm_posteriors(guide, "layer", tmp_path / "wn.png", neurons=4)
    assert (tmp_path / "wn.png").stat().st_size > 10_000


@pytest.mark.parametrize("decorrelate", [False, True])
def test_fit_trains_a_weightnorm_net_under_lrt(decorrelate):
    """fit's lazy weights must still give per-object draws of g and ε (a NaN placeholder otherwise)."""
    from pyro_varnet.infer import fit
    from pyro_varnet.models import WNLeNet300_100

    torch.manual_seed(0)
    x = torch.rand(60, 1, 28, 28)
    y = (x.mean((1, 2, 3)) > 0.5).long()
    pyro.clear_param_store()
    model = Classifier(WNLeNet300_100(sizes=(784, 16, 8, 2)), num_data=60)
    guide = NetworkGuide(model)
    options = {"decorrelate_directions": decorrelate}
    h = fit(model, guide, (x, y), epochs=2, batch_size=30, lrt_options=options, progress=False)
    assert all(math.isfinite(e["elbo"]) for e in h.epochs)
    # log α is logged for the magnitudes; an angle site has none (not a +inf "variance layer")
    logged = {k for k in h.epochs[-1] if k.startswith("log_alpha/")}
    assert logged == {f"log_alpha/net.fc{i}.g" for i in (1, 2, 3)}
    assert all(math.isfinite(h.epochs[-1][k]) for k in logged)
