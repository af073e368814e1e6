"""Flipout: per-object output moments equal direct per-object weight sampling; copies decorrelate."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_varnet import ops
from pyro_varnet.poutine import flipout
from tests.common import assert_within_se
from tests.helpers import plain_op

M = 4000  # independent mini-batches (weight draws)
OPS = {"linear": ops.linear, "conv2d": ops.conv2d}


def _q(kind, shape):
    torch.manual_seed(0)
    if kind == "uniform":  # a uniform variance layer: w = theta * U(-1, 1) (VN §3.3)
        theta = torch.rand(shape) + 0.2
        return dist.Uniform(-theta, theta), torch.zeros(shape), theta.square() / 3
    loc, scale = torch.randn(shape), torch.rand(shape) + 0.3
    return dist.Normal(loc, scale), loc, scale.square()


@pytest.mark.parametrize("op", ["linear", "conv2d"])
@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_flipout_moments_match_direct_sampling(kind, op):
    shape = (3, 4) if op == "linear" else (3, 2, 3, 3)
    q, mean_w, var_w = _q(kind, shape)
    x = torch.randn(2, 4) if op == "linear" else torch.randn(2, 2, 5, 5)
    outs = []
    with torch.no_grad():
        for _ in range(M):
            with flipout():
                w = pyro.sample("w", q.to_event(len(shape)))
                outs.append(OPS[op](x, w))
    outs = torch.stack(outs)
    mean = plain_op(op)(x, mean_w)
    var = plain_op(op)(x.square(), var_w)
    assert_within_se(outs.mean(0), mean, (var / M).sqrt(), msg="flipout mean")
    # Var of a sample variance: (m4 - var^2 (M-3)/(M-1)) / M; m4 estimated from the draws
    m4 = (outs - outs.mean(0)).pow(4).mean(0)
    assert_within_se(outs.var(0), var, ((m4 - var.square() * (M - 3) / (M - 1)) / M).sqrt(), msg="flipout var")


def test_flipout_decorrelates_copies_within_a_batch():
    q, _, _ = _q("uniform", (3, 4))
    x = torch.randn(1, 4).repeat(2, 1)  # two copies of one object share the weight draw
    pairs = []
    with torch.no_grad():
        for _ in range(M):
            with flipout():
                pairs.append(ops.linear(x, pyro.sample("w", q.to_event(2))))
            plain = ops.linear(x, pyro.sample("w", q.to_event(2)))
    pairs = torch.stack(pairs)  # (M, 2, 3)
    assert torch.equal(plain[0], plain[1])  # without flipout the copies are identical
    corr = torch.stack([torch.corrcoef(pairs[:, :, j].T)[0, 1] for j in range(3)])
    assert (corr.abs() < 5 / math.sqrt(M)).all(), corr  # 5 SE of a zero correlation
