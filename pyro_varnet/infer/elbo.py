"""The mean-field ELBO with its decomposition into data term and KL recorded at each step."""

from __future__ import annotations

import torch
from pyro.infer import TraceMeanField_ELBO


class DecomposedELBO(TraceMeanField_ELBO):
    r"""Pyro's ``TraceMeanField_ELBO`` that also records :math:`\mathbb{E}_q\log p(T\mid X,W)` and KL.

    After each ``loss``/``loss_and_grads`` call, :attr:`last` holds the particle-averaged
    ``{"elbo", "data", "kl"}`` of that step (with the subsample scaling of the data plate,
    so the data term estimates the full training set's; VN eq. 5). The KL here includes
    any KL weight applied with :func:`~pyro_varnet.poutine.scale_latent`.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last: dict[str, float] = {}
        self._parts: list[tuple[float, float]] = []

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        data = sum(
            float(site["log_prob_sum"].detach())
            for site in model_trace.nodes.values()
            if site["type"] == "sample" and site["is_observed"]
        )
        self._parts.append((data, -float(loss) - data))
        return loss, surrogate

    def _record(self) -> None:
        parts = torch.tensor(self._parts, dtype=torch.float64)
        data, elbo_minus_data = parts.mean(0).tolist()
        self.last = {"elbo": data + elbo_minus_data, "data": data, "kl": -elbo_minus_data}
        self._parts = []

    def loss(self, model, guide, *args, **kwargs):
        out = super().loss(model, guide, *args, **kwargs)
        self._record()
        return out

    def loss_and_grads(self, model, guide, *args, **kwargs):
        out = super().loss_and_grads(model, guide, *args, **kwargs)
        self._record()
        return out
