"""Devices and dtypes: everything the library creates follows the model's device and dtype.

The ``meta`` device stands in for CUDA on a CPU-only machine: a tensor created on the CPU by
mistake meets a meta tensor in some op and raises "Tensor on device cpu is not on the expected
device meta". float64 stands in for dtype handling (float32 by mistake fails in matmuls).
"""

import pyro
import pytest
import torch

from pyro_varnet.analysis import elbo_report
from pyro_varnet.guides import NetworkGuide, ZeroMean
from pyro_varnet.infer import MODES, fit, predict, predictive_uncertainty
from pyro_varnet.models import (
    MLP,
    BinaryClassifier,
    Classifier,
    LeNet5,
    NoisyWeightNormLinear,
    Regressor,
    WNLeNet300_100,
)


def _models():
    """(name, model, guide, x, y) covering every prior, the families and the likelihoods."""
    torch.manual_seed(0)
    img, labels = torch.rand(24, 1, 28, 28), torch.randint(0, 10, (24,))
    out = []
    for prior in ("log-uniform", "student-t", "normal", "ard"):
        model = Classifier(LeNet5(batchnorm=True, bayesian=["conv2", "fc1", "fc2"], prior=prior), 24)
        guide = NetworkGuide(model, default="neuron", families={"fc1": ZeroMean(), "conv2": "additive"})
        out.append((f"lenet5-{prior}", model, guide, img, labels))
    model = Classifier(WNLeNet300_100(), 24)
    out.append(("weightnorm", model, NetworkGuide(model), img, labels))
    x = torch.randn(30, 3)
    model = Regressor(MLP([3, 8, 8, 1], prior="student-t"), 30)
    out.append(("regressor", model, NetworkGuide(model, families={"fc2": ZeroMean()}), x, x.sum(-1)))
    model = Regressor(MLP([3, 8, 2]), 30, noise="heteroscedastic")
    out.append(("heteroscedastic", model, NetworkGuide(model, default="dropout"), x, x.sum(-1)))
    model = BinaryClassifier(MLP([3, 8, 1]), 30)
    out.append(("binary", model, NetworkGuide(model, default="weight"), x, (x[:, 0] > 0).long()))
    return out


def _placement(model, guide) -> set:
    tensors = [*model.parameters(), *model.buffers(), *guide.parameters(), *guide.buffers()]
    return {(t.device.type, t.dtype) for t in tensors if t.is_floating_point()}


@pytest.mark.parametrize("case", range(len(_models())), ids=[m[0] for m in _models()])
def test_fit_on_the_meta_device_creates_nothing_elsewhere(case):
    name, model, guide, x, y = _models()[case]
    with pyro.validation_enabled(False):  # argument checks read values, which meta tensors lack
        history = fit(model, guide, (x, y), epochs=2, batch_size=12, device="meta", seed=0, progress=False)
        assert _placement(model, guide) == {("meta", torch.float32)}
        assert len(history) == 2
        # the guide can also be set up there from scratch (the failing case)
        pyro.clear_param_store()
        fresh = NetworkGuide(model, default="layer")
        fresh(x[:2].to("meta"))
        assert {p.device.type for p in fresh.parameters()} == {"meta"}


@pytest.mark.parametrize("case", range(len(_models())), ids=[m[0] for m in _models()])
def test_float64_end_to_end(case):
    name, model, guide, x, y = _models()[case]
    model.double()
    y = y.double() if y.is_floating_point() else y
    data = (x.double(), y)
    history = fit(model, guide, data, epochs=2, batch_size=12, test_data=data, eval_modes=MODES, eval_samples=3,
                  seed=0, progress=False)  # fmt: skip
    assert _placement(model, guide) == {("cpu", torch.float64)}
    assert all(v == v for k, v in history.last.items() if k.startswith("test_"))  # no NaN metric
    for mode in MODES:
        p = predict(model, guide, x, mode=mode, num_samples=3)  # float32 inputs follow the model's dtype
        assert getattr(p, "loc", p).dtype == torch.float64, mode
    if name != "weightnorm":  # one more full report per family kind is enough
        report = elbo_report(model, guide, data, data, num_samples=2, elbo_samples=1, num_draws=2)
        assert report.elbo == report.elbo


def test_fit_converts_dtype_and_device_and_batches_follow():
    _, model, guide, x, y = _models()[0]
    fit(model, guide, (x, y), epochs=1, batch_size=12, dtype=torch.float64, device="cpu", progress=False)
    assert _placement(model, guide) == {("cpu", torch.float64)}
    u = predictive_uncertainty(model, guide, x, num_samples=3)
    assert u["mutual_information"].dtype == torch.float64 and (u["mutual_information"] >= 0).all()
    assert torch.allclose(u["entropy"], u["expected_entropy"] + u["mutual_information"])


@pytest.mark.parametrize("direction", ["projected", "tangent", "rotate-tn", "rotate-beta"])
def test_noisy_weightnorm_draws_its_noise_on_the_layer_device(direction):
    def layer():
        return NoisyWeightNormLinear(6, 4, direction=direction, magnitude="gamma", magnitude_alpha=0.1)

    if direction != "rotate-beta":  # torch has no meta kernel for Beta (Dirichlet) sampling
        out = layer().to("meta")(torch.randn(5, 6, device="meta"))
        assert out.device.type == "meta"
    out = layer().double()(torch.randn(5, 6, dtype=torch.float64))
    assert out.dtype == torch.float64
