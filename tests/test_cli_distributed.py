"""``varnet train --devices N``: N processes through torchrun's launcher, rank 0 writing the run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from pyro_varnet.infer import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _varnet(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "pyro_varnet.cli", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_train_on_two_processes(tmp_path):
    args = ["train", "--model", "lenet300-100", "--guide", "layer", "--limit", "400", "--eval-modes", "mean",
            "--eval-samples", "2", "--no-progress", "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    done = _varnet(*args, "--epochs", "1", "--devices", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stdout
    assert done.stdout.count("epoch 1:") == 1  # rank 0 prints, rank 1 is silent
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["config"]["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])  # per-rank LRT noise
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]
    # resuming with another number of processes is refused unless overridden (exact 2-process
    # resume: tests/infer/test_distributed.py)
    done = _varnet(*args, "--epochs", "2", "--resume")
    assert done.returncode == 2 and "world_size 2 (now 1)" in done.stderr


def test_batchnorm_on_cpu_processes_needs_a_choice(tmp_path):
    args = ["train", "--model", "lenet5-bn", "--limit", "200", "--epochs", "1", "--no-progress", "--device", "cpu",
            "--devices", "2", "--out", str(tmp_path)]  # fmt: skip
    done = _varnet(*args)
    assert done.returncode != 0 and "--sync-batchnorm off" in done.stderr
