"""A zero-mean *output* layer cannot beat chance in expectation (why a network whose every layer
is a variance layer stays at chance, and why VN Table 1's zero-mean column, KL 0.0 and data
term -4.0 k, must have a deterministic output layer): with logits z symmetric around 0 given
the hidden activations, Jensen's inequality for the convex log-sum-exp gives

    E_q log softmax(z)_y = E_q[z_y] - E_q[LSE(z)] <= b_y - LSE(E_q z) = log softmax(b)_y

for every object and label, b being the layer's deterministic bias (E_q z = b for every
input): no object is predicted better than by the input-independent prior softmax(b), and
summed over a data set with label frequencies π the data term is <= -N H(π) (Gibbs), i.e.
-N log K for balanced classes. Checked by direct Monte Carlo (tolerance from the standard
error); a deterministic output layer on the same hidden layer exceeds it (the check can fail).
"""

import math

import pyro
import pytest
import torch

from pyro_varnet.guides import NetworkGuide, ZeroMean
from pyro_varnet.infer import predict
from pyro_varnet.models import MLP, Classifier

K, N, M = 10, 64, 4000  # classes, objects, noise draws per object


def _log_lik_draws(bayesian, init_scale: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, N) draws of log p(y | x, w) under LRT, with y the class the ensemble predicts, and the
    per-object bound log softmax(b)_y of the output layer's bias b."""
    pyro.clear_param_store()  # a fresh guide takes same-named parameters from the store
    torch.manual_seed(0)
    model = Classifier(MLP([20, 32, K], bayesian=bayesian), num_data=N)
    guide = NetworkGuide(model, families={"*": ZeroMean(init_scale=init_scale)})
    x = torch.randn(N, 20)
    y = predict(model, guide, x, mode="ensemble", num_samples=200, lrt=True).argmax(-1)  # the best label for each
    lp = predict(model, guide, x.repeat(M, 1), mode="sample", lrt=True).reshape(M, N, K)
    bound = model.net.fc2.bias.detach().log_softmax(-1)[y]
    return lp.gather(-1, y.expand(M, N)[..., None]).squeeze(-1), bound


@pytest.mark.parametrize("init_scale", [0.5, 0.02])  # logits varying by nats, and hardly at all
def test_zero_mean_output_layer_is_bounded_by_chance(init_scale):
    draws, bound = _log_lik_draws(["fc1", "fc2"], init_scale)
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(M)
    assert (draws.std(0) > 0).all()  # the output does vary
    assert (mean <= bound + 4 * se).all(), (mean - bound).max()
    if init_scale < 0.1:  # nearly constant logits: just below the bound, as Jensen says
        assert (mean > bound - 0.01).all()


def test_a_deterministic_output_layer_exceeds_the_bound():
    draws, bound = _log_lik_draws(["fc1"])  # fc2 deterministic, the hidden layer zero-mean
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(M)
    assert (mean > bound + 4 * se).float().mean() > 0.5
