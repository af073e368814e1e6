"""KL divergences registered with ``torch.distributions.kl`` for Pyro's mean-field ELBO."""

from __future__ import annotations

import math

import torch
from pyro.distributions import Normal, Uniform
from torch.distributions import Independent, kl_divergence, register_kl
from torch.distributions import kl as _torch_kl

from .ard import ARD
from .gaussian_dropout_normal import GaussianDropoutNormal
from .input_dropout import InputDropout
from .log_uniform import LogUniform
from .symmetric_bernoulli import SymmetricBernoulli
from .symmetric_uniform import SymmetricUniform
from .truncated_normal import TruncatedNormal
from .zero_mean_normal import ZeroMeanNormal

# Molchanov et al. 2017, eq. 14 (Sparse VD approximation of VN eq. 8)
K1, K2, K3 = 0.63576, 1.87320, 1.48695


def kl_log_uniform(log_alpha: torch.Tensor) -> torch.Tensor:
    r"""Approximate :math:`\mathrm{KL}(\mathcal{N}(\mu, \alpha\mu^2) \,\|\, \mathrm{LogU})` from log α.

    .. math::
        \mathrm{KL} \approx k_1 - k_1\,\sigma(k_2 + k_3 \log\alpha) + \tfrac12 \log(1 + \alpha^{-1})

    with the constant chosen so that the KL tends to 0 as α → ∞ (a zero-mean posterior).
    Finite with finite gradients for every log α, including +∞.

    **References**: VN eq. 6-8; Molchanov et al. 2017, eq. 14; the -k1 constant as in the authors' code.
    """
    return K1 - K1 * torch.sigmoid(K2 + K3 * log_alpha) + 0.5 * torch.nn.functional.softplus(-log_alpha)


def log_alpha_of(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r""":math:`\log\alpha = \log\sigma^2 - \log\mu^2`, +∞ where μ = 0 or μ² underflows (|μ| below
    the square root of the dtype's smallest normal number, 1e-19 in float32), with gradients
    that stay finite there (a mean crossing zero can land in that range)."""
    zero = loc.abs() < torch.finfo(loc.dtype).tiny ** 0.5
    safe_loc = torch.where(zero, torch.ones_like(loc), loc)
    la = 2 * scale.log() - safe_loc.square().log()
    return torch.where(zero, torch.full_like(la, math.inf), la)


def kl_ard_optimal(log_alpha: torch.Tensor) -> torch.Tensor:
    r"""KL to the ARD prior at its empirical-Bayes optimum, :math:`\tfrac12\log(1 + 1/\alpha)`.

    VN eq. 11 prints :math:`\log(1 + 1/\alpha)`; the exact Gaussian KL at
    :math:`\lambda^2 = (\alpha + 1)\mu^2` has the factor ½ (and so does the authors' code).

    **References**: VN eq. 11.
    """
    return 0.5 * torch.nn.functional.softplus(-log_alpha)


@register_kl(Normal, LogUniform)
def _kl_normal_log_uniform(q: Normal, p: LogUniform) -> torch.Tensor:
    return kl_log_uniform(log_alpha_of(q.loc, q.scale))


@register_kl(GaussianDropoutNormal, LogUniform)
def _kl_gaussian_dropout_log_uniform(q: GaussianDropoutNormal, p: LogUniform) -> torch.Tensor:
    # one KL per distinct alpha (a scalar for a layer-wise alpha), broadcast to the weights
    return kl_log_uniform(q.log_alpha).expand(q.batch_shape)


@register_kl(ZeroMeanNormal, LogUniform)
def _kl_zero_mean_log_uniform(q: ZeroMeanNormal, p: LogUniform) -> torch.Tensor:
    # VN appendix F: constant in sigma; the constant is 0 by the choice above.
    return torch.zeros_like(q.scale)


#: KL(U(-a, a) || LogU) with the constant above: E log q - E log(1/|w|) = -log 2 - 1, plus
#: 0.5 log(2 pi e) + (gamma + log 2)/2 (which makes a zero-mean Gaussian's KL exactly 0).
KL_UNIFORM_LOG_UNIFORM = (
    0.5 * math.log(2 * math.pi * math.e) + 0.5 * (0.5772156649015329 + math.log(2)) - math.log(2) - 1
)


@register_kl(SymmetricUniform, LogUniform)
def _kl_symmetric_uniform_log_uniform(q: SymmetricUniform, p: LogUniform) -> torch.Tensor:
    return torch.full_like(q.scale, KL_UNIFORM_LOG_UNIFORM)


@register_kl(SymmetricBernoulli, LogUniform)
@register_kl(InputDropout, LogUniform)
def _kl_discrete_log_uniform(q, p) -> torch.Tensor:
    # +inf for a q with atoms, but constant in its parameters (the prior is scale-invariant):
    # dropped, so these layers train on the data term (see SymmetricBernoulli, InputDropout)
    return torch.zeros(q.batch_shape, dtype=q.mean.dtype, device=q.mean.device)


@register_kl(Normal, ARD)
def _kl_normal_ard(q: Normal, p: ARD) -> torch.Tensor:
    var_ratio = (q.scale / p.scale).square()
    t1 = (q.loc / p.scale).square()
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log())


@register_kl(TruncatedNormal, Uniform)
def _kl_truncated_normal_uniform(q: TruncatedNormal, p: Uniform) -> torch.Tensor:
    r""":math:`-\mathcal{H}(q) + \log(b - a)`, +∞ if q's support leaves [a, b] (WN eq. 39)."""
    inside = (q.low >= p.low) & (q.high <= p.high)
    kl = -q.entropy() + (p.high - p.low).log()
    return torch.where(inside, kl, torch.full_like(kl, math.inf))


def _kl_function(type_q: type, type_p: type):
    """The function ``kl_divergence`` would call for this pair (or ``NotImplemented``), looked
    up once per pair in torch's own memo, which ``register_kl`` clears."""
    try:
        return _torch_kl._KL_MEMOIZE[type_q, type_p]
    except KeyError:
        fn = _torch_kl._KL_MEMOIZE[type_q, type_p] = _torch_kl._dispatch_kl(type_q, type_p)
        return fn


def _unwrap_independent(d) -> tuple:
    n = 0
    while isinstance(d, Independent):
        n, d = n + d.reinterpreted_batch_ndims, d.base_dist
    return d, n


def has_analytic_kl(q, p) -> bool:
    """Whether ``kl_divergence(q, p)`` has a registered closed form (through ``to_event``)."""
    (bq, nq), (bp, np) = _unwrap_independent(q), _unwrap_independent(p)
    return nq == np and _kl_function(type(bq), type(bp)) is not NotImplemented


def _kl_sum_gaussian_dropout_log_uniform(q: GaussianDropoutNormal, p: LogUniform) -> torch.Tensor:
    # each distinct log α stands for batch numel / log_alpha numel weights (it broadcasts to them)
    kl = kl_log_uniform(q.log_alpha)
    return kl.sum() * (q.batch_shape.numel() // kl.numel())


def _kl_sum_zero_mean_log_uniform(q: ZeroMeanNormal, p: LogUniform) -> torch.Tensor:
    return q.scale.new_zeros(())


#: a registered KL -> the same KL summed over every element without forming the per-weight
#: tensor (one value per distinct α instead of a broadcast the size of the layer, and no
#: backward pass over it)
_KL_SUMS = {
    _kl_gaussian_dropout_log_uniform: _kl_sum_gaussian_dropout_log_uniform,
    _kl_zero_mean_log_uniform: _kl_sum_zero_mean_log_uniform,
}


def kl_divergence_sum(q, p) -> torch.Tensor:
    """``kl_divergence(q, p).sum()``, summed in closed form where the KL is one value per
    distinct parameter broadcast to the weights (Gaussian dropout's layer- or neuron-wise α:
    the sum of a layer's KL is the KL of its α times the weights sharing it; a zero-mean
    Gaussian's is 0). Other pairs: ``kl_divergence(q, p).sum()``."""
    (bq, nq), (bp, np) = _unwrap_independent(q), _unwrap_independent(p)
    compact = _KL_SUMS.get(_kl_function(type(bq), type(bp))) if nq == np else None
    if compact is not None:
        return compact(bq, bp)
    return kl_divergence(q, p).sum()


__all__ = [
    "K1",
    "KL_UNIFORM_LOG_UNIFORM",
    "has_analytic_kl",
    "K2",
    "K3",
    "kl_ard_optimal",
    "kl_divergence",
    "kl_divergence_sum",
    "kl_log_uniform",
    "log_alpha_of",
]
