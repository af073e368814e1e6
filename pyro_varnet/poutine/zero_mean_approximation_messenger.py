"""Zero-mean approximation: N(mu, sigma^2) becomes N(0, sigma^2) at Gaussian sites."""

from __future__ import annotations

from .._sites import rewrap, unwrap
from .site_messenger import SiteMessenger
from .weight_rules import weight_rules


class ZeroMeanApproximationMessenger(SiteMessenger):
    r"""Replace each Gaussian latent site :math:`\mathcal{N}(\mu, \sigma^2)` by :math:`\mathcal{N}(0, \sigma^2)`.

    Applied to a Gaussian-dropout posterior :math:`\mathcal{N}(\theta, \alpha\theta^2)` this
    gives :math:`\mathcal{N}(0, \alpha\theta^2)`, whose predictions match the original's as
    α → ∞ (VN Theorem 1). Which distributions have a zero-mean version is their rules'
    :meth:`~pyro_varnet.poutine.weight_rules.WeightRules.zero_mean` (every Normal). Sites
    already given a value are left alone, so wrap the guide (or the whole SVI/prediction call)
    rather than a replayed model.

    :param sites: names, globs or module paths to affect; ``None`` for every global latent site.

    **References**: VN §4.3, Theorem 1, Fig. 3.
    """

    def _pyro_sample(self, msg) -> None:
        if not self._selected(msg):
            return
        base, ndims = unwrap(msg["fn"])
        zero_mean = weight_rules(base).zero_mean(base)
        if zero_mean is not None:
            msg["fn"] = rewrap(zero_mean, ndims)
