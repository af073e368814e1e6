"""A prior given by a plain callable ``shape -> distribution``."""

from __future__ import annotations

from collections.abc import Callable

from .base import Prior


class CallablePrior(Prior):
    r"""The prior ``fn(shape)`` returns (a distribution over the whole weight, all dims as event),
    built once at set-up: e.g. a Gaussian, or a scale mixture
    :math:`\pi\,\mathcal{N}(0, \sigma_1^2) + (1-\pi)\,\mathcal{N}(0, \sigma_2^2)` (spike-and-slab
    like) written with ``pyro.distributions.MixtureSameFamily``. Its tensors stay where ``fn``
    made them: build them on the model's device, or register a :class:`Prior` instead."""

    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn
        self._dist = None

    def setup(self, shape) -> None:
        super().setup(shape)
        self._dist = self.fn(self.shape)
        if tuple(self._dist.batch_shape + self._dist.event_shape) != tuple(self.shape):
            raise ValueError(
                f"the prior callable returned a distribution of shape "
                f"{tuple(self._dist.batch_shape + self._dist.event_shape)} for a weight of shape {tuple(self.shape)}"
            )

    def distribution(self):
        return self._dist

    def signature(self) -> str:
        return getattr(self.fn, "__qualname__", type(self.fn).__name__)
