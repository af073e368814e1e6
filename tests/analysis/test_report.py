"""ELBO reports: contents, ArviZ export and az.compare across two guides, Table 1 layout."""

import math
import warnings

import arviz as az
import pytest
import torch
from scipy import stats

from pyro_varnet.analysis import (
    VN_TABLE1,
    compare,
    elbo_report,
    kl_student_t_quadrature,
    mmd_bound,
    plot_activation_levels,
    plot_kl_priors,
    plot_phase_transition,
    plot_prior_phase_transitions,
    plot_sample_accuracies,
    vn_table1_column,
)
from pyro_varnet.data import toy_problem
from pyro_varnet.distributions import kl_log_uniform
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import fit
from pyro_varnet.models import MLP, Classifier


@pytest.fixture(scope="module")
def trained():
    train, test = toy_problem(40, seed=0), toy_problem(25, seed=1)
    out = {}
    for spec in ("layer", "additive"):
        import pyro

        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = Classifier(MLP([2, 16, 4]), num_data=len(train[0]))
        guide = NetworkGuide(model, default=spec)
        h = fit(model, guide, train, epochs=6, batch_size=40, lr=2e-2, test_data=test, progress=False, seed=0)
        out[spec] = elbo_report(model, guide, train, test, num_samples=10, num_draws=12, name=spec, history=h)
        out[spec + "_parts"] = (model, guide, train, test, h)
    return out


def test_report_contents(trained):
    r = trained["layer"]
    assert math.isclose(r.elbo, r.data - r.kl, rel_tol=1e-12)
    assert set(r.kl_sites) == {"net.fc1.weight", "net.fc2.weight"}
    for mode in ("mean", "sample", "ensemble", "zero_mean"):
        assert 0 <= r.metrics[f"acc_{mode}"] <= 1 and r.metrics[f"nll_{mode}"] > 0
    assert r.pointwise_log_lik.shape == (12, 100) and (r.pointwise_log_lik <= 0).all()
    assert len(r.sample_accuracies) == 12
    assert set(r.mmd_bound) == {"net.fc1.weight", "net.fc2.weight"}
    # layer-wise: the KL per weight is a function of the one log alpha (VN eq. 8)
    la = r.log_alpha["net.fc1.weight"]
    assert math.isclose(r.kl_sites["net.fc1.weight"], 32 * kl_log_uniform(torch.tensor(la)).item(), rel_tol=1e-4)


def test_inference_data_and_az_compare(trained, tmp_path):
    idata = trained["layer"].to_inference_data()
    assert {"posterior", "log_likelihood", "sample_stats", "observed_data", "training"} <= set(idata.groups())
    assert idata.log_likelihood["obs"].shape == (1, 12, 100)
    assert idata.training["elbo"].shape == (6,)  # one value per training epoch
    assert idata.sample_stats["test_acc"].shape == (1, 12)  # one value per weight draw
    # 12 draws are too few for reliable Pareto-k diagnostics: ArviZ says so, rightly; this
    # test checks the plumbing, not the LOO estimate
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        loo = az.loo(idata)
        table, markdown, az_table = compare([trained["layer"], trained["additive"]])
    assert math.isfinite(loo.elpd_loo)
    trained["layer"].save(tmp_path / "layer.nc")
    back = az.from_netcdf(tmp_path / "layer.nc")
    assert back.log_likelihood["obs"].shape == (1, 12, 100)
    assert list(table.columns) == ["layer", "additive"]
    assert list(table.index)[:3] == ["ELBO", "Data term", "KL"]
    assert markdown.startswith("| Metric | layer | additive |")
    assert set(az_table.index) == {"layer", "additive"} and "elpd_loo" in az_table.columns
    # the paper's values beside ours, in nats (VN Table 1 prints thousands of nats)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        ref, ref_md, _ = compare([trained["layer"], trained["additive"]], reference={"layer": VN_TABLE1["layer"]})
    assert list(ref.columns) == ["layer", "layer (VN)", "additive"]
    assert ref.loc["ELBO", "layer (VN)"] == -17_400.0 and ref.loc["KL", "layer (VN)"] == 1_700.0
    assert ref.loc["Mean propagation acc. (%)", "layer (VN)"] == 11.3
    assert ref_md.startswith("| Metric | layer | layer (VN) | additive |")
    with pytest.raises(ValueError, match="not among the reports"):
        compare([trained["layer"]], reference={"neuron": VN_TABLE1["neuron"]})


def test_vn_table1_reference():
    # the columns of VN Table 1 and the ELBO = data term - KL identity of the printed values
    assert list(VN_TABLE1) == ["zero-mean", "layer", "neuron", "weight", "additive"]
    for column, row in VN_TABLE1.items():
        assert math.isclose(row["elbo"], row["data"] - row["kl"], abs_tol=150), column  # printed to 0.1 thousand
    assert vn_table1_column("zero-mean@fc1") == "zero-mean" and vn_table1_column("neuron") == "neuron"
    assert vn_table1_column("zero-mean-fc1") is None and vn_table1_column("fc1=zero-mean,default=layer") is None


def test_plots_write_pngs(trained, tmp_path):
    model, guide, train, test, h = trained["layer_parts"]
    r = trained["layer"]
    plot_phase_transition(h, tmp_path / "phase.png")
    plot_sample_accuracies(r.sample_accuracies, r.metrics["acc_ensemble"], tmp_path / "hist.png")
    plot_activation_levels(model, guide, model.net.fc1, test[0], test[1], tmp_path / "levels.png", neurons=2)
    plot_kl_priors(tmp_path / "kl.png", dfs=(1e-16,))
    site = next(c for c in h.to_dataframe().columns if c.startswith("log_alpha/")).split("/", 1)[1]
    plot_prior_phase_transitions({"log-uniform": h, "again": h.to_dataframe()}, site, tmp_path / "priors.png")
    with pytest.raises(ValueError, match="has no"):
        plot_prior_phase_transitions({"x": h}, "net.nothing.weight")
    for name in ("phase", "hist", "levels", "kl", "priors"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("log_alpha", [2.0, 6.0, 10.0])
def test_mmd_bound_against_exact_distance(log_alpha):
    # sup_{|f|<=1} E_q0 f - E_q f = 2 TV = 2(2 Phi(d/2) - 1) for Gaussians with equal covariance,
    # d = ||mu / sigma|| = sqrt(sum 1/alpha_i); Theorem 1 bounds it by sqrt(2/pi) d
    la = torch.full((300,), log_alpha)
    d = math.sqrt(300 * math.exp(-log_alpha))
    exact = 2 * (2 * stats.norm.cdf(d / 2) - 1)
    bound = mmd_bound(la)
    assert math.isclose(bound, math.sqrt(2 * 300 / math.pi) / math.exp(log_alpha / 2), rel_tol=1e-9)  # VN eq. 12
    assert exact <= bound
    if d < 0.5:
        assert bound - exact < 0.05 * bound  # tight to first order


def test_student_t_kl_approaches_log_uniform():
    # VN Fig. 2 / eq. 10: as nu -> 0 the Student-t KL equals the log-uniform one up to a constant
    grid = [-4.0, -2.0, 0.0, 2.0, 4.0]
    lu = [kl_log_uniform(torch.tensor(g, dtype=torch.float64)).item() for g in grid]
    gaps = {}
    for nu in (1e-1, 1e-4, 1e-16):
        st = [kl_student_t_quadrature(g, nu) for g in grid]
        diff = [s - u for s, u in zip(st, lu)]
        gaps[nu] = max(diff) - min(diff)  # spread of the difference: 0 for a constant offset
    assert gaps[1e-16] < gaps[1e-4] < gaps[1e-1]
    assert gaps[1e-16] < 0.02  # the approximation's own error is below 0.0137 (test_kl.py)
