"""Run folders that never lose or corrupt their record (the CLI under kills, signals, races)."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from pyro_varnet import cli, data
from pyro_varnet.infer import load_checkpoint

HAVE_MNIST = os.path.isdir(os.path.join(os.environ.get(data.ENV_VAR, "/nonexistent"), "MNIST", "raw"))
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="MNIST not present under $PYRO_VARNET_DATA")
TRAIN = ["train", "--model", "lenet300-100", "--guide", "layer", "--eval-samples", "2", "--eval-modes", "mean",
         "--threads", "1", "--no-progress", "--device", "cpu"]  # fmt: skip


def _cli(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pyro_varnet.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **kw,
    )


def _hashes(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.name != ".lock"}


def _final_state(folder) -> dict:
    state = load_checkpoint(folder / "checkpoint.pt")
    return {f"{k}/{n}": t for k in ("model", "guide") for n, t in state[k].items() if torch.is_tensor(t)}


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.integration
@needs_mnist
def test_a_second_train_on_the_same_folder_is_locked_out(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TRAIN, "--limit", "5000", "--epochs", "6", "--out", str(out)]
    first = _cli(*args)
    deadline = time.time() + 120
    while not ((out / ".lock").exists() and (out / ".lock").read_text().strip()):  # the first holds the folder
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.05)
    assert cli.main([*args, "--resume"]) == 2  # the second, started while the first runs
    err = capsys.readouterr().err
    assert f"in use by another varnet process (PID {first.pid})" in err and len(err.strip().splitlines()) == 1
    assert first.poll() is None  # the first was still running: the second really was locked out
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]
    assert json.loads((out / "args.json").read_text())["epochs"] == 6


@pytest.mark.integration
@needs_mnist
def test_refused_commands_leave_every_file_byte_identical(tmp_path, capsys):
    out, constant = str(tmp_path), ["--lr-schedule", "constant"]
    assert cli.main([*TRAIN, *constant, "--limit", "300", "--epochs", "2", "--out", out]) == 0
    before = _hashes(tmp_path)
    refused = {
        "exists": [],
        "prior": ["--resume", "--prior", "normal"],
        "lr": ["--resume", "--lr", "0.1"],
        "seed": ["--resume", "--seed", "5"],
        "guide": ["--resume", "--guide", "neuron"],
        "unknown override": ["--resume", "--override", "colour"],
    }
    for name, extra in refused.items():
        assert cli.main([*TRAIN, *constant, "--limit", "300", "--epochs", "3", "--out", out, *extra]) == 2, name
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert _hashes(tmp_path) == before, name
    # a changed setting is accepted when named, and recorded
    assert cli.main([*TRAIN, *constant, "--limit", "300", "--epochs", "3", "--out", out, "--resume", "--lr", "0.01",
                     "--override", "lr"]) == 0  # fmt: skip
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["epoch"] == 3 and last["override"] == "lr: 0.001 -> 0.01" and last["lr"] == pytest.approx(0.01)
    assert json.loads((tmp_path / "args.json").read_text())["lr"] == 0.001  # written once, at the start


@pytest.mark.integration
@needs_mnist
def test_kill_9_at_random_moments_never_loses_or_corrupts_the_record(tmp_path):
    args = [*TRAIN, "--limit", "4000", "--epochs", "30", "--eval-every", "5"]
    ref = _cli(*args, "--out", str(tmp_path / "ref"))
    _, err = ref.communicate(timeout=900)
    assert ref.returncode == 0, err
    out, rng, kills = tmp_path / "killed", random.Random(0), 0
    while True:
        proc = _cli(*args, "--out", str(out), "--resume")
        if kills < 20:
            proc.stdout.readline()  # training is about to start (data loaded, folder locked)
            time.sleep(rng.uniform(0.0, 0.6))  # mid-step, mid-evaluation or mid-write
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
                proc.communicate()
                if (out / "checkpoint.pt").exists():
                    load_checkpoint(out / "checkpoint.pt")  # always loadable
                continue
        _, err = proc.communicate(timeout=900)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err
    assert kills == 20
    assert (out / "metrics.jsonl").read_bytes() == (tmp_path / "ref" / "metrics.jsonl").read_bytes()
    assert _same_state(_final_state(out), _final_state(tmp_path / "ref"))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.integration
@needs_mnist
def test_sigint_mid_epoch_stops_cleanly_and_resumes_exactly(tmp_path):
    # 8 epochs: after the first one's metrics line, 7 epochs (> 0.5 s on a fast machine) are left
    # for the signal to land in; with 4, a machine twice as fast finished training before it came
    args = [*TRAIN, "--limit", "1000", "--epochs", "8"]
    ref = _cli(*args, "--out", str(tmp_path / "ref"))
    ref.communicate(timeout=600)
    assert ref.returncode == 0
    out = tmp_path / "run"
    proc = _cli(*args, "--out", str(out))
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.05)  # inside epoch 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [err.strip()] and "stopped by SIGINT" in err and "--resume" in err
    assert (out / "history.csv").is_file()
    resumed = _cli(*args, "--out", str(out), "--resume")
    resumed.communicate(timeout=600)
    assert resumed.returncode == 0
    assert (out / "metrics.jsonl").read_bytes() == (tmp_path / "ref" / "metrics.jsonl").read_bytes()
    assert _same_state(_final_state(out), _final_state(tmp_path / "ref"))


def test_names_from_the_command_line_never_leave_the_output_root(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--guide", "zero-mean-fc1/../../x", "--no-progress"]) == 2
    assert "cannot name a folder" in capsys.readouterr().err
    assert cli.main(["compare", "--guides", "layer,../../evil", "--no-progress"]) == 2
    assert "cannot name a folder" in capsys.readouterr().err
    assert cli.main(["train", "--guide", "/etc/x", "--no-progress"]) == 2
    assert list(tmp_path.iterdir()) == []  # nothing was created


@needs_mnist
def test_bit_flip_and_corrupt_data_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*TRAIN, "--limit", "200", "--epochs", "1", "--out", str(out)]) == 0
    blob = bytearray((out / "checkpoint.pt").read_bytes())
    blob[len(blob) // 3] ^= 0x01
    (out / "checkpoint.pt").write_bytes(bytes(blob))
    capsys.readouterr()
    assert cli.main(["prune", str(out), "--limit", "100", "--samples", "1"]) == 2
    err = capsys.readouterr().err
    assert "SHA-256 checksum" in err and len(err.strip().splitlines()) == 1
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (raw / f"{split}-{kind}-ubyte").write_bytes(b"")
    bad_data = ["train", "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "x"), "--no-progress"]
    assert cli.main(bad_data) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte is corrupt: the file is empty" in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        cli.main(["train", "--limit", "-5"])


def _peak_rss_mb(k: int) -> float:
    code = (
        "import resource, torch, pyro\n"
        "from pyro_varnet.models import Classifier, LeNet5\n"
        "from pyro_varnet.guides import NetworkGuide\n"
        "from pyro_varnet.infer import predict\n"
        "torch.set_num_threads(1); pyro.set_rng_seed(0)\n"
        "m = Classifier(LeNet5(), 100); g = NetworkGuide(m); x = torch.rand(100, 1, 28, 28); g(x[:2])\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"predict(m, g, x, num_samples={k}, lrt=True)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


@pytest.mark.integration
def test_lrt_prediction_memory_is_bounded_by_the_batch_size():
    """Rows per pass are objects x samples <= batch_size: K = 200 needs no more memory than K = 20
    (before: all 100 x 200 rows in one pass, about 0.8 GB more)."""
    small, large = _peak_rss_mb(20), _peak_rss_mb(200)
    assert large <= 1.5 * small, (small, large)
