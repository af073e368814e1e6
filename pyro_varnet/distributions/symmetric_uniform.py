"""The uniform variance layer's posterior: w = θ·ε, ε ~ U(-1, 1)."""

from __future__ import annotations

import torch
from pyro.distributions import Uniform


class SymmetricUniform(Uniform):
    r"""Zero-mean uniform weights :math:`w = \theta\,\varepsilon`, :math:`\varepsilon \sim U(-1, 1)`.

    Variance :math:`\theta^2/3`. Reparameterized in θ. Against the log-uniform prior its KL
    is a constant, :math:`\tfrac12\log(2\pi e) + \tfrac{\gamma + \log 2}{2} - \log 2 - 1
    \approx 0.361` nats per weight with the constant that makes a zero-mean Gaussian's KL 0
    (see :mod:`~pyro_varnet.distributions.kl`): like the Gaussian variance layer, its
    information lives in the scale alone.

    :param torch.Tensor scale: θ > 0 (half-width).

    **References**: VN §3.3 (uniform variance layer).
    """

    is_zero_mean = True

    def __init__(self, scale: torch.Tensor, validate_args: bool | None = None) -> None:
        scale = torch.as_tensor(scale)
        self.scale = scale
        super().__init__(-scale, scale, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> SymmetricUniform:
        new = self._get_checked_instance(SymmetricUniform, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.scale = self.scale.expand(batch_shape)
        return new
