"""Small helpers shared by handlers and guides: site selection and distribution unwrapping."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from pyro.poutine.util import site_is_subsample
from torch.distributions import Distribution, Independent


def site_matches(name: str, key: str) -> bool:
    """Whether sample site ``name`` is selected by ``key``.

    ``key`` may be the full site name (``"net.fc1.weight"``), a glob pattern
    (``"*.fc1.*"``) or a module path ending in whole components (``"fc1"`` or
    ``"net.fc1"`` select every site of that module).
    """
    if name == key or fnmatch.fnmatchcase(name, key):
        return True
    parts, kparts = name.split("."), key.split(".")
    module = parts[:-1]
    return len(kparts) <= len(module) and module[-len(kparts) :] == kparts


def selected(msg, sites: Iterable[str] | None) -> bool:
    """Whether a handler configured with ``sites`` acts on the latent sample message ``msg``.

    ``sites=None`` selects the global latent sites (outside every plate: the weights, not
    per-datum variables such as unobserved labels); otherwise a site is selected when a
    key in ``sites`` matches its name (:func:`site_matches`).
    """
    if msg["is_observed"] or msg["done"] or site_is_subsample(msg):
        return False
    if sites is None:
        return not msg["cond_indep_stack"]
    return any(site_matches(msg["name"], key) for key in sites)


def unwrap(fn: Distribution) -> tuple[Distribution, int]:
    """Strip :class:`Independent` wrappers: the base distribution and the event dims they added."""
    ndims = 0
    while isinstance(fn, Independent):
        ndims += fn.reinterpreted_batch_ndims
        fn = fn.base_dist
    return fn, ndims


def rewrap(base: Distribution, ndims: int) -> Distribution:
    """Inverse of :func:`unwrap`."""
    return base.to_event(ndims) if ndims else base
