"""Bayesian layers and networks: shapes, sites, deterministic parts, argument checks."""

import numpy as np
import pyro
import pytest
import torch

from pyro_varnet._sites import unwrap
from pyro_varnet.distributions import ARD, LogUniform, StudentTPrior
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.models import (
    BayesConv2d,
    BayesLinear,
    Classifier,
    LeNet5,
    LeNet300_100,
    LeNet500_300,
    ToyNet,
    VGGLike,
)


def _sites(model, *args):
    guide = NetworkGuide(model)
    tr = pyro.poutine.trace(pyro.poutine.replay(model, pyro.poutine.trace(guide).get_trace(*args))).get_trace(*args)
    return {n: tr.nodes[n] for n in guide.site_names}, tr


@pytest.mark.parametrize(
    "net,x,sites,out",
    [
        (LeNet300_100(), torch.rand(3, 1, 28, 28), ["fc1", "fc2", "fc3"], 10),
        (LeNet500_300(), torch.rand(3, 784), ["fc1", "fc2", "fc3"], 10),
        (LeNet5(), torch.rand(3, 1, 28, 28), ["conv1", "conv2", "fc1", "fc2"], 10),
        (LeNet5(batchnorm=True, bayesian=["fc1"]), torch.rand(3, 1, 28, 28), ["fc1"], 10),
        (ToyNet(), torch.rand(3, 2), ["fc5"], 4),
        (VGGLike(width=0.125), torch.rand(3, 3, 32, 32), ["conv11", "conv12", "conv13", "fc1"], 10),
    ],
)
def test_networks_forward_and_sites(net, x, sites, out):
    model = Classifier(net, num_data=50)
    latent, tr = _sites(model, x)
    assert sorted(latent) == sorted(f"net.{s}.weight" for s in sites)
    assert tr.nodes["_RETURN"]["value"].shape == (3, out)
    assert tr.nodes["obs"]["fn"].batch_shape == (3,)


def test_paper_parameter_counts():
    net = LeNet5()
    assert all(getattr(net, n).is_bayesian for n in net.layer_names)
    model = Classifier(net, num_data=10)
    latent, _ = _sites(model, torch.rand(2, 1, 28, 28))
    sizes = {n: s["value"].numel() for n, s in latent.items()}
    # LeNet-5-Caffe: conv1 500, conv2 25 000, fc1 400 000, fc2 5 000 (430 500 weights)
    assert sizes == {
        "net.conv1.weight": 500,
        "net.conv2.weight": 25000,
        "net.fc1.weight": 400000,
        "net.fc2.weight": 5000,
    }
    assert ToyNet().fc5.out_features == 2 and len(ToyNet().layer_names) == 6


@pytest.mark.parametrize("prior,cls", [("log-uniform", LogUniform), ("student-t", StudentTPrior), ("ard", ARD)])
def test_layer_priors(prior, cls):
    model = Classifier(LeNet300_100(prior=prior), num_data=10)
    latent, _ = _sites(model, torch.rand(2, 784))
    assert isinstance(unwrap(latent["net.fc1.weight"]["fn"])[0], cls)
    if prior == "ard":  # lambda is a learned model parameter
        assert "net.fc1.weight_prior.scale" in pyro.get_param_store()


def test_bias_is_deterministic_parameter():
    model = Classifier(LeNet300_100(), num_data=10)
    _sites(model, torch.rand(2, 784))
    assert "net.fc1.bias" in pyro.get_param_store()
    assert BayesLinear(3, 2, bias=False).bias is None


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="positive int"):
        BayesLinear(0, 3)
    with pytest.raises(ValueError, match="prior_scale"):
        BayesLinear(3, 2, prior="ard", prior_scale=-1.0)
    with pytest.raises(ValueError, match="df > 0"):
        BayesLinear(3, 2, prior="student-t", df=0.0)
    with pytest.raises(ValueError, match="divisible"):
        BayesConv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="expected prior"):
        BayesLinear(3, 2, prior="cauchy")
    with pytest.raises(ValueError, match="unknown layers"):
        LeNet5(bayesian=["fc3"])
    with pytest.raises(ValueError, match="activation"):
        LeNet5(activation="swish")
    with pytest.raises(ValueError, match="num_data"):
        Classifier(ToyNet(), num_data=0)


def test_bad_inputs_raise_clear_errors():
    lin, conv = BayesLinear(4, 3, prior=None), BayesConv2d(2, 3, 3, prior=None)
    with pytest.raises(ValueError, match="last dimension 4"):
        lin(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        conv(torch.randn(5, 3, 8, 8))
    model = Classifier(ToyNet(), num_data=10)
    # NaN inputs are found by fit (once per data set) and predict, not by a host sync in every forward
    from pyro_varnet.infer import predict

    with pytest.raises(ValueError, match="NaN or inf"):
        predict(model, NetworkGuide(model), torch.tensor([[float("nan"), 1.0]]))
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(ValueError, match="num_data"):
            Classifier(ToyNet(), num_data=bad)
    assert Classifier(ToyNet(), num_data=np.int64(7)).num_data == 7  # any integral
    assert Classifier(ToyNet(), num_data=torch.tensor(7)).num_data == 7
    with pytest.raises(ValueError, match="labels of shape"):
        model(torch.randn(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(3, 2, dtype=torch.long))


def test_antisymmetric_network_has_zero_mean_logits_under_mean_propagation():
    # VN appendix C: tanh and no biases keep a variance layer's mean activation exactly 0
    from pyro_varnet.guides import ZeroMean
    from pyro_varnet.infer.predict import run_once
    from pyro_varnet.poutine import mean_propagation

    net = LeNet5(bayesian=["conv2"], activation="tanh", bias=False)
    model = Classifier(net, num_data=10)
    guide = NetworkGuide(model, default=ZeroMean())
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad(), mean_propagation():
        logits = run_once(model, guide, x)
    assert torch.equal(logits, torch.zeros(3, 10))
    with torch.no_grad():
        assert run_once(model, guide, x).abs().sum() > 0
