"""Per-epoch training metrics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class History:
    """Metrics of each finished epoch, as a list of flat dicts (``epoch``, ``elbo``, ...).

    >>> h = History([{"epoch": 1, "elbo": -3.0}, {"epoch": 2, "elbo": -2.5}])
    >>> h["elbo"]
    [-3.0, -2.5]
    """

    epochs: list[dict] = field(default_factory=list)

    def append(self, metrics: dict) -> None:
        self.epochs.append(dict(metrics))

    def __getitem__(self, key: str) -> list:
        return [e.get(key) for e in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.epochs)

    @property
    def last(self) -> dict:
        return self.epochs[-1] if self.epochs else {}

    def to_dataframe(self):
        """The history as a :class:`pandas.DataFrame`, one row per epoch."""
        import pandas as pd

        return pd.DataFrame(self.epochs)
