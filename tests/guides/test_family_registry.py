"""A new variational family is one class plus its registration: a Gaussian family with a
softplus scale, defined here only, trains under local reparameterization with no handler change."""

import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyro_varnet.data import toy_problem
from pyro_varnet.guides import Family, NetworkGuide, register_family
from pyro_varnet.guides.families import FAMILIES, SiteGuide
from pyro_varnet.infer import DecomposedELBO, fit, predict
from pyro_varnet.models import MLP, Classifier


class SoftplusNormalSite(SiteGuide):
    def __init__(self, shape):
        super().__init__(shape)
        self.loc = nn.Parameter(0.1 * torch.randn(self.shape))
        self.raw_scale = nn.Parameter(torch.full(self.shape, -6.0))

    def base(self):
        return dist.Normal(self.loc, F.softplus(self.raw_scale), validate_args=False)


class SoftplusNormal(Family):
    name = "softplus-normal-test"

    def build(self, shape):
        return SoftplusNormalSite(shape)


@pytest.fixture
def registered():
    # what a user writes as a class decorator, undone afterwards so other tests see the library's families
    register_family("softplus-normal-test")(SoftplusNormal)
    yield
    del FAMILIES["softplus-normal-test"]


def test_a_registered_family_trains_under_lrt(registered):
    x, y = toy_problem(100, seed=0)
    model = Classifier(MLP([2, 16, 4]), num_data=len(x))
    guide = NetworkGuide(model, default="softplus-normal-test")
    loss = DecomposedELBO(lrt=None)(model, guide)
    h = fit(model, guide, (x, y), epochs=60, batch_size=100, lr=1e-2, progress=False, seed=0, eval_modes=())
    assert isinstance(guide.site("net.fc1.weight"), SoftplusNormalSite) and guide.exact_lrt
    assert h["elbo"][-1] > h["elbo"][0]
    loss(x, y)
    assert loss.elbo.lrt is True  # chosen by the ELBO: the family's q is Gaussian
    acc = (predict(model, guide, x, mode="ensemble", num_samples=5).argmax(-1) == y).float().mean()
    assert acc > 0.9
    with pytest.raises(ValueError, match="registered already"):
        register_family("softplus-normal-test")(lambda: None)
