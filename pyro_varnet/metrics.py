r"""Predictive metrics and how weight samples combine into a prediction.

Classification (predictions are log-probabilities, shape (N, classes)): :func:`accuracy`,
:func:`nll`, :func:`expected_calibration_error`, :func:`brier_score`, :func:`reliability`,
and the uncertainty split :math:`\mathcal{H}[\bar p] = \mathbb{E}_k\mathcal{H}[p_k] +
\mathrm{MI}` (total predictive entropy = expected entropy (aleatoric) + mutual information
(epistemic); Depeweg et al. 2018). Regression (predictions are
:class:`RegressionPrediction`, a mixture of Gaussians over weight samples): :func:`rmse`, the
mixture NLL and :func:`interval_coverage`.

Inputs are checked: NaN/inf or mis-shaped predictions and labels raise ``ValueError``
instead of returning a number.
"""

from __future__ import annotations

import math

import torch


def check_finite(t: torch.Tensor, what: str) -> torch.Tensor:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} contain NaN or inf")
    return t


def check_logits(out: torch.Tensor, user_model: bool = False) -> torch.Tensor:
    """Outputs of K weight samples, shape (N, K, classes), that can be read as logits (classes >= 2)."""
    if out.dim() != 3 or out.shape[-1] < 2:
        shape = tuple(out.shape[:1] + out.shape[2:])  # one sample's output
        hint = (
            " (predict reads a model that is not a Classifier/Regressor/BinaryClassifier as returning "
            "logits; wrap your network in one of them)"
            if user_model
            else ""
        )
        raise ValueError(f"expected logits of shape (N, classes >= 2), got {shape}{hint}")
    return out


def check_labels(y: torch.Tensor, num_classes: int | None = None, what: str = "labels") -> torch.Tensor:
    """Integer class labels of shape (N,), within ``[0, num_classes)`` when given."""
    if y.dtype == torch.bool or torch.is_floating_point(y) or torch.is_complex(y):
        raise TypeError(f"expected integer {what}, got {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"expected {what} of shape (N,), got {tuple(y.shape)}")
    if (
        y.numel()
        and y.device.type != "meta"
        and (int(y.min()) < 0 or (num_classes is not None and int(y.max()) >= num_classes))
    ):
        bound = "" if num_classes is None else f" below {num_classes}"
        raise ValueError(f"expected {what} >= 0{bound}, got values in [{int(y.min())}, {int(y.max())}]")
    return y


def _check_pair(log_probs: torch.Tensor, y: torch.Tensor) -> None:
    if log_probs.dim() != 2:
        raise ValueError(f"expected log-probabilities of shape (N, classes), got {tuple(log_probs.shape)}")
    if bool((torch.isnan(log_probs) | (log_probs == math.inf)).any()):  # -inf (p = 0) is allowed
        raise ValueError("log-probabilities contain NaN or +inf")
    check_labels(y, log_probs.shape[-1])
    if y.shape[0] != log_probs.shape[0]:
        raise ValueError(f"{log_probs.shape[0]} predictions but {y.shape[0]} labels")


def accuracy(log_probs: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of argmax predictions equal to ``y``."""
    _check_pair(log_probs, y)
    return float((log_probs.argmax(-1) == y).float().mean())


def nll(log_probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood of ``y`` under the predictive distribution."""
    _check_pair(log_probs, y)
    return float(-log_probs.gather(-1, y[:, None]).mean())


def brier_score(log_probs: torch.Tensor, y: torch.Tensor) -> float:
    r"""Mean over objects of :math:`\sum_c (p_c - [y = c])^2` (Brier 1950; 0 is perfect, 2 the worst)."""
    _check_pair(log_probs, y)
    p = log_probs.exp()
    onehot = torch.zeros_like(p).scatter_(-1, y[:, None], 1.0)
    return float((p - onehot).square().sum(-1).mean())


def reliability(log_probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> dict[str, torch.Tensor]:
    """Per equal-width confidence bin over [0, 1]: ``count``, mean ``confidence`` and
    ``accuracy`` (NaN in empty bins) — the data of a reliability diagram."""
    _check_pair(log_probs, y)
    if bins < 1:
        raise ValueError(f"expected bins >= 1, got {bins}")
    conf, pred = log_probs.exp().max(-1)
    conf, correct = conf.double().cpu(), (pred == y).double().cpu()
    idx = (conf * bins).long().clamp_(0, bins - 1)  # bin b holds (b/B, (b+1)/B]; conf = 1 in the last
    idx = torch.where(conf == idx.double() / bins, (idx - 1).clamp_min(0), idx)
    count = torch.bincount(idx, minlength=bins).double()
    conf_sum = torch.bincount(idx, conf, minlength=bins)
    acc_sum = torch.bincount(idx, correct, minlength=bins)
    return {"count": count, "confidence": conf_sum / count, "accuracy": acc_sum / count}


def expected_calibration_error(log_probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    r""":math:`\mathrm{ECE} = \sum_b \frac{n_b}{N}\,\lvert \mathrm{acc}_b - \mathrm{conf}_b\rvert` over
    ``bins`` equal-width bins of the top-class confidence (Guo et al. 2017, eq. 3)."""
    r = reliability(log_probs, y, bins)
    keep = r["count"] > 0
    gap = (r["accuracy"][keep] - r["confidence"][keep]).abs()
    return float((r["count"][keep] * gap).sum() / r["count"].sum())


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    r""":math:`-\sum_c p_c \log p_c` per object (0·log 0 = 0)."""
    return -(log_probs.exp() * log_probs.clamp_min(torch.finfo(log_probs.dtype).min)).sum(-1)


def classification_metrics(log_probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """``acc``, ``nll``, ``ece`` (``bins`` equal-width bins) and ``brier``."""
    return {
        "acc": accuracy(log_probs, y),
        "nll": nll(log_probs, y),
        "ece": expected_calibration_error(log_probs, y, bins),
        "brier": brier_score(log_probs, y),
    }


# --- regression --------------------------------------------------------------------------


class RegressionPrediction:
    r"""A predictive mixture :math:`\frac1K\sum_k \mathcal{N}(y \mid \mu_k(x), \sigma_k(x)^2)` over K
    weight samples (K = 1 for mean propagation or one sample), per object and output column.

    :param torch.Tensor loc: means, shape (K, N, D). :param torch.Tensor scale: standard deviations.
    :param bool scalar: targets are (N,) (D = 1): ``mean``, ``stddev`` and intervals are then (N,).
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, scalar: bool = True) -> None:
        if loc.shape != scale.shape or loc.dim() != 3:
            raise ValueError(f"expected loc and scale of the same shape (K, N, D), got {loc.shape}, {scale.shape}")
        self.loc, self.scale, self.scalar = loc, scale, scalar and loc.shape[-1] == 1

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        return t.squeeze(-1) if self.scalar else t

    @property
    def num_samples(self) -> int:
        return self.loc.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        """Predictive mean: the average of the components' means."""
        return self._out(self.loc.mean(0))

    @property
    def variance(self) -> torch.Tensor:
        r"""Predictive variance :math:`\mathbb{E}_k[\sigma_k^2] + \mathrm{Var}_k[\mu_k]` (noise + weights)."""
        return self._out(self.scale.square().mean(0) + self.loc.var(0, unbiased=False))

    @property
    def stddev(self) -> torch.Tensor:
        return self.variance.sqrt()

    @property
    def epistemic_variance(self) -> torch.Tensor:
        r""":math:`\mathrm{Var}_k[\mu_k]`, the part of the variance due to the weights."""
        return self._out(self.loc.var(0, unbiased=False))

    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        y = y.to(self.loc.dtype)
        y = y[:, None] if y.dim() == 1 else y
        if y.shape != self.loc.shape[1:]:
            raise ValueError(f"expected targets of shape {tuple(self.mean.shape)}, got {tuple(y.shape)}")
        return check_finite(y, "targets")

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        """Log density of the mixture at ``y``, per object (summed over output columns)."""
        y = self._targets(y)
        comp = torch.distributions.Normal(self.loc, self.scale).log_prob(y).sum(-1)  # (K, N)
        return comp.logsumexp(0) - math.log(self.num_samples)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """Mixture CDF per object and column at ``value`` of shape (N, D)."""
        return torch.distributions.Normal(self.loc, self.scale).cdf(value).mean(0)

    def quantile(self, q: float, iterations: int = 60) -> torch.Tensor:
        """The ``q``-quantile per object and column, by bisection on the mixture CDF."""
        if not 0 < q < 1:
            raise ValueError(f"expected 0 < q < 1, got {q}")
        z = abs(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(max(q, 1 - q)))).item()
        lo = (self.loc - (z + 1) * self.scale).min(0).values
        hi = (self.loc + (z + 1) * self.scale).max(0).values
        for _ in range(iterations):  # the bracket halves each time: 2^-60 of its width
            mid = (lo + hi) / 2
            below = self.cdf(mid) < q
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return self._out((lo + hi) / 2)

    def interval(self, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The central interval holding ``level`` of the predictive mass."""
        if not 0 < level < 1:
            raise ValueError(f"expected 0 < level < 1, got {level}")
        return self.quantile((1 - level) / 2), self.quantile((1 + level) / 2)


def rmse(prediction: RegressionPrediction, y: torch.Tensor) -> float:
    """Root mean squared error of the predictive mean against ``y``."""
    y = prediction._targets(y)
    return float((prediction.loc.mean(0) - y).square().mean().sqrt())


def interval_coverage(prediction: RegressionPrediction, y: torch.Tensor, level: float) -> float:
    """Fraction of targets (all objects and columns) inside the central ``level`` interval."""
    y = prediction._targets(y)
    lo, hi = prediction.interval(level)
    if prediction.scalar:
        lo, hi = lo[:, None], hi[:, None]
    return float(((y >= lo) & (y <= hi)).double().mean())


def regression_metrics(prediction: RegressionPrediction, y: torch.Tensor) -> dict[str, float]:
    """``rmse``, ``nll`` (mean over objects of the mixture's negative log density), ``cov50``, ``cov90``."""
    return {
        "rmse": rmse(prediction, y),
        "nll": float(-prediction.log_prob(y).mean()),
        "cov50": interval_coverage(prediction, y, 0.5),
        "cov90": interval_coverage(prediction, y, 0.9),
    }


# --- combining weight samples ---------------------------------------------------------------


class Reducer:
    """Combines per-sample predictions, given in chunks of shape (N, k, ...), into one prediction."""

    def add(self, parts: torch.Tensor) -> None:
        raise NotImplementedError

    def result(self):
        raise NotImplementedError


class LogMeanExp(Reducer):
    r"""Classifiers: :math:`\log \frac1K \sum_k p_k(y \mid x)` (test-time averaging, VN eq. 2), from
    per-sample log-probabilities; also keeps :math:`\sum_k \mathcal{H}[p_k]` for :meth:`uncertainty`."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.entropy_sum: torch.Tensor | None = None
        self.count = 0

    def add(self, parts: torch.Tensor) -> None:
        part, ent = parts.logsumexp(1), entropy(parts).sum(1)
        if self.total is None:
            self.total, self.entropy_sum = part, ent
        else:
            self.total, self.entropy_sum = torch.logaddexp(self.total, part), self.entropy_sum + ent
        self.count += parts.shape[1]

    def result(self) -> torch.Tensor:
        return self.total - math.log(self.count)

    def uncertainty(self) -> dict[str, torch.Tensor]:
        """Per object: ``entropy`` of the averaged prediction (total), ``expected_entropy``
        (aleatoric) and ``mutual_information`` = their difference (epistemic, >= 0)."""
        total = entropy(self.result())
        expected = self.entropy_sum / self.count
        return {"entropy": total, "expected_entropy": expected, "mutual_information": (total - expected).clamp_min(0)}


class StackSamples(Reducer):
    """Regressors: keeps every sample's (loc, scale) and returns a :class:`RegressionPrediction`."""

    def __init__(self, scalar: bool = True) -> None:
        self.parts: list[torch.Tensor] = []
        self.scalar = scalar

    def add(self, parts: torch.Tensor) -> None:  # (N, k, D, 2)
        self.parts.append(parts)

    def result(self) -> RegressionPrediction:
        stacked = torch.cat(self.parts, 1).movedim(1, 0)  # (K, N, D, 2)
        return RegressionPrediction(stacked[..., 0], stacked[..., 1], self.scalar)
