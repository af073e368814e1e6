"""The ArviZ export of ELBO reports: schema, named dims, what the variables hold, and the ArviZ
functions a user runs on it (summary, plots, LOO, compare, netCDF)."""

import math
import re
import warnings

import arviz as az
import numpy as np
import pyro
import pytest
import torch
from matplotlib import pyplot as plt

from pyro_varnet.analysis import (
    LOG_ALPHA_CLIP,
    as_trace,
    compare,
    elbo_report,
    ic_diagnostics,
    plot_elbo_decomposition,
)
from pyro_varnet.data import sine_regression, toy_problem
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import fit, predict
from pyro_varnet.models import MLP, Classifier, Regressor

DRAWS = 100
#: dims that ArviZ or the test set give; every other dim must be named after a layer of the model
GENERIC_DIMS = {"chain", "draw", "epoch", "site", "mode", "test_object", "class", "output"}


@pytest.fixture(scope="module")
def trained():
    train, test = toy_problem(40, seed=0), toy_problem(25, seed=1)
    out = {}
    for spec in ("zero-mean", "layer", "neuron"):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = Classifier(MLP([2, 16, 4]), num_data=len(train[0]))
        guide = NetworkGuide(model, default=spec)
        h = fit(model, guide, train, epochs=6, batch_size=40, lr=2e-2, test_data=test, progress=False, seed=0)
        report = elbo_report(model, guide, train, test, num_samples=10, num_draws=DRAWS, name=spec, history=h, seed=1)
        out[spec] = (report, model, guide, train, test, h)
    yield out
    plt.close("all")


def _model_dims(idata) -> set[str]:
    return {d for g in idata.groups() for d in idata[g].dims}


def test_every_dim_is_named_from_the_model(trained):
    idata = trained["neuron"][0].to_inference_data()
    assert set(idata.groups()) == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "sample_stats",
        "observed_data",
        "training",
    }
    dims = _model_dims(idata)
    assert not [d for d in dims if re.search(r"_dim_\d+$", d)]  # no ArviZ default names
    assert dims - GENERIC_DIMS == {"fc1_out", "fc1_in", "fc2_out", "fc2_in"}
    post = idata.posterior
    assert post["net.fc1.weight"].dims == ("chain", "draw", "fc1_out", "fc1_in")
    assert post["net.fc1.weight"].shape == (1, DRAWS, 16, 2)
    assert post["net.fc2.weight_neuron_log_alpha"].dims == ("chain", "draw", "fc2_out")
    assert idata.posterior_predictive["probs"].dims == ("chain", "draw", "test_object", "class")
    assert idata.training["site_kl"].dims == ("epoch", "site")
    assert idata.training["test_acc"].dims == ("epoch", "mode")
    assert idata.attrs["guide"] == "neuron" and idata.attrs["seed"] == 1
    assert idata.attrs["pyro_version"] == pyro.__version__
    assert '"net.fc1.weight": "GaussianDropoutSite"' in idata.attrs["guide_families"]
    assert '"net.fc1.weight": "LogUniform"' in idata.attrs["priors"]


def test_weight_draws_come_from_q(trained):
    # ground truth: the posterior group's draws are iid from q(w) = N(theta, alpha theta^2)
    report, model, guide, *_ = trained["neuron"]
    draws = report.to_inference_data().posterior["net.fc1.weight"].values[0].astype(np.float64)  # (S, 16, 2)
    q = guide.site("net.fc1.weight").base()
    mu, sigma = q.mean.detach().double().numpy(), q.stddev.detach().double().numpy()
    z = (draws.mean(0) - mu) / (sigma / math.sqrt(DRAWS))
    assert np.abs(z).max() < 4.5  # 32 weights: P(max |z| > 4.5) ~ 2e-4
    ratio = (draws.var(0, ddof=1) / sigma**2).mean()  # each S^2/sigma^2 has sd sqrt(2/(S-1)); 32 of them
    assert abs(ratio - 1) < 4 * math.sqrt(2 / (DRAWS - 1)) / math.sqrt(32)
    stored = report.to_inference_data().posterior
    np.testing.assert_allclose(stored["net.fc1.weight_sigma"].values[0, 0], sigma, rtol=1e-6)
    # the per-neuron norm is the norm of each draw's neuron weights
    np.testing.assert_allclose(
        stored["net.fc1.weight_norm"].values[0], np.linalg.norm(draws, axis=-1), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("spec", ["layer", "neuron"])
def test_neuron_log_alpha_is_the_shared_alpha(trained, spec):
    report, model, guide, *_ = trained[spec]
    post = report.to_inference_data().posterior
    for site in ("net.fc1.weight", "net.fc2.weight"):
        shared = guide.site(site).log_alpha_param.detach().double()
        expected = shared.expand(guide.site(site).shape[:1] + (1,) * (shared.dim() - 1)).reshape(-1).numpy()
        # log sum sigma^2 - log sum mu^2 from q's float32 sigma = sqrt(alpha)|theta|: a few float32 eps apart
        np.testing.assert_allclose(post[f"{site}_neuron_log_alpha"].values[0, 0], expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(
            post[f"{site}_log_alpha"].values[0, 0], guide.log_alpha()[site].double().numpy(), rtol=1e-9, atol=1e-9
        )


def test_zero_mean_log_alpha_is_clipped_and_plottable(trained):
    report = trained["zero-mean"][0]
    assert math.isinf(report.log_alpha["net.fc1.weight"])
    idata = report.to_inference_data()
    for name in ("net.fc1.weight_log_alpha", "net.fc1.weight_neuron_log_alpha"):
        assert (idata.posterior[name].values == LOG_ALPHA_CLIP).all()
    assert (idata.training["site_log_alpha"].values == LOG_ALPHA_CLIP).all()
    assert idata.attrs["log_alpha_clip"] == LOG_ALPHA_CLIP
    # the crash of the issue: az.plot_posterior on a zero-mean site. q's log alpha and sigma are
    # constant over draws, and ArviZ says so instead of drawing a density
    with pytest.warns(UserWarning, match="single value"):
        az.plot_posterior(idata, var_names=["net.fc2.weight_neuron_log_alpha", "net.fc1.weight_sigma_norm"])
    az.plot_posterior(idata, var_names=["net.fc1.weight_norm"], coords={"fc1_out": [0, 1]})


def test_training_group_is_the_history(trained):
    report, *_, h = trained["layer"]
    training = report.to_inference_data().training
    np.testing.assert_array_equal(training["epoch"].values, h["epoch"])
    np.testing.assert_allclose(training["elbo"].values, h["elbo"])
    np.testing.assert_allclose(training["site_kl"].sel(site="net.fc2.weight").values, h["kl/net.fc2.weight"])
    np.testing.assert_allclose(training["test_acc"].sel(mode="ensemble").values, h["test_acc_ensemble"])
    la = training["site_log_alpha"].sel(site="net.fc1.weight").values
    np.testing.assert_allclose(la, h["log_alpha/net.fc1.weight"])
    trace = as_trace(training)
    assert trace["elbo"].dims == ("chain", "draw") and list(trace["epoch"].values) == h["epoch"]


def test_arviz_functions_run(trained, tmp_path):
    """Must-show 1 of the issue: what an ArviZ user runs, all without error."""
    idatas = {spec: trained[spec][0].to_inference_data() for spec in ("layer", "neuron")}
    idata = idatas["neuron"]
    summary = az.summary(idata, var_names=["net.fc2.weight"], kind="stats")
    assert len(summary) == 64 and "net.fc2.weight[0, 0]" in summary.index
    az.plot_posterior(idata, var_names=["net.fc2.weight"], coords={"fc2_out": [0], "fc2_in": [0, 1]})
    axes = az.plot_forest(
        list(idatas.values()),
        model_names=list(idatas),
        var_names=["net.fc1.weight_neuron_log_alpha"],
        combined=True,
        labeller=az.labels.DimCoordLabeller(),
    )
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert any("fc1_out: 3" in t for t in labels), labels
    az.plot_trace(as_trace(idata.training), var_names=["elbo", "data", "site_kl"])
    az.plot_ppc(idata, num_pp_samples=20)
    with warnings.catch_warnings():  # Pareto-k warnings: checked by the tests of ic_diagnostics / compare
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        loo = az.loo(idata)
        assert az.compare(idatas).shape[0] == 2
    assert math.isfinite(loo.elpd_loo) and loo.n_samples == DRAWS
    idata.to_netcdf(tmp_path / "neuron.nc")
    back = az.from_netcdf(tmp_path / "neuron.nc")
    assert set(back.groups()) == set(idata.groups())
    np.testing.assert_array_equal(back.posterior["net.fc1.weight"].values, idata.posterior["net.fc1.weight"].values)
    assert back.training["site_kl"].dims == ("epoch", "site") and back.attrs["guide"] == "neuron"


def test_large_sites_are_kept_per_neuron(trained):
    _, model, guide, train, test, _ = trained["layer"]
    report = elbo_report(model, guide, train, test, num_samples=2, elbo_samples=1, num_draws=5, max_weights=40)
    post = report.to_inference_data().posterior
    assert "net.fc1.weight" in post and "net.fc2.weight" not in post  # 32 <= 40 < 64 weights
    assert post["net.fc2.weight_norm"].shape == (1, 5, 4)
    assert "net.fc1.weight" not in report.to_inference_data(weights=False).posterior


def test_seeded_report_is_reproducible_and_leaves_the_global_rng(trained):
    _, model, guide, train, test, _ = trained["layer"]
    kwargs = dict(num_samples=2, elbo_samples=1, num_draws=5, seed=3)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = elbo_report(model, guide, train, test, **kwargs)
    assert torch.equal(torch.rand(3), expected)
    b = elbo_report(model, guide, train, test, **kwargs)
    np.testing.assert_array_equal(a.pointwise_log_lik, b.pointwise_log_lik)
    np.testing.assert_array_equal(a.predictive, b.predictive)
    assert a.elbo == b.elbo
    with pytest.raises(ValueError, match="num_draws"):
        elbo_report(model, guide, train, test, num_draws=0)


def test_compare_states_the_pareto_k_problem(trained):
    """Must-show 3: the zero-mean guide's LOO is not silently ranked."""
    reports = {spec: trained[spec][0] for spec in ("zero-mean", "layer")}
    table, markdown, az_table = compare(reports)
    assert {"pareto_k_max", "pareto_k_bad"} <= set(az_table.columns)
    bad = az_table.loc["zero-mean", "pareto_k_bad"]
    assert bad > 0 and az_table.loc["zero-mean", "pareto_k_max"] > 0.5  # 0.5: ArviZ's threshold at 100 draws
    warning = next(w for w in az_table.attrs["warnings"] if "'zero-mean'" in w)
    assert f"for {bad} of 100 test objects" in warning and "num_draws" in warning and "waic" in warning
    assert f"> {warning}" in markdown
    _, _, waic_table = compare(reports, ic="waic")
    assert "waic_var_bad" in waic_table.columns and "elpd_waic" in waic_table.columns
    with pytest.raises(ValueError, match="ic"):
        compare(reports, ic="dic")


def _idata(loglik):
    return az.from_dict(posterior={"x": np.zeros((1, loglik.shape[0]))}, log_likelihood={"obs": loglik[None]})


def test_ic_diagnostics_against_known_tails():
    # importance ratios 1/p(y_n | W_s) with log p ~ N(m, s^2): light tails for small s (k ~ 0),
    # k ~ s^2-ish heavy tails for large s; 400 draws -> ArviZ's threshold min(1 - 1/log10(400), 0.7) = 0.62
    rng = np.random.default_rng(0)
    light = _idata(-1 + 0.05 * rng.standard_normal((400, 30)))
    d = ic_diagnostics(light)
    assert d["bad"] == 0 and d["k_max"] < 0.5 and math.isclose(d["good_k"], 1 - 1 / math.log10(400))
    heavy = -1 + 0.05 * rng.standard_normal((400, 30))
    heavy[:, :6] = -5 + 4 * rng.standard_normal((400, 6))
    d = ic_diagnostics(_idata(heavy))
    assert d["bad"] >= 5 and d["k_max"] > 0.7 and d["n"] == 30
    assert ic_diagnostics(_idata(heavy), "waic")["bad"] == 6  # Var(log p) = 16 > 0.4 exactly there
    assert d["exact"] == 0
    # objects predicted alike by every draw (log p saturated at 0): equal importance ratios, an
    # exact LOO term; ArviZ's k is inf there, which must not count as bad nor set k_max
    saturated = -1 + 0.05 * rng.standard_normal((400, 30))
    saturated[:, :4] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's own Pareto-k warning
        assert np.isinf(az.loo(_idata(saturated), pointwise=True).pareto_k.values[:4]).all()
    d = ic_diagnostics(_idata(saturated))
    assert d["exact"] == 4 and d["bad"] == 0 and d["k_max"] < 0.5
    saturated[:, 4:10] = heavy[:, :6]  # and the heavy tails next to them still count
    d = ic_diagnostics(_idata(saturated))
    assert d["exact"] == 4 and d["bad"] >= 5 and d["k_max"] > 0.7
    with pytest.raises(ValueError, match="ic"):
        ic_diagnostics(light, "aic")


def test_regression_report_exports_predictive_draws():
    pyro.set_rng_seed(0)
    x, y = sine_regression(60, seed=0)
    xt, yt = sine_regression(40, seed=1)
    model = Regressor(MLP([1, 32, 1], activation="tanh"), num_data=len(x), init_noise=0.3)
    guide = NetworkGuide(model, default="additive")
    h = fit(model, guide, (x, y), epochs=20, batch_size=60, lr=1e-2, test_data=(xt, yt), progress=False, seed=0)
    report = elbo_report(model, guide, (x, y), (xt, yt), num_samples=5, elbo_samples=1, num_draws=30, history=h)
    idata = report.to_inference_data()
    pp = idata.posterior_predictive["obs"]
    assert pp.dims == ("chain", "draw", "test_object") and pp.shape == (1, 30, 40)
    assert "probs" not in idata.posterior_predictive and "test_rmse" in idata.sample_stats
    # ground truth: the draws come from the predictive mixture; their mean per object matches a
    # 400-sample ensemble's mean within the standard error of both
    pred = predict(model, guide, xt, mode="ensemble", num_samples=400)
    mean, sd = pred.mean.double().numpy(), pred.stddev.double().numpy()
    z = (pp.values[0].mean(0) - mean) / (sd * math.sqrt(1 / 30 + 1 / 400))
    assert np.abs(z).max() < 4.5  # 40 objects: P(max |z| > 4.5) < 3e-4
    az.plot_ppc(idata, num_pp_samples=10)
    assert "test_rmse" in idata.training


def test_elbo_decomposition_plot(trained, tmp_path):
    reports = {spec: trained[spec][0] for spec in ("zero-mean", "layer", "neuron")}
    fig = plot_elbo_decomposition(reports, tmp_path / "dec.png")
    assert len(fig.axes) == 3 and [a.get_title() for a in fig.axes] == list(reports)
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels == ["− data term", "KL (total)", "KL fc1", "KL fc2"]
    assert (tmp_path / "dec.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="has no"):
        plot_elbo_decomposition({"x": trained["layer"][0].history.to_dataframe().drop(columns="kl")})
