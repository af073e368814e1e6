"""The varnet command: the demo's claims (VN §3.2) and a smoke run of train on MNIST."""

import json
import os

import pyro
import pytest
import torch

from pyro_varnet import cli, data
from pyro_varnet.analysis import VN_TABLE1_RECIPE
from pyro_varnet.infer import initialize

HAVE_MNIST = os.path.isdir(os.path.join(os.environ.get(data.ENV_VAR, "/nonexistent"), "MNIST", "raw"))


@pytest.mark.integration
def test_demo_default_reaches_the_papers_claims(tmp_path, capsys):
    # the real default run (about 15 s): ensemble >= 99 %, mean propagation at chance
    assert cli.main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for line in ("ELBO decomposition", "data term", "mean propagation", "test-time averaging"):
        assert line in printed
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["test_accuracy"]["ensemble"] >= 0.99
    assert report["test_accuracy"]["mean"] <= 0.30
    assert report["elbo"]["kl"] == 0.0
    png = (tmp_path / "bottleneck.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_parse_guide():
    assert cli.parse_guide("layer") == ("layer", {})
    assert cli.parse_guide("zero-mean-fc1") == ("layer", {"fc1": "zero-mean"})
    assert cli.parse_guide("zero-mean-fc1+fc2") == ("layer", {"fc1": "zero-mean", "fc2": "zero-mean"})
    assert cli.parse_guide("fc1=zero-mean,default=neuron") == ("neuron", {"fc1": "zero-mean"})
    with pytest.raises(ValueError, match="cannot read guide"):
        cli.parse_guide("gaussian")
    with pytest.raises(ValueError, match="unknown family"):
        cli.parse_guide("fc1=gamma")
    assert cli.parse_guide("zero-mean-log-fc1") == ("layer", {"fc1": "zero-mean-log"})
    assert cli.parse_guide("fc1=bernoulli,default=dropout") == ("dropout", {"fc1": "bernoulli"})


def test_column_specs_choose_the_bayesian_layers():
    assert cli.split_column("zero-mean@fc1") == ("zero-mean", "fc1")
    assert cli.split_column("layer@conv1+fc1", "fc2") == ("layer", "conv1,fc1")  # the spec's layers win
    assert cli.split_column("layer", "fc2") == ("layer", "fc2")
    assert cli.parse_guide("zero-mean@fc1") == ("zero-mean", {})
    for bad in ("zero-mean@", "@fc1", "layer@fc1@fc2", "layer@fc1++fc2"):
        with pytest.raises(ValueError, match="GUIDE@LAYER"):
            cli.split_column(bad)
    model, guide = cli._build("lenet5", "log-uniform", "", "zero-mean@fc1", 100, seed=0)
    x, y = torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    initialize(model, guide, x, y)
    trace = pyro.poutine.trace(guide).get_trace(x, y)
    latent = {name for name, site in trace.nodes.items() if site["type"] == "sample"}
    assert latent == {"net.fc1.weight"}  # the other layers are deterministic: no prior, no KL


def test_lr_multiplier_specs():
    assert cli._lr_multipliers(["*log_alpha*=10", "net.*=0.5"]) == {"*log_alpha*": 10.0, "net.*": 0.5}
    for bad in ("10", "*log_alpha*", "=3", "x=ten"):
        with pytest.raises(ValueError, match="PATTERN=FACTOR"):
            cli._lr_multipliers([bad])


def test_train_reports_missing_data(tmp_path, capsys):
    code = cli.main(["train", "--data-root", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2 and "MNIST not found" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.skipif(not HAVE_MNIST, reason="MNIST not present under $PYRO_VARNET_DATA")
def test_train_smoke_and_resume(tmp_path, capsys):
    args = ["train", "--model", "lenet5", "--guide", "zero-mean-fc1", "--limit", "400", "--out", str(tmp_path)]
    assert cli.main([*args, "--epochs", "1", "--no-progress"]) == 0
    assert (tmp_path / "checkpoint.pt").is_file()
    assert cli.main([*args, "--epochs", "1", "--no-progress"]) == 2  # refuses to overwrite the run
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*args, "--epochs", "2", "--resume", "--no-progress"]) == 0
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    # the trained run can be reloaded from its folder and pruned (VN Fig. 5)
    assert cli.main(["prune", str(tmp_path), "--samples", "2", "--limit", "200"]) == 0
    rows = json.loads((tmp_path / "prune.json").read_text())
    assert rows[0]["sparsity"] == 0.0 and rows[-1]["sparsity"] > 0.98
    assert (tmp_path / "prune.png").is_file()
    assert cli.main(["prune", str(tmp_path / "nothing")]) == 2
    # ... and attacked next to a deterministic run (VN Fig. 7 plumbing)
    det = tmp_path / "det"
    assert (
        cli.main(
            [
                "train",
                "--model",
                "lenet5",
                "--bayesian",
                "none",
                "--guide",
                "layer",
                "--limit",
                "200",
                "--out",
                str(det),
                "--no-progress",
            ]
        )
        == 0
    )
    nets = ["--net", f"variance={tmp_path}", "--net", f"deterministic={det}", "--net", f"ensemble={det}+{det}"]
    assert (
        cli.main(
            [
                "attack",
                *nets,
                "--n",
                "20",
                "--steps",
                "3",
                "--samples",
                "2",
                "--limit",
                "50",
                "--out",
                str(tmp_path / "atk"),
            ]
        )
        == 0
    )
    curves = json.loads((tmp_path / "atk" / "attack.json").read_text())["curves"]
    assert set(curves) == {"variance", "deterministic", "ensemble"} and all(len(c) == 3 for c in curves.values())
    assert curves["ensemble"] == curves["deterministic"]  # an ensemble of one net twice is that net


@pytest.mark.integration
@pytest.mark.skipif(not HAVE_MNIST, reason="MNIST not present under $PYRO_VARNET_DATA")
def test_compare_smoke_writes_report(tmp_path, capsys):
    # two columns side by side in two processes; the second column is a paper column
    args = ["compare", "--guides", "zero-mean-fc1,additive", "--limit", "300", "--epochs", "1", "--draws", "8"]
    assert cli.main([*args, "--eval-samples", "4", "--out", str(tmp_path), "--no-progress", "--processes", "2"]) == 0
    out = capsys.readouterr().out
    assert "| Metric | zero-mean-fc1 | additive | additive (VN) |" in out and "elpd_loo" in out
    assert "| ELBO |" in out and "-227900.0 |" in out and "pareto_k_bad" in out
    # 8 draws: ArviZ's Pareto-k threshold min(1 - 1/log10(8), 0.7) < 0, so no estimate is trusted, and it is said
    assert "warning: LOO is unreliable for 'zero-mean-fc1'" in out and "--draws" in out
    assert "LOO is unreliable for 'additive'" in (tmp_path / "table.md").read_text()
    files = ("table.md", "report.json", "az_compare.csv", "kl_priors.png", "elbo_decomposition.png")
    for name in (*files, "zero-mean-fc1.nc", "additive.nc"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "phase_transition_additive.png").is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["zero-mean-fc1"]["log_alpha"]["net.fc1.weight"] == "inf"  # strict JSON: no Infinity token
    assert "net.conv1.weight" in report["zero-mean-fc1"]["mmd_bound"]
    assert report["additive"]["wall_seconds"] > report["additive"]["train_seconds"] > 0
    # the default lever: the log-scale variance parameters learn 30x faster
    saved = json.loads((tmp_path / "additive" / "args.json").read_text())
    assert saved["lr_mult"] == ["*log_alpha*=30", "*log_sigma2=30"] and saved["lr"] == 3e-3
    assert saved["lr_schedule"] == VN_TABLE1_RECIPE["lr_schedule"]  # the recipe's schedule, not train's default


@pytest.mark.integration
@pytest.mark.skipif(not HAVE_MNIST, reason="MNIST not present under $PYRO_VARNET_DATA")
def test_the_same_seed_gives_an_identical_run(tmp_path):
    """The seed is set before anything random is built (the deterministic layers too), so two
    runs write byte-identical metrics; wall-clock time stays out of metrics.jsonl."""
    args = ["train", "--model", "lenet5", "--limit", "200", "--epochs", "2", "--eval-samples", "2", "--no-progress"]
    runs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for run, seed in zip(runs, ("3", "3", "4")):
        assert cli.main([*args, "--seed", seed, "--out", str(run), "--device", "cpu"]) == 0
    a, b, c = ((run / "metrics.jsonl").read_bytes() for run in runs)
    assert a == b and a != c
    assert "seconds" not in json.loads(a.splitlines()[0]) and "Infinity" not in a.decode()


def test_experiment_commands_say_which_extra_they_need(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gymnasium" else real(name, *a))
    assert cli.main(["rl", "--episodes", "2", "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'pyro-varnet[experiments]'" in err[0] and "gymnasium" in err[0]
