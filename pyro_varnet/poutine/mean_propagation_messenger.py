"""Mean propagation (the weight scaling rule): every latent weight takes its expected value."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions import Delta

from .site_messenger import SiteMessenger


class MeanPropagationMessenger(SiteMessenger):
    r"""Set each latent sample site to its mean, :math:`p(t \mid x, \mathbb{E}_q W)`.

    The site's distribution becomes a :class:`~pyro.distributions.Delta` at the mean, so a
    surrounding :class:`LocalReparameterizationMessenger` adds no noise. For a variance
    layer the mean is zero and the prediction no longer depends on the input (VN §2).
    Sites already given a value (observed, or replayed from a guide) are left alone.

    :param sites: names, globs or module paths to affect; ``None`` for every global latent site.

    **References**: VN eq. 3; Srivastava et al. 2014.
    """

    def _pyro_tangent_projection(self, msg) -> None:
        # a uniform direction on the tangent sphere has mean 0 (weight-normalized layers)
        x, v_norm = msg["args"][:2]
        conv = msg["args"][2] if len(msg["args"]) > 2 else msg["kwargs"].get("conv")
        shape_of = F.linear(x, v_norm) if conv is None else F.conv2d(x, v_norm, None, **conv)
        msg["value"], msg["done"] = torch.zeros_like(shape_of), True

    def _pyro_sample(self, msg) -> None:
        if not self._selected(msg):
            return
        fn = msg["fn"]
        try:
            mean = fn.mean.expand(fn.shape())
        except NotImplementedError as e:
            raise ValueError(
                f"mean_propagation: site {msg['name']!r} ({type(fn).__name__}) has no mean; "
                "run it with a guide so the posterior mean is used"
            ) from e
        msg["fn"] = Delta(mean, event_dim=fn.event_dim)
        msg["value"], msg["done"] = mean, True
