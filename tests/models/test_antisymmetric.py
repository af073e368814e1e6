"""Anti-symmetric networks (VN appendix C): what a zero-mean layer followed by an odd network can learn.

If everything after a zero-mean (variance) layer is odd — tanh, no biases, linear read-out —
the logits z satisfy z(-w) = -z(w) and w ~ -w, so for an antithetic pair of weights

    log p(y | x, w) + log p(y | x, -w) = z_y - z_y - lse(z) - lse(-z)

is the same for every label y: the ELBO's data term E_q log p(y | x, w) carries no label
information and SVI cannot learn (Table 3 rows "det det var det" and "det var var det").
Max-pooling after the layer (conv2) or a BatchNorm shift breaks the symmetry. These tests
check the identity exactly and that the two symmetry breakers do break it.
"""

import pytest
import torch
from pyro import poutine

from pyro_varnet.guides import NetworkGuide
from pyro_varnet.models import Classifier, LeNet5


def _pair_log_likelihood(layer, batchnorm=False):
    """log p(y|x,w) + log p(y|x,w') for every y, w' = w with the variance layer negated."""
    torch.manual_seed(0)
    net = LeNet5(bayesian=[layer], activation="tanh", bias=False, batchnorm=batchnorm)
    model = Classifier(net, num_data=100)
    guide = NetworkGuide(model, default="zero-mean")
    x = torch.rand(6, 1, 28, 28)
    guide(x[:2])
    if batchnorm:
        with torch.no_grad():
            for bn in (net.bn1, net.bn2, net.bn3):
                bn.bias.normal_()  # a learned shift, as after training
    model.eval()
    trace = poutine.trace(guide).get_trace(x)
    flipped = poutine.Trace()
    for name, site in trace.nodes.items():
        site = dict(site)
        if site["type"] == "sample":
            site["value"] = -site["value"]
        flipped.add_node(name, **site)
    with torch.no_grad():
        lp = [torch.log_softmax(poutine.replay(model, t)(x), -1) for t in (trace, flipped)]
    return lp[0] + lp[1]


def _spread_over_labels(pair):
    return float((pair - pair.mean(-1, keepdim=True)).abs().max())


def test_odd_network_after_a_variance_layer_makes_the_likelihood_label_blind():
    pair = _pair_log_likelihood("fc1")
    assert _spread_over_labels(pair) < 1e-5


@pytest.mark.parametrize("layer, batchnorm", [("conv2", False), ("fc1", True)])
def test_max_pooling_or_a_batchnorm_shift_breaks_the_symmetry(layer, batchnorm):
    pair = _pair_log_likelihood(layer, batchnorm)
    assert _spread_over_labels(pair) > 1e-2
