"""K weight samples in one pass (stacked_weights) equal K separate passes, and predict uses it."""

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from pyro_varnet import ops
from pyro_varnet.guides import NetworkGuide, ZeroMean
from pyro_varnet.infer import predict
from pyro_varnet.infer.predict import _stack, stacking_mode, stacking_works
from pyro_varnet.models import MLP, Classifier, LeNet5, WNLeNet300_100
from pyro_varnet.poutine import stacked_weights

K = 3


@pytest.mark.parametrize("stacked_bias", [False, True])
def test_linear_with_stacked_weights_is_k_separate_ops(stacked_bias):
    torch.manual_seed(0)
    x, w = torch.randn(5, 2, 4), torch.randn(K, 6, 4)  # extra middle dim: linear acts on the last
    b = torch.randn(K, 6) if stacked_bias else torch.randn(6)
    with stacked_weights(num_samples=K):
        out = ops.linear(x.repeat_interleave(K, 0), w, b)
    for j in range(K):
        expected = F.linear(x, w[j], b[j] if stacked_bias else b)
        torch.testing.assert_close(out[j::K], expected)


@pytest.mark.parametrize("kwargs", [{}, {"stride": 2, "padding": 1}, {"groups": 2, "dilation": 2}])
def test_conv2d_with_stacked_weights_is_k_separate_ops(kwargs):
    torch.manual_seed(0)
    groups = kwargs.get("groups", 1)
    x, w, b = torch.randn(4, 4, 9, 9), torch.randn(K, 6, 4 // groups, 3, 3), torch.randn(6)
    with stacked_weights(num_samples=K):
        out = ops.conv2d(x.repeat_interleave(K, 0), w, b, **kwargs)
    for j in range(K):
        torch.testing.assert_close(out[j::K], F.conv2d(x, w[j], b, **kwargs))


@pytest.mark.parametrize("stacked_bias", [False, True])
def test_shared_input_linear_is_k_separate_ops(stacked_bias):
    """With num_objects, un-repeated rows go through one matmul with K·out outputs."""
    torch.manual_seed(0)
    x, w = torch.randn(5, 2, 4), torch.randn(K, 6, 4)
    b = torch.randn(K, 6) if stacked_bias else torch.randn(6)
    with stacked_weights(num_samples=K, num_objects=5):
        out = ops.linear(x, w, b)
        torch.testing.assert_close(ops.linear(x, w[0]), F.linear(x, w[0]))  # deterministic: N rows
    assert out.shape == (5 * K, 2, 6)
    for j in range(K):
        torch.testing.assert_close(out[j::K], F.linear(x, w[j], b[j] if stacked_bias else b))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"stride": 2, "padding": 1},
        {"groups": 2, "dilation": 2},
        {"stride": (2, 1), "padding": (0, 2), "dilation": (1, 2)},  # the unfolded matmul's geometry
        {"padding": "same"},
        {"padding": "valid", "stride": 1},
    ],
)
def test_shared_input_conv2d_is_k_separate_ops(kwargs):
    torch.manual_seed(0)
    groups = kwargs.get("groups", 1)
    x, w, b = torch.randn(4, 4, 9, 9), torch.randn(K, 6, 4 // groups, 3, 3), torch.randn(K, 6)
    with stacked_weights(num_samples=K, num_objects=4):
        out = ops.conv2d(x, w, b, **kwargs)
        rows = ops.conv2d(x.repeat_interleave(K, 0), w, b, **kwargs)  # repeated rows still work
    for j in range(K):
        torch.testing.assert_close(out[j::K], F.conv2d(x, w[j], b[j], **kwargs))
    torch.testing.assert_close(rows, out)


def test_plain_weights_run_the_plain_op_and_bad_stacks_are_refused():
    x, w = torch.randn(6, 4), torch.randn(5, 4)
    with stacked_weights(num_samples=K):
        torch.testing.assert_close(ops.linear(x, w), F.linear(x, w))
        with pytest.raises(ValueError, match=r"stacked as \(3, \.\.\.\)"):
            ops.linear(x, torch.randn(2, 5, 4))
        with pytest.raises(ValueError, match="divisible by 3"):
            ops.linear(torch.randn(7, 4), torch.randn(K, 5, 4))
        with pytest.raises(ValueError, match="bias"):
            ops.linear(x, torch.randn(K, 5, 4), torch.randn(2, 5))
    with pytest.raises(ValueError, match="positive int"):
        stacked_weights(num_samples=0)
    with pytest.raises(ValueError, match="num_objects"):
        stacked_weights(num_samples=2, num_objects=0)


def _lenet(bayesian=None):
    model = Classifier(LeNet5(batchnorm=True, bayesian=bayesian), num_data=100)
    guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})
    guide(torch.zeros(2, 1, 28, 28))
    with torch.no_grad():
        for name, p in guide.named_parameters():
            if "log_alpha" in name:
                p.fill_(-1.0)
    return model.eval(), guide


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("bayesian", [None, ["fc1"]])
def test_stacked_network_pass_equals_replaying_each_sample(shared, bayesian):
    """Repeated rows, or (shared) each image once: with only fc1 sampled, conv1-conv2 run on
    the 5 images once and fc1 fans them out to 5·K rows."""
    model, guide = _lenet(bayesian)
    x = torch.rand(5, 1, 28, 28)
    traces = [poutine.trace(guide).get_trace(x[:1]) for _ in range(K)]
    handler = stacked_weights(num_samples=K, num_objects=5 if shared else None)
    with torch.no_grad(), handler:
        together = poutine.replay(model, _stack(traces))(x if shared else x.repeat_interleave(K, 0))
    together = together.reshape(5, K, -1)
    with torch.no_grad():
        for j, t in enumerate(traces):
            torch.testing.assert_close(together[:, j], poutine.replay(model, t)(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("net", ["lenet5", "mlp"])
def test_predict_ensemble_is_the_same_stacked_or_not(net):
    if net == "lenet5":
        model, guide = _lenet()
        x = torch.rand(13, 1, 28, 28)
    else:
        model = Classifier(MLP([3, 8, 4]), num_data=100)
        guide = NetworkGuide(model, default="dropout", families={"fc2": "bernoulli"})
        x = torch.randn(13, 3)
        guide(x[:2])
    assert stacking_mode(model, guide, x) == "shared"
    out = {}
    for vectorize in (False, True):
        torch.manual_seed(3)  # the same K guide draws either way
        out[vectorize] = predict(model, guide, x, num_samples=5, batch_size=4, vectorize=vectorize)
    torch.testing.assert_close(out[True], out[False], rtol=1e-4, atol=1e-4)
    assert (out[True] - predict(model, guide, x, num_samples=5, vectorize=True)).abs().max() > 1e-3  # draws matter


def test_models_with_plates_sized_by_their_input_stack_repeated_objects():
    """A user's model whose data plate is sized by x cannot take un-repeated objects (its
    plate would see N rows of K·N logits): "auto" repeats the objects instead."""
    net = MLP([3, 8, 4])

    def model(x, y=None):
        logits = net(x)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("obs", dist.Categorical(logits=logits), obs=y)
        return logits

    guide = NetworkGuide(Classifier(net, num_data=100), default="layer")
    x = torch.randn(9, 3)
    guide(x[:2])
    assert stacking_mode(model, guide, x) == "repeated"
    out = {}
    for vectorize in (False, "auto"):
        torch.manual_seed(3)
        if not vectorize:
            stacking_mode(model, guide, x)  # the check's two draws, so both use the same K draws
        out[vectorize] = predict(model, guide, x, num_samples=4, batch_size=8, vectorize=vectorize)
    torch.testing.assert_close(out["auto"], out[False], rtol=1e-4, atol=1e-4)


def test_weightnorm_networks_fall_back_to_sample_by_sample():
    model = Classifier(WNLeNet300_100(), num_data=100)
    guide = NetworkGuide(model)
    x = torch.rand(6, 1, 28, 28)
    guide(x[:2])
    assert not stacking_works(model, guide, x) and stacking_mode(model, guide, x) is None
    lp = predict(model, guide, x, num_samples=3)  # vectorize="auto" runs them one by one
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(6))
    with pytest.raises(ValueError, match="vectorize"):
        predict(model, guide, x, vectorize="yes")


def _moments_check(draws, mean, var, n):
    """Sample mean and variance of ``n`` draws per entry within 5 standard errors of the truth."""
    se_mean, se_var = (var / n).sqrt(), var * (2 / (n - 1)) ** 0.5
    assert ((draws.mean(0) - mean).abs() <= 5 * se_mean).all()
    assert ((draws.var(0) - var).abs() <= 5 * se_var).all()


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("bias", ["none", "parameter", "gaussian", "stacked"])
@pytest.mark.parametrize("zero_mean", [False, True])
def test_per_object_dense_layer_draws_each_objects_exact_gaussian(shared, bias, zero_mean):
    """per_object: a Gaussian dense layer's outputs are drawn per row from N(xθ + b, x²σ² + σ_b²)
    (VN eq. 4), the distribution one object's outputs have under K weight draws; objects no
    longer share a draw (two nearly equal objects, perfectly correlated under one weight draw,
    become independent)."""
    from pyro_varnet.poutine.weight_rules import Moments

    torch.manual_seed(0)
    n = 4000
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0], [1.0, -2.0, 0.5, 3.1], [0.0, 1.0, -1.0, 0.2]])
    loc, var = torch.randn(2, 4), torch.rand(2, 4) + 0.1
    w = torch.full((n, 2, 4), float("nan"))  # never used: the moments answer
    moments = {w: Moments(None if zero_mean else loc, var)}
    mean, out_var = (torch.zeros(3, 2) if zero_mean else x @ loc.T), x.square() @ var.T
    b = None
    if bias == "parameter":
        b = torch.randn(2)
        mean = mean + b
    elif bias == "gaussian":
        b, b_loc, b_var = torch.full((n, 2), float("nan")), torch.randn(2), torch.rand(2)
        moments[b] = Moments(b_loc, b_var)
        mean, out_var = mean + b_loc, out_var + b_var
    elif bias == "stacked":  # a non-Gaussian bias keeps its K draws, one per sample
        b = torch.randn(n, 2)
    rows = x if shared else x.repeat_interleave(n, 0)
    with stacked_weights(num_samples=n, num_objects=3 if shared else None, per_object=moments):
        out = ops.linear(rows, w, b).reshape(3, n, 2)
    if bias == "stacked":
        out = out - b  # what is left is the Gaussian part, drawn per object
    assert torch.isfinite(out).all()
    for i in range(3):
        _moments_check(out[i], mean[i], out_var[i], n)
    corr = torch.corrcoef(torch.stack([out[0, :, 0], out[1, :, 0]]))[0, 1]
    assert abs(float(corr)) < 5 / n**0.5


def test_dense_moments_only_for_sites_drawn_from_one_gaussian():
    """A site whose distribution depends on another draw (a sampled scale) keeps its K direct
    draws; a Gaussian with fixed parameters gets per-object noise; a non-Gaussian none."""
    from pyro_varnet.infer.predict import _dense_moments

    def guide():
        s = pyro.sample("s", dist.LogNormal(0.0, 1.0))
        pyro.sample("w_fixed", dist.Normal(torch.zeros(2, 3), 1.0).to_event(2))
        pyro.sample("w_hier", dist.Normal(torch.zeros(2, 3), s).to_event(2))
        pyro.sample("w_bern", dist.Bernoulli(0.5 * torch.ones(2, 3)).to_event(2))

    traces = [poutine.trace(guide).get_trace() for _ in range(3)]
    stacked = _stack(traces)
    moments = _dense_moments(traces, stacked)
    assert list(moments) == [stacked.nodes["w_fixed"]["value"]]


@pytest.mark.parametrize("bayesian", [None, ["fc1"]])
def test_dense_noise_gives_each_object_the_direct_draws_predictive(bayesian):
    """predict(lrt="dense") and direct draws estimate the same per-object predictive: over 30
    independent 20-sample ensembles each, the mean predicted probabilities agree within 5 SE
    (SE from the ensembles' spread)."""
    model, guide = _lenet(bayesian)
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    p = {}
    for lrt in (False, "dense"):
        runs = [predict(model, guide, x, num_samples=20, batch_size=20, lrt=lrt, vectorize=True) for _ in range(30)]
        p[lrt] = torch.stack(runs).exp()
    se = ((p[False].var(0) + p["dense"].var(0)) / 30).sqrt()
    assert ((p[False].mean(0) - p["dense"].mean(0)).abs() <= 5 * se + 1e-6).all()
    one = predict(model, guide, x, mode="sample", lrt="dense")  # one draw for the set, dense noise per object
    assert one.shape == (3, 10) and torch.isfinite(one).all()
    for bad in ("conv", 1, 0, None):  # 1 == True but is not a choice
        with pytest.raises(ValueError, match="lrt"):
            predict(model, guide, x, lrt=bad)


@pytest.mark.parametrize("bayesian, expected", [(None, 400 // 20), (["fc1"], 400)])
def test_objects_per_pass_keep_the_largest_output_that_of_a_plain_batch(bayesian, expected):
    """Every layer sampled: conv1's output is K times a plain one per object, so batch // K
    objects; only fc1 sampled: conv1 runs once per object and fc1's K·500 outputs are below
    conv1's 20·24·24, so a whole plain batch of objects per pass."""
    from pyro_varnet.infer.predict import _objects_per_pass

    model, guide = _lenet(bayesian)
    x = torch.rand(3, 1, 28, 28)
    traces = [poutine.trace(guide).get_trace(x[:1]) for _ in range(20)]
    with torch.no_grad():
        assert _objects_per_pass(model, _stack(traces), x, 20, True, None, 400) == expected
        assert _objects_per_pass(model, _stack(traces), x, 20, False, None, 400) == 400 // 20  # repeated rows
