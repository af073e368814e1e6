r"""Likelihoods: a network wrapped with :math:`p(T \mid X, W)`, scaled to the full data set.

Each likelihood is a :class:`~pyro.nn.PyroModule` model ``model(x, y=None)`` that runs its
network, observes ``y`` under ``pyro.plate("data", num_data, subsample=...)`` — so a
mini-batch's log-likelihood is scaled by ``num_data / batch_size`` and the ELBO is that of
the whole training set (VN eq. 5) — and returns the network's raw output. It also knows how
to turn raw outputs into predictions and which metrics suit them, so that
:func:`~pyro_varnet.infer.predict`, :func:`~pyro_varnet.infer.evaluate`,
:func:`~pyro_varnet.infer.fit` and the reports dispatch on it:

* :class:`Classifier` — Categorical over logits; predictions are log-probabilities.
* :class:`BinaryClassifier` — Bernoulli over one logit; predictions are log-probabilities of
  the classes (0, 1).
* :class:`Regressor` — Normal with homoscedastic learned noise (default), fixed noise, or
  heteroscedastic noise from a second set of outputs; predictions are Gaussian mixtures over
  weight samples (:class:`~pyro_varnet.metrics.RegressionPrediction`).

No check in ``forward`` forces a host-device synchronisation (NaN/inf inputs are checked by
``fit`` once per data set or per host batch, and by ``predict``).
"""

from __future__ import annotations

import math
import numbers
import operator

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, PyroParam
from torch import nn
from torch.distributions import constraints

from pyro_varnet import metrics as M


def _num_data(num_data) -> int:
    if isinstance(num_data, bool) or not isinstance(num_data, numbers.Integral | torch.Tensor):
        raise ValueError(f"expected num_data to be a positive integer, got {num_data!r}")
    try:
        n = operator.index(num_data)
    except TypeError as e:  # a float tensor
        raise ValueError(f"expected num_data to be a positive integer, got {num_data!r}") from e
    if n <= 0:
        raise ValueError(f"expected num_data to be a positive integer, got {num_data!r}")
    return n


class Likelihood(PyroModule):
    """Base of the likelihood models: the plate, the observation site and input checks.

    Subclasses define :meth:`distribution` (p(y | output) per object), :meth:`predictive_parts`
    (what one weight sample predicts), :meth:`reducer` (how samples combine) and
    :meth:`metrics`.

    :param torch.nn.Module net: the network (usually a :class:`~pyro.nn.PyroModule`).
    :param int num_data: size of the training set N (any integral).
    """

    def __init__(self, net: nn.Module, num_data: int) -> None:
        super().__init__()
        self.net, self.num_data = net, _num_data(num_data)

    def _check(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        if not torch.is_floating_point(x):
            raise TypeError(f"expected floating point inputs, got {x.dtype}")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x, y)
        out = self.net(x)
        # the plate runs over the rows of the output, which are x's rows except under
        # stacked_weights(num_objects=...), where each object fans out to K rows
        with pyro.plate("data", self.num_data, subsample=torch.arange(out.shape[0], device=out.device)):
            self._observe(out, y)
        return out

    def _observe(self, out: torch.Tensor, y: torch.Tensor | None) -> None:
        pyro.sample("obs", self.distribution(out), obs=y)

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        raise NotImplementedError

    def predictive_parts(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reducer(self) -> M.Reducer:
        raise NotImplementedError

    def metrics(self, prediction, y: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def check_targets(self, y: torch.Tensor) -> None:
        """Raise a clear error for targets this likelihood cannot observe (checked by ``fit``)."""

    def check_outputs(self, out: torch.Tensor, y: torch.Tensor, what: str = "targets") -> None:
        """Raise a clear error if targets ``y`` do not fit the network's outputs ``out`` (e.g. a
        label beyond the number of classes); ``fit`` checks this before its first step."""


class Classifier(Likelihood):
    r"""Categorical likelihood :math:`p(T \mid X, W)` for a network returning logits (N, classes).

    The logits are also recorded as the deterministic site ``"logits"``. Predictions are
    log-probabilities (N, classes); metrics: accuracy, NLL, expected calibration error (15
    equal-width bins) and Brier score.
    """

    def _check(self, x, y) -> None:
        super()._check(x, y)
        if y is not None and y.shape != x.shape[:1]:
            raise ValueError(f"expected labels of shape {tuple(x.shape[:1])}, got {tuple(y.shape)}")

    def _observe(self, out, y) -> None:
        pyro.deterministic("logits", out, event_dim=1)
        super()._observe(out, y)

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        return dist.Categorical(logits=out)

    def predictive_parts(self, out: torch.Tensor) -> torch.Tensor:
        """(N, K, classes) logits of K weight samples -> log-probabilities."""
        return M.check_logits(out).log_softmax(-1)

    def log_lik(self, prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pointwise predictive log-likelihood of ``y``, shape (N,)."""
        return prediction.gather(-1, y.long()[:, None]).squeeze(-1)

    def reducer(self) -> M.Reducer:
        return M.LogMeanExp()

    def metrics(self, prediction: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return M.classification_metrics(prediction, y)

    def check_targets(self, y: torch.Tensor) -> None:
        M.check_labels(y)

    def check_outputs(self, out: torch.Tensor, y: torch.Tensor, what: str = "labels") -> None:
        M.check_labels(y, out.shape[-1], what)


class BinaryClassifier(Classifier):
    r"""Bernoulli likelihood for a network returning one logit per object, shape (N,) or (N, 1).

    Targets are 0/1 (float or integer). Predictions are log-probabilities of the classes
    (0, 1), shape (N, 2), so that every classification metric applies.
    """

    @staticmethod
    def _logit(out: torch.Tensor) -> torch.Tensor:
        if out.dim() == 2 and out.shape[-1] == 1:
            out = out.squeeze(-1)
        if out.dim() != 1:
            raise ValueError(f"expected one logit per object, shape (N,) or (N, 1), got {tuple(out.shape)}")
        return out

    def _observe(self, out, y) -> None:
        logit = self._logit(out)
        pyro.deterministic("logits", logit)
        pyro.sample("obs", dist.Bernoulli(logits=logit), obs=None if y is None else y.to(logit.dtype))

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        return dist.Bernoulli(logits=self._logit(out))

    def predictive_parts(self, out: torch.Tensor) -> torch.Tensor:
        """(N, K) or (N, K, 1) logits of K weight samples -> log-probabilities (N, K, 2)."""
        logit = out.squeeze(-1) if out.dim() == 3 and out.shape[-1] == 1 else out
        if logit.dim() != 2:
            raise ValueError(
                f"expected one logit per object, got outputs of shape {tuple(out.shape[:1] + out.shape[2:])}"
            )
        return torch.stack([F.logsigmoid(-logit), F.logsigmoid(logit)], -1)

    def check_outputs(self, out: torch.Tensor, y: torch.Tensor, what: str = "targets") -> None:
        pass  # 0/1 is checked by check_targets

    def check_targets(self, y: torch.Tensor) -> None:
        M.check_labels(y.long() if torch.is_floating_point(y) else y, num_classes=2, what="binary targets")
        if torch.is_floating_point(y) and not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("expected binary targets of 0 and 1")


class Regressor(Likelihood):
    r"""Normal likelihood :math:`y \sim \mathcal{N}(f(x, W), \sigma^2)`.

    :param noise: ``"learned"`` (default) — one σ for all objects (per output column),
        learned as a deterministic parameter (type-II maximum likelihood, like ARD's λ);
        a positive number — σ fixed; ``"heteroscedastic"`` — the network returns 2·D columns,
        the means and the pre-softplus scales: :math:`\sigma(x) = \mathrm{softplus}(s(x)) +
        \sigma_{\min}`.
    :param float init_noise: initial σ for ``"learned"``.
    :param float min_noise: :math:`\sigma_{\min}` for ``"heteroscedastic"``.

    Targets have shape (N,) when the network predicts one column of means, else (N, D).
    Predictions are :class:`~pyro_varnet.metrics.RegressionPrediction` (a mixture of
    Gaussians over weight samples, with mean, standard deviation, NLL and central intervals);
    metrics: RMSE, NLL and the coverage of the central 50 % and 90 % intervals.
    """

    def __init__(
        self,
        net: nn.Module,
        num_data: int,
        noise: str | float = "learned",
        init_noise: float = 1.0,
        min_noise: float = 1e-3,
    ) -> None:
        super().__init__(net, num_data)
        if isinstance(noise, str):
            if noise not in ("learned", "heteroscedastic"):
                raise ValueError(f"expected noise 'learned', 'heteroscedastic' or a positive number, got {noise!r}")
        elif not (isinstance(noise, numbers.Real) and noise > 0 and math.isfinite(noise)):
            raise ValueError(f"expected noise 'learned', 'heteroscedastic' or a positive number, got {noise!r}")
        if not (init_noise > 0 and min_noise >= 0):
            raise ValueError(f"expected init_noise > 0 and min_noise >= 0, got {init_noise}, {min_noise}")
        self.noise, self.min_noise = noise, float(min_noise)
        if noise == "learned":
            self.noise_scale = PyroParam(torch.tensor(float(init_noise)), constraints.positive)
        elif noise != "heteroscedastic":
            self.register_buffer("noise_scale", torch.tensor(float(noise)))

    def loc_scale(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and standard deviations (N, D) of p(y | x, W) from the network's output."""
        if out.dim() < 2:
            raise ValueError(f"expected network outputs of shape (N, D), got {tuple(out.shape)}")
        if self.noise == "heteroscedastic":
            if out.shape[-1] % 2:
                raise ValueError(f"a heteroscedastic Regressor needs 2·D outputs (means, scales), got {out.shape[-1]}")
            loc, raw = out.chunk(2, -1)
            return loc, F.softplus(raw) + self.min_noise
        return out, self.noise_scale.expand_as(out)

    def distribution(self, out: torch.Tensor) -> dist.Distribution:
        loc, scale = self.loc_scale(out)
        if loc.shape[-1] == 1:
            return dist.Normal(loc.squeeze(-1), scale.squeeze(-1))
        return dist.Normal(loc, scale).to_event(1)

    def _check(self, x, y) -> None:
        super()._check(x, y)
        if y is not None and (y.shape[0] != x.shape[0] or y.dim() > 2):
            raise ValueError(f"expected targets of shape ({x.shape[0]},) or ({x.shape[0]}, D), got {tuple(y.shape)}")

    def _observe(self, out, y) -> None:
        if y is not None and y.dim() == 2 and y.shape[-1] == 1:
            y = y.squeeze(-1)
        super()._observe(out, y)

    def predictive_parts(self, out: torch.Tensor) -> torch.Tensor:
        """(N, K, D) outputs of K weight samples -> their (loc, scale), shape (N, K, D, 2)."""
        loc, scale = self.loc_scale(out)
        return torch.stack([loc, scale], -1)

    def reducer(self) -> M.Reducer:
        return M.StackSamples()

    def log_lik(self, prediction: M.RegressionPrediction, y: torch.Tensor) -> torch.Tensor:
        """Pointwise predictive log-density of ``y``, shape (N,)."""
        return prediction.log_prob(y)

    def metrics(self, prediction: M.RegressionPrediction, y: torch.Tensor) -> dict[str, float]:
        return M.regression_metrics(prediction, y)

    def check_targets(self, y: torch.Tensor) -> None:
        if not torch.is_floating_point(y):
            raise TypeError(f"expected floating point regression targets, got {y.dtype}")
        M.check_finite(y, "regression targets")

    def check_outputs(self, out: torch.Tensor, y: torch.Tensor, what: str = "targets") -> None:
        columns = self.loc_scale(out)[0].shape[-1]
        if (y.dim() == 1 and columns != 1) or (y.dim() == 2 and y.shape[-1] != columns):
            raise ValueError(f"{what} have shape {tuple(y.shape)}; the network predicts {columns} column(s)")


def likelihood_of(model) -> Likelihood | _Logits:
    """``model`` itself if it is a :class:`Likelihood`, else the logits convention."""
    return model if isinstance(model, Likelihood) else _LOGITS


class _Logits:
    """A model that is not a :class:`Likelihood` must return logits (N, classes >= 2)."""

    def predictive_parts(self, out: torch.Tensor) -> torch.Tensor:
        return M.check_logits(out, user_model=True).log_softmax(-1)

    log_lik = Classifier.log_lik

    def reducer(self) -> M.Reducer:
        return M.LogMeanExp()

    def metrics(self, prediction: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return M.classification_metrics(prediction, y)

    def check_targets(self, y: torch.Tensor) -> None:
        M.check_labels(y)

    check_outputs = Classifier.check_outputs


_LOGITS = _Logits()
