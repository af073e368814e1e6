"""A Normal whose mean is zero by construction: the posterior of a variance layer."""

from __future__ import annotations

import torch
from pyro.distributions import Normal
from torch.distributions import constraints


class ZeroMeanNormal(Normal):
    r"""Zero-mean Gaussian :math:`\mathcal{N}(0, \sigma^2)`.

    A :class:`~pyro.distributions.Normal` whose location is exactly zero, known to be so
    by type: the local reparameterization handler then runs only the variance op
    (VN eq. 40, 42) and the KL to the log-uniform prior is the constant 0 (VN appendix F).

    :param torch.Tensor scale: standard deviation :math:`\sigma > 0`.

    **References**: VN §3, eq. 4 (variance layer).
    """

    arg_constraints = {"scale": constraints.positive}
    is_zero_mean = True

    def __init__(self, scale: torch.Tensor, validate_args: bool | None = None) -> None:
        scale = torch.as_tensor(scale)
        super().__init__(torch.zeros_like(scale), scale, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> ZeroMeanNormal:
        new = self._get_checked_instance(ZeroMeanNormal, _instance)
        return super().expand(batch_shape, _instance=new)
