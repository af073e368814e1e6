"""Flipout: pseudo-independent weight noise for every object at the cost of one extra op."""

from __future__ import annotations

import torch

from .weight_op_messenger import WeightOpMessenger
from .weight_rules import weight_rules


def _signs(shape, like: torch.Tensor) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype).mul_(2).sub_(1)


class FlipoutMessenger(WeightOpMessenger):
    r"""Decorrelate the weight noise across a mini-batch with random sign flips.

    For a sampled weight :math:`W = \bar W + \Delta W` with a symmetric perturbation
    distribution, object :math:`n` gets :math:`\Delta W \circ s_n r_n^\top`, whose
    distribution is that of :math:`\Delta W`:
    :math:`b_n = \bar W a_n + (\Delta W (a_n \circ r_n)) \circ s_n` with random signs
    :math:`r_n, s_n` per object (per input / output channel for convolutions). It needs only
    one weight sample per batch and works for families without an exact local
    reparameterization (Bernoulli and uniform variance layers, WeightNorm noise).
    The perturbation of each element must be symmetric about its centre, the rules'
    :meth:`~pyro_varnet.poutine.weight_rules.WeightRules.point` (the mean); a sampled bias is
    used as drawn.

    **References**: Wen et al. 2018 (Flipout), eq. 4.
    """

    def _record(self, name, base):
        rules = weight_rules(base)
        return None if rules.is_zero_mean(base) else rules.point(base)

    def _answer(self, op, bias_view, x, w_mean, b_info, w, b, kwargs):
        if x.dim() == 4:
            r = _signs((x.shape[0], x.shape[1], 1, 1), x)
        else:
            r = _signs(x.shape, x)
        delta = w if w_mean is None else w - w_mean
        noise = op(x * r, delta, None, **kwargs)
        s = _signs(noise.shape[:2] + (1,) * (noise.dim() - 2), noise)
        out = noise * s
        if w_mean is not None:
            out = out + op(x, w_mean, None, **kwargs)
        return out if b is None else out + bias_view(b)
