"""prune(threshold): weights with small σ are exactly zero in every mode (VN Fig. 5)."""

import pyro
import pytest
import torch

from pyro_varnet import ops
from pyro_varnet.analysis import plot_prune_curve, prune_curve
from pyro_varnet.guides import Additive, NetworkGuide, ZeroMean
from pyro_varnet.models import MLP, Classifier
from pyro_varnet.poutine import local_reparameterization, mean_propagation, prune
from tests.helpers import random_site


@pytest.mark.parametrize("family", ["zero-mean", "layer", "additive"])
def test_pruned_weights_are_zero_in_samples_and_means(family):
    site = random_site(family, "linear")
    scale = site.base().scale.detach()
    t = float(scale.median())
    keep = scale >= t
    with torch.no_grad(), prune(threshold=t):
        w = pyro.sample("w", site())
    assert (w[~keep] == 0).all() and (w[keep] != 0).all()
    with torch.no_grad(), mean_propagation(), prune(threshold=t):
        m = pyro.sample("w", site())
    torch.testing.assert_close(m, site.base().mean.detach() * keep)
    with torch.no_grad(), prune(threshold=t), mean_propagation(), pytest.raises(ValueError, match="nest prune"):
        pyro.sample("w", site())


def test_pruning_under_local_reparameterization():
    site = random_site("zero-mean", "linear")
    scale = site.base().scale.detach()
    t = float(scale.quantile(0.7))
    x = torch.randn(5, 4)
    with torch.no_grad(), prune(threshold=t), local_reparameterization(eps=0.0):
        pyro.set_rng_seed(1)
        w = pyro.sample("w", site())
        out = ops.linear(x, w)
    pyro.set_rng_seed(1)
    site().sample()
    var = x.square() @ (scale.square() * (scale >= t)).T  # only the kept weights' variance
    torch.testing.assert_close(out, torch.randn(var.shape) * var.sqrt())


def test_prune_curve_on_a_variance_layer():
    torch.manual_seed(0)
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    model = Classifier(MLP([4, 16, 3]), num_data=50)
    guide = NetworkGuide(model, default=Additive(init_log_sigma2=-2.0), families={"fc1": ZeroMean()})
    guide(x)
    rows = prune_curve(model, guide, (x, y), "net.fc1.weight", num_samples=5)
    sparsity = [r["sparsity"] for r in rows]
    assert sparsity[0] == 0.0 and sparsity == sorted(sparsity) and sparsity[-1] >= 0.95
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    rows = prune_curve(model, guide, (x, y), "net.fc1.weight", thresholds=[1e9], num_samples=3)
    assert rows[0]["sparsity"] == 1.0
    assert plot_prune_curve(rows) is not None


def test_bad_threshold():
    with pytest.raises(ValueError, match="threshold >= 0"):
        prune(threshold=-1.0)
