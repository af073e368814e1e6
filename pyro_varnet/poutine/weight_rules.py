"""What each handler does with a weight of a given distribution type, looked up in one registry.

The handlers of :mod:`pyro_varnet.poutine` never test a weight's distribution with
``isinstance``: they ask :func:`weight_rules` for the :class:`WeightRules` registered for its
type (the nearest class in its MRO, as ``torch.distributions.kl.register_kl`` dispatches),
and call one of its methods:

=========================================  ==============================================
handler                                    rule
=========================================  ==============================================
``local_reparameterization``               :meth:`WeightRules.local_reparameterization`
                                           (exact), else :meth:`WeightRules.moments`
                                           with ``moment_matching=True``
every weight-op handler (LRT, flipout)     :meth:`WeightRules.per_object_op`
``flipout``                                :meth:`WeightRules.point`
``mean_propagation``                       :meth:`WeightRules.point`
``prune``                                  :meth:`WeightRules.spread`, :meth:`WeightRules.masked`
``zero_mean_approximation``                :meth:`WeightRules.zero_mean`
=========================================  ==============================================

A new variational family whose q is a new distribution is then one file: the distribution
(or its :class:`~pyro_varnet.guides.SiteGuide`), its :class:`~pyro_varnet.guides.Family`
with :func:`~pyro_varnet.guides.register_family`, and a :class:`WeightRules` subclass with
``@register_weight_rules(TheDistribution)``; no handler changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from pyro.distributions import Normal
from torch.distributions import Distribution

from ..distributions import GaussianDropoutNormal, InputDropout, SymmetricBernoulli, SymmetricUniform, ZeroMeanNormal
from ..distributions.variance import squared_scale


class Moments(NamedTuple):
    """A weight's elementwise mean (``None`` when exactly 0) and variance: local reparameterization
    then draws the op's output as the Gaussian with the matching moments (VN eq. 4)."""

    loc: torch.Tensor | None
    var: torch.Tensor


#: ``sampler(op, x, kwargs) -> output``: ``op(x, W, None, **kwargs)`` with W drawn independently for
#: every object (row of ``x``), from the weight's own distribution, exactly
OpSampler = Callable[[Callable, torch.Tensor, dict], torch.Tensor]


def prune_mask(scale: torch.Tensor, threshold: float) -> torch.Tensor:
    """``True`` where a weight is kept: σ ≥ ``threshold``."""
    return scale >= threshold


class WeightRules:
    """How the handlers treat a weight drawn from one distribution type. The defaults suit any
    distribution with a mean and a variance; override what the type does differently."""

    def is_zero_mean(self, d: Distribution) -> bool:
        """Whether d's mean is exactly 0 (the op with the mean is skipped)."""
        return bool(getattr(d, "is_zero_mean", False))

    def point(self, d: Distribution) -> torch.Tensor:
        """The weight that stands for d in a noise-free pass (mean propagation, VN eq. 3) and the
        centre that flipout perturbs around. Default: d.mean."""
        return d.mean

    def moments(self, d: Distribution) -> Moments:
        """Mean and variance, for the moment-matched (fast dropout) local reparameterization."""
        return Moments(None if self.is_zero_mean(d) else d.mean, d.variance)

    def local_reparameterization(self, d: Distribution) -> Moments | OpSampler | None:
        """The exact local reparameterization of a weight drawn from d: its :class:`Moments` when
        Gaussian weights make the op's output Gaussian, an :data:`OpSampler` for another exact
        rule, ``None`` when there is none (the handler then needs ``moment_matching=True``)."""
        return None

    def per_object_op(self, d: Distribution) -> OpSampler | None:
        """An exact, cheap per-object sampler that EVERY weight-op handler uses instead of its own
        rule (binary dropout's input masks); ``None`` for most types."""
        return None

    def spread(self, d: Distribution) -> torch.Tensor | None:
        """The per-weight σ that pruning compares with its threshold (VN §6.1); ``None``: never pruned."""
        return None

    def masked(self, d: Distribution, keep: torch.Tensor) -> Distribution:
        """d with the weights where ``keep`` is 0 set to exactly 0."""
        raise NotImplementedError(f"{type(self).__name__} gives a spread but no masked()")

    def prune(self, d: Distribution, threshold: float) -> Distribution | None:
        """d with every weight of σ below ``threshold`` removed; ``None`` if d has no σ to prune by."""
        sigma = self.spread(d)
        if sigma is None:
            return None
        return self.masked(d, prune_mask(sigma, threshold).to(sigma.dtype))

    def zero_mean(self, d: Distribution) -> Distribution | None:
        """d with its mean replaced by 0 (VN §4.3), ``None`` to leave it alone."""
        return None


#: distribution type -> its rules; filled by :func:`register_weight_rules`
WEIGHT_RULES: dict[type, WeightRules] = {}
_DEFAULT = WeightRules()


def register_weight_rules(*types: type):
    """Class decorator: use this :class:`WeightRules` subclass for weights drawn from ``types``
    (and their subclasses, unless these have rules of their own)."""

    def decorate(cls: type[WeightRules]) -> type[WeightRules]:
        for t in types:
            if t in WEIGHT_RULES and type(WEIGHT_RULES[t]) is not cls:
                have = type(WEIGHT_RULES[t]).__name__
                raise ValueError(f"weight rules for {t.__name__} are registered already ({have})")
            WEIGHT_RULES[t] = cls()
        return cls

    return decorate


def weight_rules(d: Distribution) -> WeightRules:
    """The rules registered for d's type or its nearest registered base class (else the defaults)."""
    for t in type(d).__mro__:
        rules = WEIGHT_RULES.get(t)
        if rules is not None:
            return rules
    return _DEFAULT


# --- the library's own distributions --------------------------------------------------------


@register_weight_rules(Normal)
class NormalRules(WeightRules):
    """Gaussian weights: exact local reparameterization, σ = scale, zero-mean approximation."""

    def local_reparameterization(self, d: Normal) -> Moments:
        return Moments(None if self.is_zero_mean(d) else d.loc, squared_scale(d.scale))

    def spread(self, d: Normal) -> torch.Tensor:
        return d.scale

    def masked(self, d: Normal, keep: torch.Tensor) -> Normal:
        return Normal(d.loc * keep, d.scale * keep, validate_args=False)

    def zero_mean(self, d: Normal) -> ZeroMeanNormal:
        return ZeroMeanNormal(d.scale)


@register_weight_rules(ZeroMeanNormal)
class ZeroMeanNormalRules(NormalRules):
    """A Gaussian variance layer stays one when pruned and is its own zero-mean approximation."""

    def masked(self, d: ZeroMeanNormal, keep: torch.Tensor) -> ZeroMeanNormal:
        return ZeroMeanNormal(d.scale * keep, validate_args=False)

    def zero_mean(self, d: ZeroMeanNormal) -> None:
        return None


@register_weight_rules(GaussianDropoutNormal)
class GaussianDropoutNormalRules(NormalRules):
    """N(θ, αθ²): the variance op takes αθ² straight from θ and log α (``d.variance``: two
    passes over the weight forward and two backward, instead of forming σ = √α|θ| and squaring it)."""

    def local_reparameterization(self, d: GaussianDropoutNormal) -> Moments:
        return Moments(d.loc, d.variance)


@register_weight_rules(SymmetricUniform)
class SymmetricUniformRules(WeightRules):
    """θ·U(−1, 1): σ = θ/√3; no exact local reparameterization (moment matching or flipout)."""

    def spread(self, d: SymmetricUniform) -> torch.Tensor:
        return d.scale / math.sqrt(3)

    def masked(self, d: SymmetricUniform, keep: torch.Tensor) -> SymmetricUniform:
        return SymmetricUniform(d.scale * keep, validate_args=False)


@register_weight_rules(SymmetricBernoulli)
class SymmetricBernoulliRules(WeightRules):
    """±θ: σ = θ; no exact local reparameterization (moment matching or flipout)."""

    def spread(self, d: SymmetricBernoulli) -> torch.Tensor:
        return d.scale

    def masked(self, d: SymmetricBernoulli, keep: torch.Tensor) -> SymmetricBernoulli:
        return SymmetricBernoulli(d.scale * keep, validate_args=False)


@register_weight_rules(InputDropout)
class InputDropoutRules(WeightRules):
    """Binary dropout: every weight handler masks the op's inputs per object — exactly
    standard dropout (Srivastava et al. 2014); mean propagation is the weight scaling rule."""

    def per_object_op(self, d: InputDropout) -> OpSampler:
        theta, p = d.theta, d.p

        def dropout(op, x, kwargs):
            keep = torch.rand(x.shape[:2] + (1,) * (x.dim() - 2), device=x.device) >= p
            return op(x * keep.to(x.dtype) / (1 - p), theta, None, **kwargs)

        return dropout


__all__ = [
    "WEIGHT_RULES",
    "Moments",
    "OpSampler",
    "WeightRules",
    "prune_mask",
    "register_weight_rules",
    "weight_rules",
]
