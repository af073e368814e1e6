"""Local reparameterization: sample a layer's pre-activations instead of its weights."""

from __future__ import annotations

import math
from collections.abc import Container

import torch
import torch.nn.functional as F
from pyro.distributions import Normal

from .._sites import unwrap
from .weight_op_messenger import WeightOpMessenger, op_arguments


def per_object_tangent_projection(x: torch.Tensor, v_norm: torch.Tensor) -> torch.Tensor:
    r""":math:`\phi_{bj}^\top x_b` with an independent uniform tangent direction φ for every object b
    and row j of ``v_norm`` (unit rows), drawn from its exact marginal (see the class docs)."""
    n = v_norm.shape[-1]
    proj = F.linear(x, v_norm)  # (B, out)
    perp = (x.square().sum(-1, keepdim=True) - proj.square()).clamp_min(0).sqrt()
    if n == 2:  # the tangent "sphere" is {±φ}
        t = torch.randint(0, 2, proj.shape, device=x.device).to(x.dtype).mul_(2).sub_(1)
    else:
        conc = torch.tensor((n - 2) / 2, dtype=x.dtype, device=x.device)
        t = 2 * torch.distributions.Beta(conc, conc, validate_args=False).sample(proj.shape) - 1
    return perp * t


class LocalReparameterizationMessenger(WeightOpMessenger):
    r"""Replace weight sampling by output sampling in :func:`pyro_varnet.ops.linear` / ``conv2d``.

    Every sample site the handler sees drawn (in the guide, or from a prior) whose
    distribution is Gaussian is remembered with its mean and variance; values replayed or
    conditioned from elsewhere keep what was remembered when they were drawn. When such a
    sampled weight reaches an op, the op returns
    :math:`b = A\mu + \varepsilon\sqrt{A^2\sigma^2 + \epsilon_0}` with
    :math:`\varepsilon \sim \mathcal{N}(0, 1)` drawn per object and output unit; for a
    :class:`~pyro_varnet.distributions.ZeroMeanNormal` only the variance op runs. A sampled
    bias contributes its mean and variance too. Parameters that were never sampled pass
    through unchanged. A sampled weight of any other distribution raises, unless
    ``moment_matching=True`` (fast dropout: its mean and variance are used instead).

    >>> with local_reparameterization():  # doctest: +SKIP
    ...     svi.step(x, y)

    Weight-normalized layers (:mod:`pyro_varnet.models.weightnorm`): their magnitude g and
    angle ε are drawn per object and neuron (WN eq. 45, 48); with
    ``decorrelate_directions=True`` the random tangent direction φ of a dense layer is also
    independent per object — drawn exactly from its marginal
    :math:`\phi^\top x = \lVert x_\perp\rVert\, t`, :math:`(t+1)/2 \sim
    \mathrm{Beta}(\tfrac{n-2}{2}, \tfrac{n-2}{2})`, with :math:`x_\perp` the part of x
    orthogonal to :math:`\hat v` — the fix for the correlated-φ gradient variance that WN §4.2
    and §6 call for. (Convolutions keep one φ per mini-batch.)

    :param float eps: added under the square root to keep gradients finite (1e-16, as the authors' code).
    :param bool moment_matching: Gaussian moment matching for non-Gaussian weights.
    :param bool decorrelate_directions: per-object φ in weight-normalized dense layers.
    :param lazy_sites: names of Gaussian sites whose weight tensor is never used except by the
        ops here (their KL is analytic): the full weight is then not drawn at all, a NaN
        placeholder stands in its trace. Set by :class:`~pyro_varnet.infer.DecomposedELBO`
        (``lrt=True``), which finds those sites and never scores their values; not for use
        with other ELBOs.

    **References**: VN eq. 4, 39-42 (Appendix E); Kingma et al. 2015; Wang & Manning 2013.
    """

    def __init__(
        self,
        eps: float = 1e-16,
        moment_matching: bool = False,
        decorrelate_directions: bool = False,
        lazy_sites: Container[str] = (),
    ) -> None:
        if eps < 0:
            raise ValueError(f"expected eps >= 0, got {eps}")
        super().__init__()
        self.eps, self.moment_matching = eps, moment_matching
        self.decorrelate_directions = decorrelate_directions
        self.lazy_sites = lazy_sites

    def _pyro_sample(self, msg) -> None:
        name, fn = msg["name"], msg["fn"]
        if (
            msg["value"] is None
            and not msg["done"]
            and not msg["is_observed"]
            and name in self.lazy_sites
            and isinstance(unwrap(fn)[0], Normal)
        ):
            # the weight itself is never needed: a NaN placeholder (no memory, no random draw)
            # stands for it, so that any other use of the value shows up as NaN, not as a wrong number
            base = unwrap(fn)[0]
            value = base.loc.new_full((), math.nan).expand(fn.shape())
            self._drawn[value] = self._record(name, base)
            self._bases[value] = base  # ops.per_object draws from it per object
            msg["value"], msg["done"] = value, True
            return
        super()._pyro_sample(msg)

    def _pyro_tangent_projection(self, msg) -> None:
        if not self.decorrelate_directions or msg["done"]:
            return
        args = op_arguments(msg)
        if args.get("conv") is not None or args.get("columns", False):
            return  # one φ per mini-batch for convolutions and per-input (reverse) normalisation
        msg["value"], msg["done"] = per_object_tangent_projection(args["x"], args["v_norm"]), True

    def _record(self, name, base):
        zero_mean = getattr(base, "is_zero_mean", False)
        if isinstance(base, Normal):
            return (None if zero_mean else base.loc, base.scale.square())
        if self.moment_matching:
            return (None if zero_mean else base.mean, base.variance)
        return TypeError(
            f"local_reparameterization: site {name!r} is a {type(base).__name__}, which has "
            "no exact local reparameterization; use local_reparameterization(moment_matching=True) "
            "(fast dropout) or flipout, or train it without the handler"
        )

    def _answer(self, op, bias_view, x, w_info, b_info, w, b, kwargs):
        (w_loc, w_var), (b_loc, b_var) = w_info, b_info or (b, None)
        mean = op(x, w_loc, None, **kwargs) if w_loc is not None else 0.0
        var = op(x.square(), w_var, None, **kwargs)
        if b_loc is not None:
            mean = mean + bias_view(b_loc)
        if b_var is not None:
            var = var + bias_view(b_var)
        return mean + torch.randn_like(var) * (var + self.eps).sqrt()
