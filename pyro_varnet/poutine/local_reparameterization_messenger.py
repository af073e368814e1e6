"""Local reparameterization: sample a layer's pre-activations instead of its weights."""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F
from pyro.distributions import Delta, Normal
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.utils.weak import WeakIdKeyDictionary

from .._sites import unwrap

_signature = functools.lru_cache(maxsize=None)(inspect.signature)
_OPS = {"linear": (F.linear, lambda b: b), "conv2d": (F.conv2d, lambda b: b[:, None, None])}


class LocalReparameterizationMessenger(Messenger):
    r"""Replace weight sampling by output sampling in :func:`pyro_varnet.ops.linear` / ``conv2d``.

    Every sample site the handler sees drawn (in the guide, or from a prior) whose
    distribution is Gaussian is remembered with its mean and variance; values replayed or
    conditioned from elsewhere keep what was remembered when they were drawn. When such a
    sampled weight reaches an op, the op returns :math:`b = A\mu + \varepsilon\sqrt{A^2\sigma^2 + \epsilon_0}` with
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
        self._moments = WeakIdKeyDictionary()
        self._given: set[int] = set()

    def __exit__(self, *args, **kwargs):
        self._moments = WeakIdKeyDictionary()
        return super().__exit__(*args, **kwargs)

    def _pyro_sample(self, msg) -> None:
        # a value set before sampling (replayed from a guide, conditioned) is not drawn here
        if msg["done"] or msg["value"] is not None:
            self._given.add(id(msg))

    def _pyro_post_sample(self, msg) -> None:
        value = msg["value"]
        if id(msg) in self._given:
            self._given.discard(id(msg))
            return
        if msg["is_observed"] or site_is_subsample(msg) or value in self._moments:
            return
        base, _ = unwrap(msg["fn"])
        if isinstance(base, Delta):
            return  # a point mass is an ordinary parameter
        zero_mean = getattr(base, "is_zero_mean", False)
        if isinstance(base, Normal):
            self._moments[value] = (None if zero_mean else base.loc, base.scale.square())
        elif self.moment_matching:
            self._moments[value] = (None if zero_mean else base.mean, base.variance)
        else:
            self._moments[value] = TypeError(
                f"local_reparameterization: site {msg['name']!r} is a {type(base).__name__}, which has "
                "no exact local reparameterization; use local_reparameterization(moment_matching=True) "
                "(fast dropout) or flipout, or train it without the handler"
            )

    def _lookup(self, tensor):
        m = None if tensor is None else self._moments.get(tensor)
        if isinstance(m, Exception):
            raise m
        return m

    def _pyro_linear(self, msg) -> None:
        self._answer(msg)

    def _pyro_conv2d(self, msg) -> None:
        self._answer(msg)

    def _answer(self, msg) -> None:
        if msg["done"]:
            return
        args = _signature(msg["fn"]).bind(*msg["args"], **msg["kwargs"]).arguments
        x, w, b = args.pop("x"), args.pop("weight"), args.pop("bias", None)
        w_m, b_m = self._lookup(w), self._lookup(b)
        if w_m is None:
            return  # deterministic weight: the plain op runs
        op, bias_view = _OPS[msg["type"]]
        (w_loc, w_var), (b_loc, b_var) = w_m, b_m or (b, None)
        mean = op(x, w_loc, None, **args) if w_loc is not None else 0.0
        var = op(x.square(), w_var, None, **args)
        if b_loc is not None:
            mean = mean + bias_view(b_loc)
        if b_var is not None:
            var = var + bias_view(b_var)
        noise = torch.randn_like(var)
        msg["value"] = mean + noise * (var + self.eps).sqrt()
        msg["done"] = True
