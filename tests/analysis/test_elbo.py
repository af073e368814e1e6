"""elbo_decomposition: ELBO = data term - KL, each against a direct computation."""

import math

import torch

from pyro_varnet.analysis import elbo_decomposition
from pyro_varnet.distributions import kl_log_uniform
from pyro_varnet.guides import Additive, GaussianDropout, NetworkGuide, ZeroMean
from pyro_varnet.models import MLP, Classifier


def _data():
    torch.manual_seed(0)
    return torch.randn(30, 3), torch.randint(0, 4, (30,))


def test_kl_is_analytic_per_site():
    x, y = _data()
    model = Classifier(MLP([3, 8, 4]), num_data=30)
    guide = NetworkGuide(model, default=GaussianDropout("layer", init_log_alpha=-2.0), families={"fc2": ZeroMean()})
    guide(x)
    out = elbo_decomposition(model, guide, (x, y), num_samples=3, batch_size=7)
    expected_fc1 = 24 * kl_log_uniform(torch.tensor(-2.0)).item()  # 8 x 3 weights, KL per weight
    assert math.isclose(out["kl_sites"]["net.fc1.weight"], expected_fc1, rel_tol=1e-5)
    assert out["kl_sites"]["net.fc2.weight"] == 0.0  # zero-mean vs log-uniform (VN appendix F)
    assert math.isclose(out["elbo"], out["data"] - out["kl"], rel_tol=1e-12)
    assert out["data"] < 0 and out["data_se"] >= 0


def test_data_term_of_a_near_deterministic_guide():
    x, y = _data()
    model = Classifier(MLP([3, 8, 4]), num_data=30)
    guide = NetworkGuide(model, default=Additive(init_log_sigma2=-40.0))
    guide(x)
    mu = {n: guide.site(n).mu.detach() for n in guide.site_names}
    h = torch.relu(x @ mu["net.fc1.weight"].T + model.net.fc1.bias)
    logits = h @ mu["net.fc2.weight"].T + model.net.fc2.bias
    expected = torch.log_softmax(logits, -1).gather(-1, y[:, None]).sum().item()
    out = elbo_decomposition(model, guide, (x, y), num_samples=2, batch_size=8)
    assert math.isclose(out["data"], expected, rel_tol=1e-5)
