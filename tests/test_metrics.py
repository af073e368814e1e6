"""Predictive metrics against hand computations on small arrays."""

import math

import pytest
import torch

from pyro_varnet import metrics as M

# three objects, two classes: confidences 0.9 (right), 0.6 (wrong), 0.8 (right)
PROBS = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]], dtype=torch.float64)
Y = torch.tensor([0, 0, 1])


def test_accuracy_nll_brier_by_hand():
    lp = PROBS.log()
    assert M.accuracy(lp, Y) == pytest.approx(2 / 3)
    assert M.nll(lp, Y) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.8)) / 3)
    # Brier: sum over classes of (p - onehot)^2, averaged over objects
    hand = ((0.1**2 + 0.1**2) + (0.6**2 + 0.6**2) + (0.2**2 + 0.2**2)) / 3
    assert M.brier_score(lp, Y) == pytest.approx(hand)


def test_ece_by_hand():
    lp = PROBS.log()
    # 15 equal-width bins: 0.9 -> bin (0.867, 0.933], 0.6 -> (0.533, 0.6], 0.8 -> (0.733, 0.8]
    # each bin holds one object: |acc - conf| = 0.1, 0.6, 0.2, weighted 1/3 each
    assert M.expected_calibration_error(lp, Y, bins=15) == pytest.approx((0.1 + 0.6 + 0.2) / 3)
    # one bin: |mean acc - mean conf| = |2/3 - 0.7667|
    assert M.expected_calibration_error(lp, Y, bins=1) == pytest.approx(abs(2 / 3 - (0.9 + 0.6 + 0.8) / 3))
    r = M.reliability(lp, Y, bins=5)  # bins of width 0.2: 0.6 -> (0.4, 0.6], 0.8 -> (0.6, 0.8], 0.9 -> (0.8, 1]
    assert r["count"].tolist() == [0, 0, 1, 1, 1]
    assert r["confidence"][2:].tolist() == pytest.approx([0.6, 0.8, 0.9])
    assert r["accuracy"][2:].tolist() == [0.0, 1.0, 1.0]
    assert torch.isnan(r["accuracy"][:2]).all()  # empty bins


def test_entropy_and_mutual_information_by_hand():
    # two weight samples of one object: p1 = (1, 0), p2 = (0, 1): each certain, the average is 50/50,
    # so all the entropy is epistemic: H[mean] = log 2, E H = 0, MI = log 2
    parts = torch.tensor([[[0.0, -math.inf], [-math.inf, 0.0]]], dtype=torch.float64)
    r = M.LogMeanExp()
    r.add(parts)
    u = r.uncertainty()
    assert u["entropy"].item() == pytest.approx(math.log(2))
    assert u["expected_entropy"].item() == pytest.approx(0.0)
    assert u["mutual_information"].item() == pytest.approx(math.log(2))
    # two identical 70/30 samples: no disagreement, MI = 0, entropy = aleatoric
    same = torch.tensor([[0.7, 0.3], [0.7, 0.3]], dtype=torch.float64).log()[None]
    r = M.LogMeanExp()
    r.add(same[:, :1])
    r.add(same[:, 1:])  # added in two chunks: the same as at once
    h = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))
    u = r.uncertainty()
    assert u["entropy"].item() == pytest.approx(h) and u["expected_entropy"].item() == pytest.approx(h)
    assert u["mutual_information"].item() == pytest.approx(0.0, abs=1e-12)
    assert r.result().exp().squeeze().tolist() == pytest.approx([0.7, 0.3])


def test_regression_mixture_moments_quantiles_and_coverage():
    # two equally weighted components N(-1, 0.5^2) and N(1, 0.5^2) for one object
    loc = torch.tensor([[[-1.0]], [[1.0]]], dtype=torch.float64)
    scale = torch.full_like(loc, 0.5)
    p = M.RegressionPrediction(loc, scale)
    assert p.mean.item() == pytest.approx(0.0)
    assert p.variance.item() == pytest.approx(0.25 + 1.0)  # noise + spread of the means
    assert p.epistemic_variance.item() == pytest.approx(1.0)

    def density(v):
        return math.exp(-0.5 * (v / 0.5) ** 2) / (0.5 * math.sqrt(2 * math.pi))

    hand = math.log(0.5 * density(0.3 + 1) + 0.5 * density(0.3 - 1))
    assert p.log_prob(torch.tensor([0.3])).item() == pytest.approx(hand)
    lo, hi = p.interval(0.9)  # symmetric mixture: the 5 % and 95 % quantiles
    assert p.cdf(hi[:, None]).item() == pytest.approx(0.95, abs=1e-9) and lo.item() == pytest.approx(-hi.item())
    y = torch.tensor([0.0, 10.0])
    p2 = M.RegressionPrediction(loc.expand(2, 2, 1), scale.expand(2, 2, 1))
    assert M.interval_coverage(p2, y, 0.9) == 0.5
    assert M.rmse(p2, y) == pytest.approx(math.sqrt(50))


def test_bad_inputs_raise_instead_of_returning_a_number():
    lp = PROBS.log()
    with pytest.raises(ValueError, match="NaN"):
        M.accuracy(torch.full((3, 2), math.nan), Y)
    with pytest.raises(ValueError, match="shape"):
        M.accuracy(lp[:, 0], Y)
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        M.nll(lp, Y[:2])
    with pytest.raises(TypeError, match="integer labels"):
        M.accuracy(lp, Y.bool())
    with pytest.raises(ValueError, match="below 2"):
        M.accuracy(lp, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="NaN or inf"):
        M.rmse(M.RegressionPrediction(torch.zeros(1, 2, 1), torch.ones(1, 2, 1)), torch.tensor([0.0, math.nan]))
