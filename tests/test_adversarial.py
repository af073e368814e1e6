"""Targeted iterative FGSM with EOT gradients (VN §6.3)."""

import math

import pyro
import pytest
import torch

pytest.importorskip("torchattacks", reason="needs the experiments extra")

from pyro_varnet.experiments.adversarial import (  # noqa: E402
    DeepEnsemble,
    PredictiveNet,
    attack_success_curve,
    random_targets,
)
from pyro_varnet.guides import NetworkGuide, ZeroMean
from pyro_varnet.models import MLP, Classifier


def _trained_pair(seed=0, families=None):
    torch.manual_seed(seed)
    model = Classifier(MLP([6, 8, 3], bayesian=["fc1"]), num_data=30)
    guide = NetworkGuide(model, default="layer", families=families or {})
    guide(torch.rand(2, 6))
    return model, guide


def test_ensemble_net_is_a_normalised_predictive_with_eot_gradients():
    model, guide = _trained_pair(families={"fc1": ZeroMean()})
    x = torch.rand(5, 6, requires_grad=True)
    net = PredictiveNet(model, guide, "ensemble", num_samples=4)
    lp = net(x)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(5))
    lp[:, 0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # fresh draws at every call: a stochastic net's output varies, mean propagation does not
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))
        mean = PredictiveNet(model, guide, "mean")
        torch.testing.assert_close(mean(x), mean(x))


def test_eot_gradient_is_the_gradient_of_the_expected_prediction():
    """Averaging over K draws inside the forward pass: the attack gradient's Monte Carlo error
    shrinks like 1/sqrt(K) (seeded; the tolerance is the spread of single-draw gradients)."""
    model, guide = _trained_pair(families={"fc1": ZeroMean()})
    x0 = torch.rand(1, 6)

    def grad(k):
        x = x0.clone().requires_grad_()
        PredictiveNet(model, guide, "ensemble", num_samples=k)(x)[0, 1].backward()
        return x.grad[0]

    pyro.set_rng_seed(0)
    singles = torch.stack([grad(1) for _ in range(400)])
    big = torch.stack([grad(100) for _ in range(20)])
    sd1 = singles.std(0)
    assert (big.std(0) < sd1 / math.sqrt(100) * 2.5).all()  # ~sd/10, generous factor for the log-mean


def test_attack_succeeds_on_a_linear_model_and_targets_differ():
    torch.manual_seed(0)
    x, y = torch.rand(200, 20), torch.randint(0, 3, (200,))
    t = random_targets(y, 3, seed=1)
    assert (t != y).all()
    net = torch.nn.Sequential(torch.nn.Linear(20, 3))
    rates = attack_success_curve(net, x, t, steps=8, step_size=0.05)
    assert len(rates) == 8 and rates[-1] > 0.9 and rates[-1] > rates[0]
    with pytest.raises(ValueError, match="step_size"):
        attack_success_curve(net, x, t, steps=0)
    with pytest.raises(ValueError, match="NaN"):
        attack_success_curve(net, x.clone().fill_(math.nan), t)


def test_deep_ensemble_and_separate_param_scopes():
    store = pyro.get_param_store()
    members, refs = [], []
    x = torch.rand(4, 6)
    for seed in (0, 1):
        with store.scope() as state:
            model, guide = _trained_pair(seed)
            net = PredictiveNet(model, guide, "mean", param_state=state)
            with torch.no_grad():
                refs.append(net(x))
        members.append(net)
    assert not torch.allclose(refs[0], refs[1])
    with torch.no_grad():
        for net, ref in zip(members, refs):
            torch.testing.assert_close(net(x), ref)
        ens = DeepEnsemble(members)(x)
    torch.testing.assert_close(ens, torch.stack(refs).exp().mean(0).log())
    with pytest.raises(ValueError, match="at least one"):
        DeepEnsemble([])
