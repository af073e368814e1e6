"""Data sets: the VN §3.2 toy problem (embedded) and MNIST / CIFAR-10 through torchvision."""

from __future__ import annotations

import os
from pathlib import Path

import torch

ENV_VAR = "PYRO_VARNET_DATA"
TOY_CENTERS = ((3.0, 3.0), (3.0, 10.0), (10.0, 3.0), (10.0, 10.0))


def toy_problem(n_per_class: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Four Gaussian classes with means (3,3), (3,10), (10,3), (10,10) and identity covariance.

    :returns: ``(x, y)`` with ``x`` of shape (4·n, 2) and labels 0-3, in a seeded random order.

    **References**: VN §3.2, Fig. 1.
    """
    if n_per_class < 1:
        raise ValueError(f"expected n_per_class >= 1, got {n_per_class}")
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor(TOY_CENTERS)
    y = torch.arange(4).repeat_interleave(n_per_class)
    x = centers[y] + torch.randn(y.shape[0], 2, generator=g)
    perm = torch.randperm(y.shape[0], generator=g)
    return x[perm], y[perm]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$PYRO_VARNET_DATA``."""
    root = root if root is not None else os.environ.get(ENV_VAR)
    if not root:
        raise FileNotFoundError(
            f"no data folder given: pass --data-root / root=..., or set {ENV_VAR} to the folder that "
            "holds MNIST/raw/ (torchvision's layout); nothing is downloaded"
        )
    return Path(root).expanduser()


def _missing(name: str, root: Path, layout: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name} not found under {root}: put torchvision's raw files at {root / layout} "
        f"(or point --data-root / {ENV_VAR} elsewhere); nothing is downloaded at run time"
    )


def load_mnist(root: str | os.PathLike | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as float tensors in [0, 1] of shape (N, 1, 28, 28) and int64 labels (RECIPES: no
    normalisation), read with :class:`torchvision.datasets.MNIST` from ``root/MNIST/raw``."""
    from torchvision.datasets import MNIST

    root = data_root(root)
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError as e:
        raise _missing("MNIST", root, "MNIST/raw/") from e
    return ds.data.unsqueeze(1).float().div_(255), ds.targets.long()


def load_cifar10(root: str | os.PathLike | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 as float tensors in [0, 1] of shape (N, 3, 32, 32), read with
    :class:`torchvision.datasets.CIFAR10` from ``root/cifar-10-batches-py``."""
    from torchvision.datasets import CIFAR10

    root = data_root(root)
    try:
        ds = CIFAR10(str(root), train=train, download=False)
    except RuntimeError as e:
        raise _missing("CIFAR-10", root, "cifar-10-batches-py/") from e
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255)
    return x, torch.tensor(ds.targets, dtype=torch.long)


DATASETS = {"mnist": load_mnist, "cifar10": load_cifar10}
