r"""Targeted iterative fast-gradient-sign attacks on stochastic networks (VN §6.3, Fig. 7).

A trained ``(model, guide)`` becomes a differentiable :class:`torch.nn.Module` that returns
log predictive probabilities (:class:`PredictiveNet`); for a stochastic network each call
averages the softmax over fresh weight draws, so the attacker's gradient is that of the
expected prediction (expectation over transformation, EOT) and robustness cannot come from
noisy gradients alone. The attack steps are torchattacks' FGSM in targeted mode, applied
iteratively with a fixed step and no projection, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import torch
import torchattacks
from pyro import poutine
from torch import nn

from .._checks import check_choice
from ..poutine import mean_propagation


class PredictiveNet(nn.Module):
    r"""Log predictive probabilities of a trained model as a torch module.

    :param str mode: ``"ensemble"`` — :math:`\log\frac1K\sum_k \mathrm{softmax} f(x, W_k)` with
        K fresh weight draws per call (EOT gradients); ``"sample"`` — one fresh draw per call;
        ``"mean"`` — mean propagation (deterministic).
    :param int num_samples: K.
    :param dict param_state: a Pyro param-store scope (``ParamStoreDict.scope``) holding this
        model's parameters, so that several trained networks of one architecture (whose
        parameter names coincide) can be attacked side by side.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        mode: str = "ensemble",
        num_samples: int = 10,
        param_state: dict | None = None,
    ) -> None:
        super().__init__()
        self.param_state = param_state
        check_choice("prediction mode", mode, ("ensemble", "sample", "mean"))
        if num_samples < 1:
            raise ValueError(f"expected num_samples >= 1, got {num_samples}")
        self.model, self.guide = model, guide
        self.mode, self.num_samples = mode, num_samples if mode == "ensemble" else 1

    def _draw(self, x: torch.Tensor) -> torch.Tensor:
        trace = poutine.trace(self.guide).get_trace(x[:1])
        return torch.log_softmax(poutine.replay(self.model, trace=trace)(x), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.param_state is None:
            return self._forward(x)
        with pyro.get_param_store().scope(self.param_state):
            return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "mean":
            with mean_propagation():
                return self._draw(x)
        lps = torch.stack([self._draw(x) for _ in range(self.num_samples)])
        return torch.logsumexp(lps, 0) - math.log(self.num_samples)


class DeepEnsemble(nn.Module):
    """Average of the predictive probabilities of several networks (Lakshminarayanan et al. 2017)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("a deep ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lps = torch.stack([torch.log_softmax(m(x), -1) for m in self.members])
        return torch.logsumexp(lps, 0) - math.log(len(self.members))


def random_targets(y: torch.Tensor, num_classes: int = 10, seed: int = 0) -> torch.Tensor:
    """A target class different from the true one for every object, uniformly, seeded."""
    g = torch.Generator().manual_seed(seed)
    return (y + 1 + torch.randint(0, num_classes - 1, y.shape, generator=g)) % num_classes


def attack_success_curve(
    net: nn.Module, x: torch.Tensor, targets: torch.Tensor, steps: int = 20, step_size: float = 0.01
) -> list[float]:
    r"""Targeted iterative FGSM, :math:`x_{t+1} = \mathrm{clip}_{[0,1]}(x_t - \epsilon\,\mathrm{sign}\nabla_x
    \mathrm{CE}(\mathrm{net}(x_t), \mathrm{target}))`; returns the fraction of objects that ``net``
    classifies as their target after each of ``steps`` iterations (VN Fig. 7).

    ``net`` must return logits or log-probabilities; it is put in eval mode (BatchNorm).
    """
    if steps < 1 or not step_size > 0:
        raise ValueError(f"expected steps >= 1 and step_size > 0, got {steps}, {step_size}")
    if not torch.isfinite(x).all():
        raise ValueError("inputs contain NaN or inf")
    net.eval()
    fgsm = torchattacks.FGSM(net, eps=step_size)
    fgsm.set_mode_targeted_by_label(quiet=True)
    rates, adv = [], x.clone()
    for _ in range(steps):
        adv = fgsm(adv, targets)
        with torch.no_grad():
            rates.append(float((net(adv).argmax(-1) == targets).float().mean()))
    return rates
