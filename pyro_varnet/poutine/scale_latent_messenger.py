"""Scale the latent (KL) part of the ELBO, e.g. for KL warm-up."""

from __future__ import annotations

from pyro.poutine.messenger import Messenger


class ScaleLatentMessenger(Messenger):
    r"""Multiply the scale of every latent sample site by ``scale``, leaving observations alone.

    Wrapped around both model and guide, the mean-field ELBO becomes
    :math:`\mathbb{E}_q \log p(T \mid X, W) - \beta\,\mathrm{KL}(q \,\|\, p)`: the KL weight β of
    KL warm-up (annealing) schedules.

    :param float scale: β ≥ 0.

    **References**: Molchanov et al. 2017 (Sparse VD warm-up); Sønderby et al. 2016.
    """

    def __init__(self, scale: float) -> None:
        if not scale >= 0:
            raise ValueError(f"expected a KL scale >= 0, got {scale}")
        super().__init__()
        self.scale = scale

    def _pyro_sample(self, msg) -> None:
        if not msg["is_observed"]:
            msg["scale"] = self.scale * msg["scale"]
