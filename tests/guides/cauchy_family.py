"""A test-only variational family with a non-Gaussian q: independent Cauchy weights.

Everything the library needs to train it, predict with it and prune it is in this one file:
the site, the family and the weight rules. Cauchy weights have an exact local
reparameterization of their own (a stable law): for x fixed,
:math:`\\sum_j x_j W_j \\sim \\mathrm{Cauchy}(\\sum_j x_j\\mu_j, \\sum_j |x_j|\\gamma_j)`, so the
op's output is drawn per object as ``op(x, μ) + op(|x|, γ)·C`` with C standard Cauchy; it has
no mean, so mean propagation uses the location (the median). Registration is left to the
caller (:func:`registered`) so that the library's registries are unchanged outside the tests
that use it.
"""

import contextlib

import pyro.distributions as dist
import torch
from torch import nn

from pyro_varnet.guides import Family, SiteGuide, register_family
from pyro_varnet.guides.families import FAMILIES
from pyro_varnet.poutine import WeightRules, register_weight_rules
from pyro_varnet.poutine.weight_rules import WEIGHT_RULES

NAME = "cauchy-test"


class CauchySite(SiteGuide):
    r""":math:`q(w) = \mathrm{Cauchy}(\mu, \gamma)` per weight, γ stored as log γ."""

    def __init__(self, shape, init_log_scale: float = -6.0):
        super().__init__(shape)
        self.loc = nn.Parameter(0.3 * torch.randn(self.shape))
        self.log_scale = nn.Parameter(torch.full(self.shape, float(init_log_scale)))

    def base(self):
        return dist.Cauchy(self.loc, self.log_scale.exp(), validate_args=False)


class CauchyFamily(Family):
    name = NAME
    site = CauchySite


class CauchyRules(WeightRules):
    def local_reparameterization(self, d):
        loc, scale = d.loc, d.scale

        def stable(op, x, kwargs):
            out = op(x, loc, None, **kwargs)
            return out + op(x.abs(), scale, None, **kwargs) * torch.empty_like(out).cauchy_()

        return stable

    def point(self, d):
        return d.loc  # the median: a Cauchy has no mean

    def spread(self, d):
        return d.scale

    def masked(self, d, keep):
        return dist.Cauchy(d.loc * keep, d.scale * keep, validate_args=False)


@contextlib.contextmanager
def registered(rules: bool = True):
    """Register the family (and, with ``rules``, its weight rules) for the duration of a test."""
    register_family(NAME)(CauchyFamily)
    if rules:
        register_weight_rules(dist.Cauchy)(CauchyRules)
    try:
        yield
    finally:
        del FAMILIES[NAME]
        WEIGHT_RULES.pop(dist.Cauchy, None)
