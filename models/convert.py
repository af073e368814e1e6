r"""Bring your own network: turn a plain :class:`torch.nn.Module` into a Bayesian one.

:func:`bayesian` replaces the selected ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` layers of
any network — a torchvision ResNet, the user's own MLP — by
:class:`~pyro_varnet.models.BayesLinear` / :class:`~pyro_varnet.models.BayesConv1d` /
:class:`~pyro_varnet.models.BayesConv2d` whose weights are Pyro sample sites under a prior,
keeps every other parameter (biases, BatchNorm, embeddings) deterministic, and makes the
network a :class:`~pyro.nn.PyroModule` so that its sites are named by module path
(``layer4.1.conv2.weight``). The result works with every part of the library:
:class:`~pyro_varnet.guides.NetworkGuide` and its families, the handlers (local
reparameterization — VN eq. 39-42 — stacked weights, pruning, mean propagation), ``fit``,
``predict``, reports and checkpoints.

>>> from torchvision.models import resnet18  # doctest: +SKIP
>>> net = bayesian(resnet18(num_classes=10), layers=["layer4.1", "fc"])  # doctest: +SKIP
>>> model = Classifier(net, num_data=50_000)  # doctest: +SKIP
>>> guide = NetworkGuide(model, default="zero-mean", families={"fc": "layer"})  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterable

import torch
from pyro.nn import PyroModule
from pyro.nn.module import to_pyro_module_
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from .layers import BayesConv1d, BayesConv2d, BayesLinear, PriorSpec, _BayesLayer

#: the layer types that can be converted (exact types: subclasses such as the out-projection of
#: ``nn.MultiheadAttention`` are used by their owners without calling ``forward``)
CONVERTIBLE = (nn.Linear, nn.Conv1d, nn.Conv2d)

Selector = str | type


def _plain_type(m: nn.Module) -> type:
    """The torch class of a module, also after ``to_pyro_module_`` made it ``PyroModule[cls]``."""
    return next(c for c in type(m).__mro__ if not issubclass(c, PyroModule))


def _matches(path: str, module: nn.Module, selector: Selector) -> bool:
    if isinstance(selector, type):
        return isinstance(module, selector)
    return path == selector or fnmatch.fnmatchcase(path, selector) or path.startswith(selector + ".")


def convertible_layers(net: nn.Module) -> list[str]:
    """Module paths of the layers :func:`bayesian` can convert, in ``named_modules`` order."""
    return [path for path, m in net.named_modules() if _plain_type(m) in CONVERTIBLE]


def _convert(m: nn.Module, prior: PriorSpec, prior_scale: float, df: float) -> _BayesLayer:
    kwargs = dict(bias=m.bias is not None, prior=prior, prior_scale=prior_scale, df=df)
    if isinstance(m, nn.Linear):
        new = BayesLinear(m.in_features, m.out_features, **kwargs)
    else:
        if m.padding_mode != "zeros":
            raise ValueError(f"padding_mode={m.padding_mode!r} is not supported (only 'zeros'): {m}")
        cls = BayesConv2d if isinstance(m, nn.Conv2d) else BayesConv1d
        new = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups, **kwargs)
    new = new.to(device=m.weight.device, dtype=m.weight.dtype)
    if m.bias is not None:
        with torch.no_grad():
            new.bias.copy_(m.bias)
    return new


def bayesian(
    net: nn.Module,
    prior: PriorSpec = "log-uniform",
    layers: Selector | Iterable[Selector] | None = None,
    pretrained: bool | float = False,
    prior_scale: float = 1.0,
    df: float = 1e-16,
    inplace: bool = False,
) -> PyroModule:
    r"""``net`` with its selected dense and convolutional weights made Pyro sample sites.

    :param torch.nn.Module net: any network; its layers are replaced, its ``forward`` is kept.
    :param prior: the prior of the converted weights: ``"log-uniform"`` (VN §4.1, default),
        ``"student-t"``, ``"ard"``, ``"normal"``, or a callable ``shape -> distribution``, as in
        :class:`~pyro_varnet.models.BayesLinear`. Call :func:`bayesian` again on the result
        with other ``layers`` to give them another prior (converted layers are left alone).
    :param layers: which layers: ``None`` (every ``nn.Linear`` / ``Conv1d`` / ``Conv2d``), or
        one or several selectors — a module path (``"fc"``, ``"layer4.1"`` selects every layer
        under it), a glob (``"layer4.*.conv?"``) or a type (``nn.Linear``). A selector that
        matches no convertible layer is an error.
    :param pretrained: ``False`` — the guide starts at its families' own initialisation;
        ``True`` or a number δ (default 0.1 for ``True``) — it starts at the network's trained
        weights: means w and standard deviations δ|w| (MOPED); a variance layer starts at
        σ = |w| (see :meth:`~pyro_varnet.models.BayesLinear.start_from`).
    :param float prior_scale: λ initial value for ARD, σ for the normal prior.
    :param float df: degrees of freedom of the Student-t prior.
    :param bool inplace: convert ``net`` itself instead of a deep copy.
    :returns: the converted network, a :class:`~pyro.nn.PyroModule` (wrap it in a likelihood,
        e.g. :class:`~pyro_varnet.models.Classifier`).
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(net).__name__}")
    if isinstance(pretrained, bool):
        delta = 0.1 if pretrained else None
    elif isinstance(pretrained, int | float) and pretrained > 0:
        delta = float(pretrained)
    else:
        raise ValueError(f"expected pretrained to be a bool or a positive delta, got {pretrained!r}")
    selectors = None if layers is None else ([layers] if isinstance(layers, str | type) else list(layers))
    if selectors is not None and not selectors:
        raise ValueError("expected at least one layer selector (None converts every layer)")
    if not inplace:
        net = copy.deepcopy(net)
    lazy = [p for p, m in net.named_modules() if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()]
    if lazy:
        raise ValueError(f"layers {lazy} are lazy (shapes unknown): run the network once before converting it")
    candidates = {path: m for path, m in net.named_modules() if _plain_type(m) in CONVERTIBLE}
    chosen = {}
    for path, m in candidates.items():
        if selectors is None or any(_matches(path, m, s) for s in selectors):
            chosen[path] = m
    if selectors is not None:
        for s in selectors:
            if not any(_matches(p, m, s) for p, m in candidates.items()):
                raise ValueError(f"layer selector {s!r} matches no convertible layer; they are {list(candidates)}")
    if not chosen and not any(isinstance(m, _BayesLayer) for m in net.modules()):
        raise ValueError(f"{type(net).__name__} has no nn.Linear / nn.Conv1d / nn.Conv2d layer to convert")
    for path, m in chosen.items():
        new = _convert(m, prior, prior_scale, df)
        if delta is not None:
            new.start_from(m.weight, delta)
        if path:
            parent_path, _, attr = path.rpartition(".")
            setattr(net.get_submodule(parent_path) if parent_path else net, attr, new)
        else:  # the network is itself one layer
            net = new
    to_pyro_module_(net)  # every container a PyroModule: sites named by module path
    return net


__all__ = ["CONVERTIBLE", "bayesian", "convertible_layers"]
