"""Mean propagation (the weight scaling rule): every latent weight takes its expected value."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions import Delta

from .._sites import unwrap
from .site_messenger import SiteMessenger
from .weight_op_messenger import op_arguments
from .weight_rules import weight_rules


class MeanPropagationMessenger(SiteMessenger):
    r"""Set each latent sample site to its mean, :math:`p(t \mid x, \mathbb{E}_q W)`.

    The site's distribution becomes a :class:`~pyro.distributions.Delta` at the mean, so a
    surrounding :class:`LocalReparameterizationMessenger` adds no noise. For a variance
    layer the mean is zero and the prediction no longer depends on the input (VN §2).
    Sites already given a value (observed, or replayed from a guide) are left alone. The mean is
    the rules' :meth:`~pyro_varnet.poutine.weight_rules.WeightRules.point` of the site's
    distribution (a family without a mean, e.g. a Cauchy q, registers its location).

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
        base, _ = unwrap(fn)
        try:
            mean = weight_rules(base).point(base).expand(fn.shape())
        except NotImplementedError as e:
            raise ValueError(
                f"mean_propagation: site {msg['name']!r} ({type(fn).__name__}) has no mean; "
                "run it with a guide so the posterior mean is used"
            ) from e
        if not torch.isfinite(mean).all():  # e.g. a Cauchy's mean is NaN: say so instead of predicting NaN
            raise ValueError(
                f"mean_propagation: site {msg['name']!r} ({type(base).__name__}) has a non-finite mean; "
                "register WeightRules with a point() for its type (pyro_varnet.poutine.register_weight_rules)"
            )
        msg["fn"] = Delta(mean, event_dim=fn.event_dim)
        msg["value"], msg["done"] = mean, True
