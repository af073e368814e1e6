"""The improper symmetric log-uniform prior of variational dropout."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints


class LogUniform(TorchDistribution):
    r"""Improper symmetric log-uniform density :math:`p(w) \propto 1/|w|`.

    It is the scale-invariant prior of variational dropout. It has no normalising
    constant, so it cannot be sampled; it is used as a prior whose KL divergence to a
    Gaussian posterior is registered in :mod:`pyro_varnet.distributions.kl`.

    >>> LogUniform().expand([300, 784]).to_event(2).batch_shape
    torch.Size([])

    :param torch.Size batch_shape: shape of the independent weights.

    **References**: Kingma et al. 2015 (variational dropout); VN eq. 6-8.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, batch_shape: torch.Size | tuple = (), validate_args: bool | None = None) -> None:
        super().__init__(torch.Size(batch_shape), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> LogUniform:
        new = self._get_checked_instance(LogUniform, _instance)
        super(LogUniform, new).__init__(torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        # the density is infinite at 0; a weight sample that underflows to 0 (a variance
        # layer's pruned sigma) gets the value at the smallest normal float instead of +inf
        return -value.abs().clamp_min(torch.finfo(value.dtype).tiny).log()

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        raise NotImplementedError(
            "LogUniform is an improper prior and cannot be sampled; use it as the prior of a "
            "site that a guide provides (SVI), or pick a proper prior such as 'student-t'."
        )
