"""Base of the handlers that replace a layer op given how its sampled weight was drawn."""

from __future__ import annotations

import functools
import inspect

import torch.nn.functional as F
from pyro.distributions import Delta
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.utils.weak import WeakIdKeyDictionary

from .._sites import unwrap
from .weight_rules import weight_rules

_signature = functools.lru_cache(maxsize=None)(inspect.signature)


@functools.cache
def _positional_names(fn) -> tuple[tuple[str, ...], int] | None:
    """The parameter names of ``fn`` and how many of them are required, when every one can be
    passed by position or name."""
    params = _signature(fn).parameters.values()
    if not all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params), sum(p.default is p.empty for p in params)


def op_arguments(msg) -> dict:
    """An effect's arguments by name (``x``, ``weight``, ``bias``, ``stride``, ...), bound as
    its function's signature binds them, however the caller passed them."""
    args, kwargs = msg["args"], msg["kwargs"]
    positional = _positional_names(msg["fn"])
    if positional is not None and not kwargs and positional[1] <= len(args) <= len(positional[0]):
        return dict(zip(positional[0], args))  # the ops' usual call, every step
    # anything else, including a call the signature refuses (bind's TypeError names the argument)
    return dict(_signature(msg["fn"]).bind(*args, **kwargs).arguments)


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


class _Exact:
    """Record of a weight answered by its rules' exact per-object sampler in every handler."""

    __slots__ = ("sample",)

    def __init__(self, sample) -> None:
        self.sample = sample


class WeightOpMessenger(LayerOpMessenger):
    """Remembers, for every tensor drawn at a latent sample site, what :meth:`_record` makes of
    its distribution; then answers ``linear``/``conv2d`` effects whose weight is such a tensor
    with :meth:`_answer`. A weight whose rules (:mod:`.weight_rules`) give a
    :meth:`~.weight_rules.WeightRules.per_object_op` is answered by every such handler the
    same, exact way (binary dropout: a mask per object on the op's inputs); a sampled tensor
    passed through ``ops.per_object`` (the magnitudes and angles of weight-normalized layers)
    is drawn independently for every object from its distribution (WN eq. 45, 48). Values
    replayed or conditioned from elsewhere keep what was remembered when they were drawn;
    never-sampled tensors (parameters) run the plain op.
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
        if isinstance(base, Delta):
            return  # a point mass is an ordinary parameter
        self._bases[value] = base
        self._drawn[value] = self._info(msg["name"], base)

    def _info(self, name: str, base):
        """What is remembered of a weight drawn from ``base``: the exact per-object op its rules give
        every handler, else this handler's :meth:`_record` (an exception to raise if it is used)."""
        exact = weight_rules(base).per_object_op(base)
        return _Exact(exact) if exact is not None else self._record(name, base)

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
        if isinstance(w_info, _Exact):  # the bias is used as drawn
            out = w_info.sample(op, x, args)
            msg["value"], msg["done"] = (out if b is None else out + bias_view(b)), True
            return
        b_info = None if b is None else self._drawn.get(b)  # _answer decides what a bias record means
        msg["value"] = self._answer(op, bias_view, x, w_info, b_info, w, b, args)
        msg["done"] = True
