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
