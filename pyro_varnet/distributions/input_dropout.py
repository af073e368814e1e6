"""Binary (Bernoulli) dropout as a distribution over a layer's weights."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from .._checks import check_drop_probability


class InputDropout(TorchDistribution):
    r"""Binary dropout of a layer's inputs, seen as a weight posterior (Gal & Ghahramani 2016):
    :math:`W = \theta \operatorname{diag}(z) / (1 - p)`, :math:`z_j \sim \mathrm{Bernoulli}(1 - p)`.

    One keep/drop variable per input unit of a dense layer or per input channel of a
    convolution, so a weight sample is a network with some inputs switched off. Mean θ
    (inverted dropout: mean propagation is the weight scaling rule, VN eq. 3), variance
    :math:`\theta^2 p / (1 - p)`. Under
    :func:`~pyro_varnet.poutine.local_reparameterization` the mask is drawn per object on
    the inputs, which is exactly standard dropout. Its KL to the log-uniform prior is
    infinite and constant in θ and is registered as 0, so a dropout network trains on its
    data term — the "Dropout" baseline of VN Table 2 in the same API as the variational
    families. :meth:`log_prob` is not defined (mixed discrete weights).

    :param torch.Tensor theta: weights (dim 1 indexes the inputs).
    :param float p: drop probability, 0 ≤ p < 1.

    **References**: Srivastava et al. 2014; Gal & Ghahramani 2016; VN Table 2.
    """

    arg_constraints = {"theta": constraints.real}
    support = constraints.real
    has_rsample = True

    def expand(self, batch_shape, _instance=None) -> InputDropout:
        if torch.Size(batch_shape) != self.batch_shape:
            raise ValueError(f"InputDropout cannot be expanded from {tuple(self.batch_shape)} to {tuple(batch_shape)}")
        return self

    def __init__(self, theta: torch.Tensor, p: float, validate_args: bool | None = None) -> None:
        check_drop_probability(p)
        if theta.dim() < 2:
            raise ValueError(f"InputDropout needs a weight of at least 2 dims (out, in, ...), got {tuple(theta.shape)}")
        self.theta, self.p = theta, float(p)
        # batch-shaped like the weight (Pyro's guides add .to_event); the elements of one
        # input column share their keep/drop variable, so samples are correlated along dim 0
        super().__init__(theta.shape, torch.Size(), validate_args=validate_args)

    def mask_shape(self, shape: torch.Size) -> torch.Size:
        """One variable per input (dim 1 of the weight), shared along outputs and kernel positions."""
        lead = shape[: len(shape) - self.theta.dim()]
        return lead + (1, self.theta.shape[1]) + (1,) * (self.theta.dim() - 2)

    @property
    def mean(self) -> torch.Tensor:
        return self.theta

    @property
    def variance(self) -> torch.Tensor:
        return self.theta.square() * (self.p / (1 - self.p))

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        keep = torch.rand(self.mask_shape(shape), device=self.theta.device) >= self.p
        return self.theta * keep.to(self.theta.dtype) / (1 - self.p)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "InputDropout has no density (its weights are discrete mixtures); use the log-uniform prior, "
            "whose KL to it is registered"
        )
