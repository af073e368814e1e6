"""K weight samples in one pass (stacked_weights) equal K separate passes, and predict uses it."""

import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from pyro_varnet import ops
from pyro_varnet.guides import NetworkGuide, ZeroMean
from pyro_varnet.infer import predict
from pyro_varnet.infer.predict import _stack, stacking_works
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


def _lenet():
    model = Classifier(LeNet5(batchnorm=True), num_data=100)
    guide = NetworkGuide(model, default="layer", families={"fc1": ZeroMean()})
    guide(torch.zeros(2, 1, 28, 28))
    with torch.no_grad():
        for name, p in guide.named_parameters():
            if "log_alpha" in name:
                p.fill_(-1.0)
    return model.eval(), guide


def test_stacked_network_pass_equals_replaying_each_sample():
    model, guide = _lenet()
    x = torch.rand(5, 1, 28, 28)
    traces = [poutine.trace(guide).get_trace(x[:1]) for _ in range(K)]
    with torch.no_grad(), stacked_weights(num_samples=K):
        together = poutine.replay(model, _stack(traces))(x.repeat_interleave(K, 0)).reshape(5, K, -1)
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
    assert stacking_works(model, guide, x)
    out = {}
    for vectorize in (False, True):
        torch.manual_seed(3)  # the same K guide draws either way
        out[vectorize] = predict(model, guide, x, num_samples=5, batch_size=4, vectorize=vectorize)
    torch.testing.assert_close(out[True], out[False], rtol=1e-4, atol=1e-4)
    assert (out[True] - predict(model, guide, x, num_samples=5, vectorize=True)).abs().max() > 1e-3  # draws matter


def test_weightnorm_networks_fall_back_to_sample_by_sample():
    model = Classifier(WNLeNet300_100(), num_data=100)
    guide = NetworkGuide(model)
    x = torch.rand(6, 1, 28, 28)
    guide(x[:2])
    assert not stacking_works(model, guide, x)
    lp = predict(model, guide, x, num_samples=3)  # vectorize="auto" runs them one by one
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(6))
    with pytest.raises(ValueError, match="vectorize"):
        predict(model, guide, x, vectorize="yes")
