"""Sparsity against accuracy when pruning a variance layer by σ (VN Fig. 5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from matplotlib.figure import Figure

from .._sites import unwrap
from ..infer.predict import BATCH_SIZE, accuracy, predict
from ..poutine import prune, prune_mask


@torch.no_grad()
def prune_curve(
    model: Callable,
    guide,
    data: tuple[torch.Tensor, torch.Tensor],
    site: str,
    thresholds: Sequence[float] | None = None,
    num_samples: int = 20,
    batch_size: int = BATCH_SIZE,
) -> list[dict]:
    """For each σ threshold: the fraction of ``site``'s weights zeroed and the ``num_samples``
    ensemble accuracy on ``data`` with only that site pruned (VN Fig. 5).

    :param thresholds: σ values; default the 0, 10, ..., 99 % quantiles of the site's σ.
    """
    x, y = data
    scale = unwrap(guide.site(site)())[0].scale.detach()
    if thresholds is None:
        qs = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99])
        thresholds = torch.quantile(scale.flatten().double()[: 2**24], qs.double().to(scale.device)).tolist()
    rows = []
    for t in thresholds:
        with prune(threshold=t, sites=[site]):
            acc = accuracy(predict(model, guide, x, mode="ensemble", num_samples=num_samples, batch_size=batch_size), y)
        sparsity = 1 - float(prune_mask(scale, t).float().mean())
        rows.append({"threshold": float(t), "sparsity": sparsity, "accuracy": acc})
    return rows


def plot_prune_curve(rows: list[dict], path=None, title: str = "Pruning a variance layer by σ (VN Fig. 5)") -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot([100 * r["sparsity"] for r in rows], [100 * r["accuracy"] for r in rows], marker="o")
    ax.set(xlabel="weights zeroed (%)", ylabel="ensemble test accuracy (%)", title=title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
