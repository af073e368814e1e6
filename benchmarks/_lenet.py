"""Hand-written PyTorch LeNet-5s for the benchmarks: the paper-code style LRT net and a plain one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pyro_varnet.distributions import kl_log_uniform

SHAPES = {"conv1": (20, 1, 5, 5), "conv2": (50, 20, 5, 5), "fc1": (500, 800), "fc2": (10, 500)}


def _init(shape):
    bound = 1 / math.sqrt(math.prod(shape[1:]))
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class DeterministicLeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.ParameterDict({k: _init(s) for k, s in SHAPES.items()})
        self.b = nn.ParameterDict({k: nn.Parameter(torch.zeros(s[0])) for k, s in SHAPES.items()})

    def forward(self, x):
        h = F.max_pool2d(F.relu(F.conv2d(x, self.w["conv1"], self.b["conv1"])), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, self.w["conv2"], self.b["conv2"])), 2)
        h = F.relu(F.linear(h.flatten(1), self.w["fc1"], self.b["fc1"]))
        return F.linear(h, self.w["fc2"], self.b["fc2"])


class HandLRTLeNet5(DeterministicLeNet5):
    """Layer-wise Gaussian dropout LeNet-5 with local reparameterization, written the way the
    authors' PyTorch code is: a mean op, a variance op and noise per layer (VN eq. 39, 41)."""

    def __init__(self, init_log_alpha=-5.0):
        super().__init__()
        self.log_alpha = nn.ParameterDict({k: nn.Parameter(torch.tensor(init_log_alpha)) for k in SHAPES})

    def _lrt(self, op, x, name):
        w, la = self.w[name], self.log_alpha[name]
        mean = op(x, w, self.b[name])
        var = op(x * x, la.exp() * w * w, None)
        return mean + (var + 1e-16).sqrt() * torch.randn_like(var)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self._lrt(F.conv2d, x, "conv1")), 2)
        h = F.max_pool2d(F.relu(self._lrt(F.conv2d, h, "conv2")), 2)
        h = F.relu(self._lrt(F.linear, h.flatten(1), "fc1"))
        return self._lrt(F.linear, h, "fc2")

    def kl(self):
        return sum(kl_log_uniform(self.log_alpha[k]) * self.w[k].numel() for k in SHAPES)
