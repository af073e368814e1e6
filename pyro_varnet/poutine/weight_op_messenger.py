"""Base of the handlers that replace a layer op given how its sampled weight was drawn."""

from __future__ import annotations

import functools
import inspect

import torch
import torch.nn.functional as F
from pyro.distributions import Delta
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.utils.weak import WeakIdKeyDictionary

from .._sites import unwrap
from ..distributions import InputDropout

_signature = functools.lru_cache(maxsize=None)(inspect.signature)


def op_arguments(msg) -> dict:
    """An effect's arguments by name (``x``, ``weight``, ``bias``, ``stride``, ...), bound as
    its function's signature binds them, however the caller passed them."""
    return dict(_signature(msg["fn"]).bind(*msg["args"], **msg["kwargs"]).arguments)


class LayerOpMessenger(Messenger):
    """Routes every not-yet-answered ``linear`` / ``conv2d`` effect to
    :meth:`_layer_op` ``(msg, x, weight, bias, kwargs)``, ``kwargs`` holding the op's other
    arguments (stride, padding, ...); it sets ``msg["value"]`` and ``msg["done"]`` to answer."""

    def _pyro_linear(self, msg) -> None:
        self._route(msg)

    def _pyro_conv2d(self, msg) -> None:
        self._route(msg)

    def _route(self, msg) -> None:
        if msg["done"]:
            return
        args = op_arguments(msg)
        self._layer_op(msg, args.pop("x"), args.pop("weight"), args.pop("bias", None), args)

    def _layer_op(self, msg, x, w, b, kwargs) -> None:
        raise NotImplementedError


#: op type -> (plain op, how a bias of shape (out,) broadcasts against its output)
OPS = {"linear": (F.linear, lambda b: b), "conv2d": (F.conv2d, lambda b: b[:, None, None])}


class _Dropout(tuple):
    """Record of an :class:`InputDropout` weight: (θ, p)."""


def _dropout_op(op, bias_view, x, theta, p, b, kwargs):
    """Standard dropout: an independent keep/drop mask per object and input unit (channel)."""
    keep = torch.rand(x.shape[:2] + (1,) * (x.dim() - 2), device=x.device) >= p
    out = op(x * keep.to(x.dtype) / (1 - p), theta, None, **kwargs)
    return out if b is None else out + bias_view(b)


class WeightOpMessenger(LayerOpMessenger):
    """Remembers, for every tensor drawn at a latent sample site, what :meth:`_record` makes of
    its distribution; then answers ``linear``/``conv2d`` effects whose weight is such a tensor
    with :meth:`_answer`. A weight drawn from :class:`~pyro_varnet.distributions.InputDropout`
    is answered by every such handler the same, exact way: a dropout mask per object on the
    op's inputs (standard dropout); a sampled tensor passed through ``ops.per_object`` (the
    magnitudes and angles of weight-normalized layers) is drawn independently for every
    object from its distribution (WN eq. 45, 48). Values replayed or conditioned from elsewhere keep what was
    remembered when they were drawn; never-sampled tensors (parameters) run the plain op.
    """

    def __init__(self) -> None:
        super().__init__()
        self._drawn = WeakIdKeyDictionary()
        self._bases = WeakIdKeyDictionary()
        self._given: set[int] = set()

    def __exit__(self, *args, **kwargs):
        self._drawn, self._bases = WeakIdKeyDictionary(), WeakIdKeyDictionary()
        return super().__exit__(*args, **kwargs)

    def _record(self, name: str, base) -> object:
        raise NotImplementedError

    def _answer(self, op, bias_view, x, weight_info, bias_info, w, b, kwargs):
        raise NotImplementedError

    def _pyro_sample(self, msg) -> None:
        if msg["done"] or msg["value"] is not None:
            self._given.add(id(msg))

    def _pyro_post_sample(self, msg) -> None:
        value = msg["value"]
        if id(msg) in self._given:
            self._given.discard(id(msg))
            return
        if msg["is_observed"] or site_is_subsample(msg) or value in self._drawn:
            return
        base, _ = unwrap(msg["fn"])
        if not isinstance(base, Delta):
            self._bases[value] = base
        if isinstance(base, InputDropout):
            self._drawn[value] = _Dropout((base.theta, base.p))
        elif not isinstance(base, Delta):  # a point mass is an ordinary parameter
            self._drawn[value] = self._record(msg["name"], base)

    def _lookup(self, tensor):
        info = None if tensor is None else self._drawn.get(tensor)
        if isinstance(info, Exception):
            raise info
        return info

    def _pyro_per_object(self, msg) -> None:
        """A sampled tensor used by every object (``ops.per_object``) is drawn per object instead."""
        value, batch_size = msg["args"]
        base = self._bases.get(value)
        if base is None or msg["done"]:
            return
        msg["value"], msg["done"] = base.rsample((batch_size,)), True

    def _layer_op(self, msg, x, w, b, args) -> None:
        w_info = self._lookup(w)
        if w_info is None:
            return  # deterministic weight: the plain op runs
        op, bias_view = OPS[msg["type"]]
        if isinstance(w_info, _Dropout):
            msg["value"], msg["done"] = _dropout_op(op, bias_view, x, *w_info, b, args), True
            return
        msg["value"] = self._answer(op, bias_view, x, w_info, self._lookup(b), w, b, args)
        msg["done"] = True
