"""The horseshoe prior: a Gaussian scale mixture with half-Cauchy global and local scales."""

from __future__ import annotations

import torch
from pyro.distributions import HalfCauchy, Normal
from pyro.nn import PyroSample

from .._checks import check_choice, check_positive_finite
from .base import Prior, register_prior


@register_prior("horseshoe")
class Horseshoe(Prior):
    r"""Horseshoe prior (Carvalho, Polson & Scott 2010; for network weights per unit, Ghosh,
    Yao & Doshi-Velez 2019):

    .. math:: w_{ij} \mid \tau, \lambda \sim \mathcal{N}(0, \tau^2\lambda_i^2), \quad
              \lambda_i \sim \mathcal{C}^+(0, b_l), \quad \tau \sim \mathcal{C}^+(0, b_g).

    τ (site ``<layer>.weight_prior.tau``) shrinks the whole layer, λ (``...weight_prior.lam``)
    lets single output neurons (``local="neuron"``, default: group sparsity) or single weights
    (``local="weight"``) escape it. Both are latent sites with their own posteriors (the
    guide's ``others`` family: a log-normal under :class:`~pyro_varnet.guides.Auto`). Given
    them the weight prior is Gaussian, so the KL of a Gaussian q(w) is analytic (torch's
    Normal-Normal KL) and local reparameterization applies; the scales' KLs are Monte Carlo.

    :param float global_scale: :math:`b_g`. :param float local_scale: :math:`b_l`.
    :param str local: ``"neuron"`` (one λ per output unit) or ``"weight"``.
    """

    def __init__(self, global_scale: float = 1.0, local: str = "neuron", local_scale: float = 1.0) -> None:
        check_positive_finite("global_scale", global_scale)
        check_positive_finite("local_scale", local_scale)
        check_choice("horseshoe local scales", local, ("neuron", "weight"))
        super().__init__()
        self.global_scale, self.local_scale, self.local = float(global_scale), float(local_scale), local

    @classmethod
    def from_options(cls, scale: float = 1.0, df: float = 1e-16) -> Horseshoe:
        return cls(global_scale=scale)

    def setup(self, shape: torch.Size) -> None:
        super().setup(shape)
        local_shape = self.shape[:1] if self.local == "neuron" else self.shape
        self.tau = PyroSample(lambda self: HalfCauchy(self._like.new_tensor(self.global_scale)))
        self.lam = PyroSample(
            lambda self: HalfCauchy(self._like.new_full(local_shape, self.local_scale)).to_event(len(local_shape))
        )

    def weight_scale(self, tau: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """τλ broadcast to the weight's shape."""
        return (tau * lam.reshape(lam.shape + (1,) * (len(self.shape) - lam.dim()))).expand(self.shape)

    def distribution(self):
        scale = self.weight_scale(self.tau, self.lam)
        return Normal(torch.zeros_like(scale), scale, validate_args=False).to_event(len(self.shape))

    def signature(self) -> str:
        return f"horseshoe(global_scale={self.global_scale:g}, local={self.local!r}, local_scale={self.local_scale:g})"
