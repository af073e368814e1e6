"""The ELBO over a whole data set, split into data term and per-site KL (VN eq. 5, Table 1)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from torch.distributions import kl_divergence

from ..infer.predict import evaluating, prepare_inputs
from ..poutine import local_reparameterization


def _kl_site(guide_site, model_site) -> torch.Tensor:
    try:
        return kl_divergence(guide_site["fn"], model_site["fn"]).sum()
    except NotImplementedError:  # one-sample Monte Carlo, e.g. the Student-t prior (VN §4.2)
        value = guide_site["value"]
        return (guide_site["fn"].log_prob(value) - model_site["fn"].log_prob(value)).sum()


@torch.no_grad()
def elbo_decomposition(
    model: Callable,
    guide: Callable,
    data: tuple[torch.Tensor, torch.Tensor],
    num_samples: int = 10,
    batch_size: int = 1000,
    lrt: bool | None = None,
) -> dict:
    r"""ELBO, data term :math:`\mathbb{E}_q \log p(T \mid X, W)` over all of ``data``, and KL.

    The data term is averaged over ``num_samples`` passes over the data (per-object noise
    under LRT, as in training); the KL is analytic where registered, else a Monte Carlo
    average over the same passes. Returns ``{"elbo", "data", "kl", "kl_sites": {site: kl}}``
    in nats, with the data term and KL also reported per passes' standard error
    (``"data_se"``, ``"kl_se"``).
    """
    if num_samples < 1:
        raise ValueError(f"expected num_samples >= 1, got {num_samples}")
    x, y = data
    x = prepare_inputs(model, guide, x)
    y = y.to(device=x.device, dtype=x.dtype if y.is_floating_point() else None)
    if lrt is None:
        lrt = bool(getattr(guide, "exact_lrt", False))
    datas, kls, kl_sites = [], [], {}
    with evaluating(model, guide):
        for _ in range(num_samples):
            data_term, kl_pass = 0.0, {}
            for xb, yb in zip(torch.split(x, batch_size), torch.split(y, batch_size)):
                with local_reparameterization() if lrt else contextlib.nullcontext():
                    guide_tr = poutine.trace(guide).get_trace(xb)
                    model_tr = poutine.trace(poutine.replay(model, guide_tr)).get_trace(xb, yb)
                model_tr.compute_log_prob()
                for name, site in model_tr.nodes.items():
                    if site["type"] != "sample":
                        continue
                    if site["is_observed"]:
                        data_term += float(scale_and_mask(site["unscaled_log_prob"], mask=site["mask"]).sum())
                    elif name in guide_tr.nodes and name not in kl_pass:
                        kl_pass[name] = float(_kl_site(guide_tr.nodes[name], site))
            datas.append(data_term)
            kls.append(sum(kl_pass.values()))
            for k, v in kl_pass.items():
                kl_sites[k] = kl_sites.get(k, 0.0) + v / num_samples
    d, k = torch.tensor(datas, dtype=torch.float64), torch.tensor(kls, dtype=torch.float64)
    se = lambda t: float(t.std() / len(t) ** 0.5) if len(t) > 1 else float("nan")  # noqa: E731
    return {
        "elbo": float(d.mean() - k.mean()),
        "data": float(d.mean()),
        "kl": float(k.mean()),
        "data_se": se(d),
        "kl_se": se(k),
        "kl_sites": kl_sites,
    }
