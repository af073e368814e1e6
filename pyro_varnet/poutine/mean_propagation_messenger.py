"""Mean propagation (the weight scaling rule): every latent weight takes its expected value."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions import Delta

from .site_messenger import SiteMessenger
from .weight_op_messenger import op_arguments


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
        args = op_arguments(msg)
        x, v_norm, conv = args["x"], args["v_norm"], args.get("conv")
        # the output shape only: the op runs on meta tensors, nothing is computed
        xm, vm = x.to("meta"), v_norm.to("meta")
        shape = (F.linear(xm, vm) if conv is None else F.conv2d(xm, vm, None, **conv)).shape
        msg["value"], msg["done"] = torch.zeros(shape, dtype=x.dtype, device=x.device), True

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
