"""The architectures of the papers, built from Bayesian layers.

Every network takes ``bayesian``: the names of the layers whose weights are sample
sites under ``prior`` (the rest are deterministic parameters), ``None`` meaning all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from pyro.nn import PyroModule
from torch import nn

from pyro_varnet._checks import check_choice

from .layers import BayesConv2d, BayesLinear, PriorSpec


class Abs(nn.Module):
    r""":math:`|h|`: after a variance layer it keeps all the information of :math:`h = \varepsilon s`,
    :math:`\mathbb{E}|h| = s\sqrt{2/\pi}` with signal-to-noise ratio 1.32 per unit (ReLU: 0.68;
    the Cramér-Rao bound for a Gaussian's scale from one draw: √2), so the network needs ~4x
    fewer units than with ReLU for the same output noise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "abs": Abs}


def _activation(name: str) -> nn.Module:
    check_choice("activation", name, _ACTIVATIONS)
    return PyroModule[_ACTIVATIONS[name]]()


class _Net(PyroModule):
    """Base: checks the ``bayesian`` layer names and builds layers with the right prior."""

    layer_names: tuple[str, ...] = ()

    def _setup(self, bayesian: Iterable[str] | None, prior: PriorSpec, bias: bool, **prior_kwargs) -> None:
        chosen = set(self.layer_names if bayesian is None else bayesian)
        unknown = chosen - set(self.layer_names)
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}; {type(self).__name__} has {self.layer_names}")
        self.bayesian_layers = tuple(n for n in self.layer_names if n in chosen)
        self._prior, self._bias, self._prior_kwargs = prior, bias, prior_kwargs

    def _dense(self, name: str, n_in: int, n_out: int) -> BayesLinear:
        prior = self._prior if name in self.bayesian_layers else None
        return BayesLinear(n_in, n_out, bias=self._bias, prior=prior, **self._prior_kwargs)

    def _conv(self, name: str, c_in: int, c_out: int, k: int, **kw) -> BayesConv2d:
        prior = self._prior if name in self.bayesian_layers else None
        return BayesConv2d(c_in, c_out, k, bias=self._bias, prior=prior, **kw, **self._prior_kwargs)


class MLP(_Net):
    """Fully connected network ``sizes[0] -> ... -> sizes[-1]`` with layers ``fc1, fc2, ...``.

    :param activation: one name (``"relu"``, ``"tanh"``, ``"leaky_relu"``, ``"abs"``) for every
        hidden layer, or one name per hidden layer (e.g. ``("relu", "abs")`` for an ``abs``
        after a variance layer ``fc2``).
    """

    def __init__(
        self,
        sizes: Iterable[int],
        bayesian: Iterable[str] | None = None,
        prior: PriorSpec = "log-uniform",
        activation: str | Sequence[str] = "relu",
        bias: bool = True,
        **prior_kwargs,
    ) -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"expected at least input and output sizes, got {sizes}")
        self.layer_names = tuple(f"fc{i + 1}" for i in range(len(sizes) - 1))
        self._setup(bayesian, prior, bias, **prior_kwargs)
        for name, n_in, n_out in zip(self.layer_names, sizes[:-1], sizes[1:]):
            setattr(self, name, self._dense(name, n_in, n_out))
        if isinstance(activation, str):
            self.act = _activation(activation)
        else:
            if len(activation) != len(sizes) - 2:
                raise ValueError(f"expected {len(sizes) - 2} activations (one per hidden layer), got {len(activation)}")
            self.acts = PyroModule[nn.ModuleList]([_activation(a) for a in activation])
        self.in_features = sizes[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)
        acts = getattr(self, "acts", None)
        for i, name in enumerate(self.layer_names):
            h = getattr(self, name)(h)
            if i < len(self.layer_names) - 1:
                h = self.act(h) if acts is None else acts[i](h)
        return h


class LeNet300_100(MLP):
    """LeNet-300-100 for MNIST: 784-300-100-10 (Sparse VD, Molchanov et al. 2017)."""

    def __init__(self, bayesian=None, prior: PriorSpec = "log-uniform", **kwargs) -> None:
        super().__init__([784, 300, 100, 10], bayesian, prior, **kwargs)


class LeNet500_300(MLP):
    """LeNet-500-300 for MNIST: 784-500-300-10."""

    def __init__(self, bayesian=None, prior: PriorSpec = "log-uniform", **kwargs) -> None:
        super().__init__([784, 500, 300, 10], bayesian, prior, **kwargs)


class ToyNet(MLP):
    """The VN §3.2 toy network: six dense layers, the fifth a 2-unit bottleneck.

    2 → hidden ×4 → 2 → classes. By default only the bottleneck ``fc5`` is Bayesian, so a
    zero-mean guide on it makes a variance bottleneck as in VN Fig. 1.
    """

    def __init__(
        self,
        hidden: int = 100,
        num_classes: int = 4,
        bayesian=("fc5",),
        prior: PriorSpec = "log-uniform",
        activation: str = "relu",
        **kwargs,
    ) -> None:
        sizes = [2, hidden, hidden, hidden, hidden, 2, num_classes]
        super().__init__(sizes, bayesian, prior, activation=activation, **kwargs)


class LeNet5(_Net):
    """LeNet-5-Caffe: conv 20 (5×5) → pool → conv 50 (5×5) → pool → fc 500 → fc 10.

    ``batchnorm=True`` adds the authors' BatchNorm layers after conv1, conv2 and fc1
    (as in the authors' code); their parameters are deterministic. ``activation="tanh", bias=False`` gives
    the anti-symmetric networks of VN appendix C.
    """

    layer_names = ("conv1", "conv2", "fc1", "fc2")

    def __init__(
        self,
        bayesian=None,
        prior: PriorSpec = "log-uniform",
        activation: str = "relu",
        bias: bool = True,
        batchnorm: bool = False,
        **prior_kwargs,
    ) -> None:
        super().__init__()
        self._setup(bayesian, prior, bias, **prior_kwargs)
        self.conv1 = self._conv("conv1", 1, 20, 5)
        self.conv2 = self._conv("conv2", 20, 50, 5)
        self.fc1 = self._dense("fc1", 800, 500)
        self.fc2 = self._dense("fc2", 500, 10)
        norm = (lambda cls, n: PyroModule[cls](n)) if batchnorm else (lambda cls, n: PyroModule[nn.Identity]())
        self.bn1, self.bn2, self.bn3 = norm(nn.BatchNorm2d, 20), norm(nn.BatchNorm2d, 50), norm(nn.BatchNorm1d, 500)
        self.act = _activation(activation)
        self.pool = PyroModule[nn.MaxPool2d](2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        h = self.pool(self.act(self.bn1(self.conv1(x))))
        h = self.pool(self.act(self.bn2(self.conv2(h))))
        h = self.act(self.bn3(self.fc1(h.flatten(1))))
        return self.fc2(h)


_VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGGLike(_Net):
    """The VGG-like CIFAR network of VN §6.1 (Zagoruyko 2015): 13 conv-BN-ReLU layers, fc 512 → classes.

    By default the last three convolutions and the first dense layer are Bayesian, as in
    the paper's variance VGG.
    """

    layer_names = tuple(f"conv{i}" for i in range(1, 14)) + ("fc1", "fc2")

    def __init__(
        self,
        num_classes: int = 10,
        bayesian=("conv11", "conv12", "conv13", "fc1"),
        prior: PriorSpec = "log-uniform",
        width: float = 1.0,
        **prior_kwargs,
    ) -> None:
        super().__init__()
        self._setup(bayesian, prior, True, **prior_kwargs)
        c_in, i, blocks = 3, 0, []
        for v in _VGG_CFG:
            if v == "M":
                blocks.append(PyroModule[nn.MaxPool2d](2))
                continue
            i, c_out = i + 1, max(1, int(v * width))
            setattr(self, f"conv{i}", self._conv(f"conv{i}", c_in, c_out, 3, padding=1))
            blocks += [f"conv{i}", PyroModule[nn.BatchNorm2d](c_out), PyroModule[nn.ReLU]()]
            c_in = c_out
        self.blocks = PyroModule[nn.ModuleList]([b for b in blocks if not isinstance(b, str)])
        self._order = blocks
        self.fc1 = self._dense("fc1", c_in, c_in)
        self.bn_fc = PyroModule[nn.BatchNorm1d](c_in)
        self.fc2 = self._dense("fc2", c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        modules = iter(self.blocks)
        for b in self._order:
            x = getattr(self, b)(x) if isinstance(b, str) else next(modules)(x)
        return self.fc2(torch.relu(self.bn_fc(self.fc1(x.flatten(1)))))
