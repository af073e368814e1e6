"""Pruning by σ: weights whose posterior standard deviation is below a threshold become 0."""

from __future__ import annotations

from collections.abc import Iterable

from pyro.distributions import Delta

from .._sites import rewrap, unwrap
from .site_messenger import SiteMessenger
from .weight_rules import weight_rules


class PruneMessenger(SiteMessenger):
    r"""Zero every weight whose σ is below ``threshold`` (mean and variance alike).

    Acts on every site whose distribution's rules give a σ
    (:meth:`~pyro_varnet.poutine.weight_rules.WeightRules.spread`): Gaussian sites and the
    uniform and Bernoulli variance layers (σ = θ/√3, θ); others are left alone.

    Magnitude pruning of a variance layer's σ (VN §6.1, Fig. 5): a weight with a small
    variance contributes little to the variance of the activations. A pruned weight is
    exactly 0 in samples, in local reparameterization and under mean propagation (nest it
    inside :func:`mean_propagation`, which fixes values as soon as it sees a site; the
    other order raises).

    :param float threshold: σ below which a weight is removed (≥ 0).
    :param sites: names, globs or module paths to prune; ``None`` for every global site.

    **References**: VN Fig. 5; Han et al. 2015.
    """

    def __init__(self, threshold: float, sites: Iterable[str] | None = None) -> None:
        if not threshold >= 0:
            raise ValueError(f"expected a pruning threshold >= 0, got {threshold}")
        super().__init__(sites)
        self.threshold = threshold

    def _pyro_sample(self, msg) -> None:
        base, ndims = unwrap(msg["fn"])
        if msg["done"] and isinstance(base, Delta) and self._selected({**msg, "done": False}):
            raise ValueError(
                f"prune: site {msg['name']!r} was already set to its mean by a handler inside this one; "
                "nest prune inside mean_propagation (with mean_propagation(): with prune(...): ...)"
            )
        if not self._selected(msg):
            return
        pruned = weight_rules(base).prune(base, self.threshold)
        if pruned is not None:
            msg["fn"] = rewrap(pruned, ndims)
