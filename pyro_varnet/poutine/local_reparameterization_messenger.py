"""Local reparameterization: sample a layer's pre-activations instead of its weights."""

from __future__ import annotations

import math
from collections.abc import Container

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .._numerics import square
from .._sites import unwrap
from .weight_op_messenger import WeightOpMessenger, op_arguments
from .weight_rules import Moments, weight_rules


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


class _GaussianOutput(torch.autograd.Function):
    r"""Pre-activations drawn per object from :math:`\mathcal{N}(\text{mean}, \text{var})`
    (VN eq. 4): :math:`\text{mean} + \varepsilon\sqrt{\text{var} + \epsilon_0}`, ε ~ N(0, 1)
    by ``torch.randn_like`` (the same draws as written out in autograd ops). The backward gives
    ``mean`` the gradient itself and ``var`` :math:`g\varepsilon / (2\sqrt{\text{var}+\epsilon_0})`
    in two passes over the activation; autograd through ``add``, ``sqrt`` and ``addcmul``
    takes four (``benchmarks/svi_step.py``: conv1's output is the step's largest tensor)."""

    @staticmethod
    def forward(ctx, mean, var, eps):
        std = var.add(eps).sqrt_()
        noise = torch.randn_like(std)
        ctx.save_for_backward(noise, std)
        return noise * std if mean is None else torch.addcmul(mean, noise, std)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        noise, std = ctx.saved_tensors
        d_mean = grad if ctx.needs_input_grad[0] else None
        d_var = None
        if ctx.needs_input_grad[1]:
            d_var = torch.addcdiv(grad.new_zeros(()), grad * noise, std, value=0.5)
        return d_mean, d_var, None


def gaussian_output(mean: torch.Tensor | None, var: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    r"""A draw of :math:`\mathcal{N}(\text{mean}, \text{var} + \epsilon_0)` per element
    (``mean=None``: zero mean), reparameterized; first-order gradients only."""
    return _GaussianOutput.apply(mean, var, eps)


class LocalReparameterizationMessenger(WeightOpMessenger):
    r"""Replace weight sampling by output sampling in :func:`pyro_varnet.ops.linear` / ``conv2d``.

    Every sample site the handler sees drawn (in the guide, or from a prior) is remembered
    with what its distribution's :class:`~pyro_varnet.poutine.weight_rules.WeightRules` give;
    values replayed or conditioned from elsewhere keep what was remembered when they were
    drawn. When a Gaussian weight reaches an op, the op returns
    :math:`b = A\mu + \varepsilon\sqrt{A^2\sigma^2 + \epsilon_0}` with
    :math:`\varepsilon \sim \mathcal{N}(0, 1)` drawn per object and output unit; for a
    :class:`~pyro_varnet.distributions.ZeroMeanNormal` only the variance op runs. A Gaussian
    bias contributes its mean and variance too; any other sampled bias is drawn per object.
    A distribution whose rules give their own exact per-object sampler (binary dropout's input
    masks, a registered non-Gaussian family) is answered by it. Parameters that were never
    sampled pass through unchanged. A sampled weight whose rules have no exact local
    reparameterization raises, unless ``moment_matching=True`` (fast dropout: its mean and
    variance are used instead).

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
        if msg["value"] is None and not msg["done"] and not msg["is_observed"] and name in self.lazy_sites:
            base = unwrap(fn)[0]
            info = self._info(name, base)
            if not isinstance(info, Exception):
                # the weight itself is never needed: a NaN placeholder (no memory, no random draw)
                # stands for it, so that any other use of the value shows up as NaN, not as a wrong number
                value = self._param_like(base).new_full((), math.nan).expand(fn.shape())
                self._drawn[value] = info
                self._bases[value] = base  # ops.per_object draws from it per object
                msg["value"], msg["done"] = value, True
                return
        super()._pyro_sample(msg)

    @staticmethod
    def _param_like(base) -> torch.Tensor:
        """A tensor of the distribution's (for the placeholder's device and dtype)."""
        return base.mean if not hasattr(base, "loc") else base.loc

    def _pyro_tangent_projection(self, msg) -> None:
        if not self.decorrelate_directions or msg["done"]:
            return
        args = op_arguments(msg)
        if args.get("conv") is not None or args.get("columns", False):
            return  # one φ per mini-batch for convolutions and per-input (reverse) normalisation
        msg["value"], msg["done"] = per_object_tangent_projection(args["x"], args["v_norm"]), True

    def _record(self, name, base):
        rules = weight_rules(base)
        info = rules.local_reparameterization(base)
        if info is None and self.moment_matching:
            info = rules.moments(base)
        if info is None:
            return TypeError(
                f"local_reparameterization: site {name!r} is a {type(base).__name__}, which has "
                "no exact local reparameterization; use local_reparameterization(moment_matching=True) "
                "(fast dropout) or flipout, train it without the handler, or register WeightRules "
                "for it (pyro_varnet.poutine.register_weight_rules)"
            )
        return info

    def _answer(self, op, bias_view, x, w_info, b_info, w, b, kwargs):
        b_moments = b_info if isinstance(b_info, Moments) else None
        fused = False  # whether a parameter bias went into the mean op (one pass less over the output)
        if isinstance(w_info, Moments):
            mean = None
            if w_info.loc is not None:
                fused = b is not None and b_info is None
                mean = op(x, w_info.loc, b if fused else None, **kwargs)
            var = op(square(x), w_info.var, None, **kwargs)
            if b_moments is not None:  # a Gaussian bias joins the Gaussian output (one draw)
                if b_moments.loc is not None:
                    mean = bias_view(b_moments.loc) if mean is None else mean + bias_view(b_moments.loc)
                var = var + bias_view(b_moments.var)
            out = gaussian_output(mean, var, self.eps)
            if b_moments is not None:
                return out
        else:
            out = w_info(op, x, kwargs)  # the rules' own exact sampler (an OpSampler)
        if b is None or fused:
            return out
        if b_info is None:
            return out + bias_view(b)  # a parameter, or a value given from elsewhere
        return out + self._bias_per_object(b, out, op)

    def _bias_per_object(self, b, out, op) -> torch.Tensor:
        """A sampled bias drawn afresh for every object from its own distribution, shaped to add to ``out``."""
        draws = self._bases[b].rsample(out.shape[:1])  # (N, out_features)
        if op is F.conv2d:
            return draws[:, :, None, None]
        return draws.reshape(draws.shape[:1] + (1,) * (out.dim() - 2) + draws.shape[1:])
