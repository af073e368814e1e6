"""A network wrapped with the Categorical likelihood, scaled to the full data set."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn


class Classifier(PyroModule):
    r"""Pyro model :math:`p(T \mid X, W)\,p(W)` for a network returning logits.

    The likelihood sits under ``pyro.plate("data", num_data, subsample=...)``, so a
    mini-batch's log-likelihood is scaled by ``num_data / batch_size`` and the ELBO is
    that of the whole training set (VN eq. 5). The logits are recorded as the
    deterministic site ``"logits"``.

    :param torch.nn.Module net: a network (usually a :class:`~pyro.nn.PyroModule`).
    :param int num_data: size of the training set N.
    """

    def __init__(self, net: nn.Module, num_data: int) -> None:
        super().__init__()
        if not isinstance(num_data, int) or num_data <= 0:
            raise ValueError(f"expected num_data to be a positive int, got {num_data!r}")
        self.net, self.num_data = net, num_data

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not torch.is_floating_point(x):
            raise TypeError(f"expected floating point inputs, got {x.dtype}")
        if not torch.isfinite(x).all():
            raise ValueError("inputs contain NaN or inf")
        if y is not None and y.shape != x.shape[:1]:
            raise ValueError(f"expected labels of shape {tuple(x.shape[:1])}, got {tuple(y.shape)}")
        logits = self.net(x)
        # the plate runs over the rows of the logits, which are x's rows except under
        # stacked_weights(num_objects=...), where each object fans out to K rows
        with pyro.plate("data", self.num_data, subsample=torch.arange(logits.shape[0], device=x.device)):
            pyro.deterministic("logits", logits, event_dim=1)
            pyro.sample("obs", dist.Categorical(logits=logits), obs=y)
        return logits
