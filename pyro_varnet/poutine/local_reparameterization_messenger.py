"""Local reparameterization: sample a layer's pre-activations instead of its weights."""

from __future__ import annotations

import torch
from pyro.distributions import Normal

from .weight_op_messenger import WeightOpMessenger


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

    :param float eps: added under the square root to keep gradients finite (RECIPES: 1e-16).
    :param bool moment_matching: Gaussian moment matching for non-Gaussian weights.

    **References**: VN eq. 4, 39-42 (Appendix E); Kingma et al. 2015; Wang & Manning 2013.
    """

    def __init__(self, eps: float = 1e-16, moment_matching: bool = False) -> None:
        if eps < 0:
            raise ValueError(f"expected eps >= 0, got {eps}")
        super().__init__()
        self.eps, self.moment_matching = eps, moment_matching

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
