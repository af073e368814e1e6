"""Base of the handlers that rewrite chosen latent sample sites."""

from __future__ import annotations

from collections.abc import Iterable

from pyro.poutine.messenger import Messenger

from .._sites import selected


class SiteMessenger(Messenger):
    """A handler configured with ``sites``: names, globs or module paths of the latent sites
    it acts on, ``None`` for every global latent site (see :func:`pyro_varnet._sites.selected`)."""

    def __init__(self, sites: Iterable[str] | None = None) -> None:
        super().__init__()
        self.sites = None if sites is None else list(sites)

    def _selected(self, msg) -> bool:
        return selected(msg, self.sites)
