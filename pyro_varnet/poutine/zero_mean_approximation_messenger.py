"""Zero-mean approximation: N(mu, sigma^2) becomes N(0, sigma^2) at Gaussian sites."""

from __future__ import annotations

from collections.abc import Iterable

from pyro.distributions import Normal
from pyro.poutine.messenger import Messenger

from .._sites import rewrap, selected, unwrap
from ..distributions import ZeroMeanNormal


class ZeroMeanApproximationMessenger(Messenger):
    r"""Replace each Gaussian latent site :math:`\mathcal{N}(\mu, \sigma^2)` by :math:`\mathcal{N}(0, \sigma^2)`.

    Applied to a Gaussian-dropout posterior :math:`\mathcal{N}(\theta, \alpha\theta^2)` this
    gives :math:`\mathcal{N}(0, \alpha\theta^2)`, whose predictions match the original's as
    α → ∞ (VN Theorem 1). Sites already given a value are left alone, so wrap the guide
    (or the whole SVI/prediction call) rather than a replayed model.

    :param sites: names, globs or module paths to affect; ``None`` for every global latent site.

    **References**: VN §4.3, Theorem 1, Fig. 3.
    """

    def __init__(self, sites: Iterable[str] | None = None) -> None:
        super().__init__()
        self.sites = None if sites is None else list(sites)

    def _pyro_sample(self, msg) -> None:
        if not selected(msg, self.sites):
            return
        base, ndims = unwrap(msg["fn"])
        if isinstance(base, Normal) and not isinstance(base, ZeroMeanNormal):
            msg["fn"] = rewrap(ZeroMeanNormal(base.scale), ndims)
