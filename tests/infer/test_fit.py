"""fit(): resume equivalence, checkpoint safety, bad data, schedules and metrics."""

import math

import pyro
import pytest
import torch

from pyro_varnet.data import toy_problem
from pyro_varnet.guides import NetworkGuide, ZeroMean
from pyro_varnet.infer import CheckpointError, fit, hold_then_decay, kl_warmup, linear_decay, load_checkpoint
from pyro_varnet.models import MLP, Classifier, LeNet5


def _setup(batchnorm=False):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)  # the same initial weights for every run of a test
    if batchnorm:
        net = LeNet5(batchnorm=True, bayesian=["fc1", "fc2"])
        x = torch.rand(60, 1, 28, 28)
        y = torch.randint(0, 10, (60,))
    else:
        net = MLP([2, 16, 8, 4])
        x, y = toy_problem(20, seed=3)
    model = Classifier(net, num_data=len(x))
    guide = NetworkGuide(model, default="layer", families={"fc2": ZeroMean()} if not batchnorm else {})
    return model, guide, (x, y)


def _params():
    store = pyro.get_param_store()
    return {k: store._params[k].detach().clone() for k in store.keys()}


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("batchnorm", [False, True])
def test_resume_equals_uninterrupted_run(tmp_path, batchnorm):
    kwargs = dict(epochs=4, batch_size=16, lr=1e-2, lr_schedule="linear", seed=7, progress=False)
    model, guide, data = _setup(batchnorm)
    full = fit(model, guide, data, checkpoint=tmp_path / "a.pt", **kwargs)
    expected = _params()
    buffers = {k: b.clone() for k, b in model.named_buffers()}

    def stop_after_two(epoch, metrics):
        if epoch == 2:
            raise Interrupt

    model, guide, data = _setup(batchnorm)
    with pytest.raises(Interrupt):
        fit(model, guide, data, checkpoint=tmp_path / "b.pt", callbacks=[stop_after_two], **kwargs)
    torch.manual_seed(12345)  # the RNG moves on in between: resume must restore it
    model, guide, data = _setup(batchnorm)  # a fresh process: new modules, empty param store
    resumed = fit(model, guide, data, checkpoint=tmp_path / "b.pt", resume=True, **kwargs)
    actual = _params()
    assert set(actual) == set(expected)
    for k in expected:
        assert torch.equal(actual[k], expected[k]), k
    for k, b in model.named_buffers():
        assert torch.equal(b, buffers[k]), k
    assert [e["elbo"] for e in resumed] == [e["elbo"] for e in full]


def test_existing_checkpoint_is_not_overwritten(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(b"precious")
    model, guide, data = _setup()
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(model, guide, data, checkpoint=path, progress=False)
    assert path.read_bytes() == b"precious"


def test_corrupt_checkpoint_gives_clear_error_and_is_kept(tmp_path):
    model, guide, data = _setup()
    path = tmp_path / "run.pt"
    fit(model, guide, data, epochs=1, checkpoint=path, progress=False)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # truncated, as by a crash without atomic writes
    model, guide, data = _setup()
    with pytest.raises(CheckpointError, match="corrupt"):
        fit(model, guide, data, epochs=2, checkpoint=path, resume=True, progress=False)
    assert path.read_bytes() == blob[: len(blob) // 2]
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or not a pyro-varnet checkpoint"):
        load_checkpoint(path)


def test_incompatible_checkpoint(tmp_path):
    model, guide, data = _setup()
    path = tmp_path / "run.pt"
    fit(model, guide, data, epochs=1, checkpoint=path, progress=False)
    pyro.clear_param_store()
    x, y = data
    model = Classifier(MLP([2, 32, 4]), num_data=len(x))
    with pytest.raises(CheckpointError, match="different model or guide"):
        fit(model, NetworkGuide(model), data, epochs=2, checkpoint=path, resume=True, progress=False)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    model, guide, data = _setup()
    fit(model, guide, data, epochs=2, checkpoint=tmp_path / "run.pt", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]
    state = load_checkpoint(tmp_path / "run.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 2


def test_nan_inputs_are_named_before_training():
    """Tensors are checked once, before any step; a loader's batches on the host, by batch."""
    model, guide, (x, y) = _setup()
    x = x.clone()
    x[37] = float("nan")
    with pytest.raises(ValueError, match=r"train_data: inputs contain NaN or inf \(rows \[37\]"):
        fit(model, guide, (x, y), batch_size=16, seed=0, progress=False)
    assert not guide.site_names  # nothing was trained or even built

    def loader(*tensors):
        dataset = torch.utils.data.TensorDataset(*tensors)
        return torch.utils.data.DataLoader(dataset, 16, shuffle=True, generator=torch.Generator().manual_seed(0))

    order = torch.cat([i for (i,) in loader(torch.arange(len(x)))])
    row = int((order == 37).nonzero())  # where object 37 lands in the shuffled order
    with pytest.raises(
        ValueError, match=rf"epoch 1, batch {row // 16}: inputs contain NaN or inf \(rows \[{row % 16}\]"
    ):
        fit(model, guide, loader(x, y), seed=0, progress=False)
    with pytest.raises(ValueError, match=r"test_data: inputs contain NaN"):
        fit(model, guide, (x.nan_to_num(), y), test_data=(x, y), progress=False)


def test_bad_arguments():
    model, guide, (x, y) = _setup()
    with pytest.raises(TypeError, match="tuple"):
        fit(model, guide, [x], progress=False)
    with pytest.raises(ValueError, match="same"):
        fit(model, guide, (x, y[:-1]), progress=False)
    with pytest.raises(ValueError, match="evaluation mode"):
        fit(model, guide, (x, y), test_data=(x, y), eval_modes=("median",), progress=False)
    with pytest.raises(ValueError, match="lr_schedule"):
        fit(model, guide, (x, y), lr_schedule="cosine", progress=False)


def test_metrics_history_and_schedules():
    model, guide, (x, y) = _setup()
    h = fit(
        model,
        guide,
        (x, y),
        epochs=3,
        batch_size=20,
        lr=1e-2,
        lr_schedule="linear",
        warmup_epochs=2,
        test_data=(x, y),
        eval_modes=("mean", "ensemble", "zero_mean"),
        eval_samples=5,
        progress=False,
        seed=0,
    )
    assert len(h) == 3 and h["epoch"] == [1, 2, 3]
    assert h["kl_weight"] == [0.5, 1.0, 1.0]
    assert h["lr"] == pytest.approx([1e-2 * 2 / 3, 1e-2 / 3, 0.0])
    last = h.last
    assert math.isclose(last["elbo"], last["data"] - last["kl"], rel_tol=1e-9)
    assert last["log_alpha/net.fc2.weight"] == math.inf and math.isfinite(last["log_alpha/net.fc1.weight"])
    for k in ("test_acc_mean", "test_acc_ensemble", "test_acc_zero_mean", "train_nll_mean"):
        assert 0 <= last[k] <= 1 or k.startswith("train_nll")
    assert list(h.to_dataframe().columns)[:2] == ["epoch", "elbo"]


def test_schedule_helpers():
    assert linear_decay(10)(5) == 0.5 and linear_decay(10)(12) == 0.0
    w = kl_warmup(5, 20)
    assert w(0) == 0.0 and w(12.5) == 0.5 and w(30) == 1.0
    with pytest.raises(ValueError):
        kl_warmup(5, 2)
    h = hold_then_decay(200)  # WN: 100 epochs at lr, then linear to 0 over the last 100
    assert h(0) == h(100) == 1.0 and h(150) == 0.5 and h(200) == h(250) == 0.0
    with pytest.raises(ValueError):
        hold_then_decay(10, hold_fraction=1.0)


def test_lr_multipliers_scale_matching_parameters():
    """Adam's first step moves every parameter by exactly lr (times its multiplier)."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    moves = {}
    for mult in (None, {"*log_alpha*": 10.0}):
        pyro.clear_param_store()
        model = Classifier(MLP([4, 6, 2]), num_data=40)
        guide = NetworkGuide(model, default="layer", families={"fc2": "additive"})
        fit(model, guide, (x, y), epochs=1, batch_size=40, lr=1e-3, lr_multipliers=mult, seed=0, progress=False)
        store = pyro.get_param_store()
        moves[mult is None] = (
            float(store["guide.sites.net__fc1__weight.log_alpha_param"].detach()) + 5.0,
            float(store["guide.sites.net__fc2__weight.log_sigma2"][0, 0].detach()) + 10.0,
        )
    (la_plain, ls_plain), (la_mult, ls_mult) = moves[True], moves[False]
    assert abs(la_plain) == pytest.approx(1e-3, rel=1e-3) and abs(la_mult) == pytest.approx(1e-2, rel=1e-3)
    assert abs(ls_plain) == pytest.approx(abs(ls_mult), rel=1e-6)  # an unmatched name keeps the base lr
    with pytest.raises(ValueError, match="positive finite lr multiplier"):
        fit(model, guide, (x, y), lr_multipliers={"*": 0.0}, progress=False)


def test_flipout_training_for_families_without_exact_lrt():
    from pyro_varnet.guides import BernoulliVariance

    torch.manual_seed(0)
    x, y = toy_problem(50, seed=0)
    pyro.clear_param_store()
    model = Classifier(MLP([2, 16, 4], bayesian=["fc1"]), num_data=len(x))
    guide = NetworkGuide(model, default=BernoulliVariance())
    h = fit(model, guide, (x / 10, y), epochs=3, batch_size=50, lr=0.02, lrt="flipout", seed=0, progress=False)
    assert all(math.isfinite(e["elbo"]) for e in h.epochs)
    assert h.epochs[-1]["data"] > h.epochs[0]["data"]
    with pytest.raises(ValueError, match="flipout"):
        fit(model, guide, (x, y), lrt="always", progress=False)


def test_eval_lrt_reaches_predict(monkeypatch):
    import importlib

    fit_module = importlib.import_module("pyro_varnet.infer.fit")  # the module, not the function

    seen = []
    real = fit_module.predict
    monkeypatch.setattr(fit_module, "predict", lambda *a, **kw: seen.append(kw["lrt"]) or real(*a, **kw))
    model, guide, (x, y) = _setup()
    fit(
        model,
        guide,
        (x, y),
        epochs=1,
        batch_size=20,
        test_data=(x, y),
        eval_modes=("sample",),
        eval_lrt=True,
        progress=False,
    )
    assert seen == [True, True]  # train subset and test set


def test_version_1_checkpoints_are_restored_for_analysis(tmp_path):
    """Checkpoints of earlier releases held Pyro param-store names and buffers by position."""
    from pyro_varnet.infer import restore
    from pyro_varnet.state import _store_names

    model, guide, (x, y) = _setup(batchnorm=True)
    fit(model, guide, (x, y), epochs=1, batch_size=20, progress=False)
    params = {name: p.detach().clone() for m in (model, guide) for name, p in _store_names(m)}
    buffers = {
        f"{i}.{n}": b.clone() for i, m in enumerate((model, guide)) for n, b in m.named_buffers() if "_like" not in n
    }
    state = {"epoch": 1, "params": params, "buffers": buffers, "history": [{"epoch": 1}], "rng": {}}
    torch.save({"format": "pyro-varnet-checkpoint", "version": 1, **state}, tmp_path / "v1.pt")  # as they were
    model2, guide2, _ = _setup(batchnorm=True)
    with pytest.raises(CheckpointError, match="example_x"):
        restore(model2, guide2, tmp_path / "v1.pt")
    assert len(restore(model2, guide2, tmp_path / "v1.pt", example_x=x)) == 1
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), model2.state_dict().items()):
        assert n1 == n2 and (p1 == p2 if n1.endswith("_extra_state") else torch.equal(p1, p2)), n1
    assert all(torch.equal(p1, p2) for p1, p2 in zip(guide.parameters(), guide2.parameters()))
    with pytest.raises(CheckpointError, match="not resumed"):
        fit(model2, guide2, (x, y), epochs=2, checkpoint=tmp_path / "v1.pt", resume=True, progress=False)


def test_resume_refuses_other_families_and_priors(tmp_path):
    """Parameter names and shapes agree between uniform, Bernoulli and dropout guides and between
    log-uniform, Student-t and normal priors; the state dicts' records of families and priors
    tell them apart."""
    from pyro_varnet.guides import BernoulliVariance, UniformVariance

    def run(prior="log-uniform", family=UniformVariance(), path=tmp_path / "run.pt", **kw):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        x, y = toy_problem(20, seed=3)
        model = Classifier(MLP([2, 16, 4], prior=prior), num_data=len(x))
        guide = NetworkGuide(model, default=family)
        kw.setdefault("epochs", 1)
        return fit(model, guide, (x, y), checkpoint=path, progress=False, lrt="flipout", **kw)

    run()
    for kw in ({"family": BernoulliVariance()}, {"prior": "student-t"}, {"prior": "normal"}):
        with pytest.raises(CheckpointError, match="different model or guide"):
            run(epochs=2, resume=True, **kw)
    assert len(run(epochs=2, resume=True)) == 2


def test_checkpoint_checksum_and_missing_parts(tmp_path):
    model, guide, data = _setup()
    path = tmp_path / "run.pt"
    fit(model, guide, data, epochs=1, checkpoint=path, progress=False)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x10  # one bit inside the tensor data
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="SHA-256 checksum"):
        load_checkpoint(path)
    from pyro_varnet.infer import save_checkpoint

    save_checkpoint(path, {"epoch": 1, "history": []})
    with pytest.raises(CheckpointError, match="incomplete: it has no model, guide, optimizer, rng"):
        load_checkpoint(path)


def test_targets_beyond_the_outputs_stop_before_training(tmp_path):
    model, guide, (x, y) = _setup()  # 4 classes
    bad = y.clone()
    bad[3] = 200
    with pytest.raises(ValueError, match=r"test_data targets >= 0 below 4, got values in \[0, 200\]"):
        fit(model, guide, (x, y), test_data=(x, bad), epochs=1, checkpoint=tmp_path / "c.pt", progress=False)
    assert not any(tmp_path.iterdir())  # the check runs before the first step: nothing was written
    with pytest.raises(ValueError, match="eval_samples"):
        fit(model, guide, (x, y), test_data=(x, y), eval_samples=0, progress=False)
