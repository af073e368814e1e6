"""Data sets: the VN §3.2 toy problem (embedded) and MNIST / CIFAR-10 through torchvision."""

from __future__ import annotations

import math
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


def sine_regression(
    n: int = 500, noise: float = 0.1, seed: int = 0, low: float = -2.0, high: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A 1-D regression problem: :math:`y = \sin(3x) + \text{noise}\cdot\varepsilon`, x ~ U[low, high].

    :returns: ``(x, y)`` with ``x`` of shape (n, 1) and ``y`` of shape (n,); the noise-free
        curve is ``torch.sin(3 * x)``.
    """
    if n < 1 or not noise >= 0:
        raise ValueError(f"expected n >= 1 and noise >= 0, got {n}, {noise}")
    g = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(n, 1, generator=g)
    return x, torch.sin(3 * x).squeeze(-1) + noise * torch.randn(n, generator=g)


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


class CorruptDataError(ValueError):
    """A data file that exists but cannot be what it claims to be."""


def _idx_header(path: Path, magic: int, ndim: int) -> tuple[int, ...]:
    """The dimensions of an IDX file (LeCun's MNIST format), checked against its size."""
    size = path.stat().st_size
    if size == 0:
        raise CorruptDataError(f"{path} is corrupt: the file is empty (0 bytes)")
    header = 4 + 4 * ndim
    with open(path, "rb") as f:
        head = f.read(header)
    if len(head) < header:
        raise CorruptDataError(f"{path} is corrupt: {size} bytes, shorter than its {header}-byte header")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise CorruptDataError(f"{path} is corrupt: magic number {found}, expected {magic}")
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if size != expected:
        raise CorruptDataError(
            f"{path} is corrupt: {size} bytes, but its header announces {dims} (expected {expected} bytes; truncated?)"
        )
    return dims


def _check_mnist(root: Path, train: bool) -> None:
    """Missing files are reported as missing, damaged ones as corrupt (which file, what is wrong)."""
    prefix = "train" if train else "t10k"
    images, labels = (
        root / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte",
        root / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte",
    )
    if not images.exists() or not labels.exists():
        return  # torchvision's own check says "not found" (or finds the processed files)
    n_images, rows, cols = _idx_header(images, 2051, 3)
    (n_labels,) = _idx_header(labels, 2049, 1)
    if (rows, cols) != (28, 28):
        raise CorruptDataError(f"{images} is corrupt: images of {rows}x{cols}, expected 28x28")
    if n_images != n_labels:
        raise CorruptDataError(f"{images} and {labels} disagree: {n_images} images, {n_labels} labels")


def load_mnist(root: str | os.PathLike | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as float tensors in [0, 1] of shape (N, 1, 28, 28) and int64 labels in 0..9 (no
    normalisation, as the authors), read with :class:`torchvision.datasets.MNIST` from
    ``root/MNIST/raw``. Damaged files raise :class:`CorruptDataError` naming the file."""
    from torchvision.datasets import MNIST

    root = data_root(root)
    _check_mnist(root, train)
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError as e:
        raise _missing("MNIST", root, "MNIST/raw/") from e
    y = ds.targets.long()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > 9):
        raise CorruptDataError(f"MNIST labels under {root} are corrupt: values in [{int(y.min())}, {int(y.max())}]")
    return ds.data.unsqueeze(1).float().div_(255), y


def load_cifar10(root: str | os.PathLike | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 as float tensors in [0, 1] of shape (N, 3, 32, 32), read with
    :class:`torchvision.datasets.CIFAR10` from ``root/cifar-10-batches-py``."""
    from torchvision.datasets import CIFAR10

    root = data_root(root)
    try:
        ds = CIFAR10(str(root), train=train, download=False)
    except RuntimeError as e:
        raise _missing("CIFAR-10", root, "cifar-10-batches-py/") from e
    except (EOFError, OSError, ValueError, KeyError, IndexError) as e:  # pickle batches that do not unpickle
        raise CorruptDataError(
            f"CIFAR-10 under {root / 'cifar-10-batches-py'} is corrupt ({type(e).__name__}: {e})"
        ) from e
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255)
    return x, torch.tensor(ds.targets, dtype=torch.long)


DATASETS = {"mnist": load_mnist, "cifar10": load_cifar10}


def loader(
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int = 200,
    shuffle: bool = True,
    seed: int | None = None,
    num_workers: int = 0,
    pin_memory: bool | None = None,
):
    """A :class:`~torch.utils.data.DataLoader` over in-memory ``(x, y)`` (e.g. from
    :func:`load_mnist`), for :func:`~pyro_varnet.infer.fit` and for pipelines of your own.

    ``pin_memory`` defaults to ``True`` when CUDA is available (page-locked batches are copied
    to the GPU asynchronously); ``num_workers`` helps only when batches are transformed per
    object (augmentation) — indexing in-memory tensors is cheaper than a worker's hand-off.
    ``fit`` given the tensors themselves moves them to the device once, which is fastest for
    data sets that fit there (MNIST: 190 MB as float32).
    """
    from torch.utils.data import DataLoader, TensorDataset

    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(
        TensorDataset(*data),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
