"""Builders shared by several test modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pyro_varnet.guides import make_family

FAMILY_NAMES = ("zero-mean", "layer", "neuron", "weight", "additive")  # the Gaussian families (VN eq. 14)
SHAPES = {"linear": (3, 4), "conv2d": (3, 2, 3, 3)}


def random_site(family: str, op: str, seed: int = 0):
    """A site guide of ``family`` for an ``op`` weight, with parameters moved away from their
    initial values so that means and variances are both of order one."""
    torch.manual_seed(seed)
    site = make_family(family).build(torch.Size(SHAPES[op]))
    with torch.no_grad():
        for name, p in site.named_parameters():
            if name.startswith("log"):
                p.uniform_(-1.5, 0.5)
            else:
                p.normal_()
    return site


def random_input(op: str, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 4) if op == "linear" else torch.randn(batch, 2, 5, 5)


def batched_op(op: str, x: torch.Tensor, weights: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``op(x, weights[k], bias)`` for every k at once: shape (K, *op(x).shape)."""
    if op == "linear":
        out = torch.einsum("bi,koi->kbo", x, weights)
        return out if bias is None else out + bias
    k, c_out = weights.shape[:2]
    h_out = x.shape[-2] - weights.shape[-2] + 1
    w_out = x.shape[-1] - weights.shape[-1] + 1
    patches = F.unfold(x, weights.shape[-2:])  # (B, C*kh*kw, L)
    out = torch.einsum("kcp,bpl->kbcl", weights.reshape(k, c_out, -1), patches)
    out = out.reshape(k, x.shape[0], c_out, h_out, w_out)
    return out if bias is None else out + bias[:, None, None]


def plain_op(op: str):
    return F.linear if op == "linear" else F.conv2d
