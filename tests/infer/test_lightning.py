"""pyro_varnet.lightning: Lightning's ``strategy="ddp"`` on 2 CPU processes (gloo) trains what one
process trains, resumes exactly at epoch boundaries, and its checkpoints load into fresh modules.
The multi-process runs are ``python -m tests.infer.lightning_run`` (Lightning's ddp launcher
starts the second process by running the command again)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from pyro_varnet.infer import predict
from pyro_varnet.lightning import VarnetModule, global_batches

from .dist_workers import BATCH, toy

ROOT = Path(__file__).resolve().parents[2]
# Lightning's advice (no val loader for validation_step, num_workers for tiny in-memory data) and
# Lightning 2.6's own use of a deprecated torch pytree check (theirs to fix)
pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"),
]


def _launch(out: Path, devices: int, plan: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "tests.infer.lightning_run", str(out), str(devices), plan]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def _load(out: Path, phase: str, rank: int) -> dict:
    return torch.load(out / f"{phase}-rank{rank}.pt", weights_only=False)


def test_ddp_two_processes_reproduce_one(tmp_path):
    """Same global batch (global_batches), direct sampling: per-step losses of 2 processes equal
    those of 1 within 1e-6 relative over 10 steps, parameters identical across ranks."""
    _launch(tmp_path, 1, "same")
    _launch(tmp_path, 2, "same")
    one, two = _load(tmp_path, "same1", 0), [_load(tmp_path, "same2", r) for r in (0, 1)]
    loss1 = -np.asarray(one["data"]) + np.asarray(one["kl"])
    loss2 = -np.mean([r["data"] for r in two], 0) + np.asarray(two[0]["kl"])
    assert len(loss1) == len(loss2) == 10
    np.testing.assert_allclose(loss2, loss1, rtol=1e-6)
    np.testing.assert_allclose(two[0]["kl"], one["kl"], rtol=1e-6)
    for k, v in two[0]["state"].items():
        assert torch.equal(v, two[1]["state"][k]), k
        torch.testing.assert_close(v, one["state"][k], rtol=1e-5, atol=1e-6)


def test_ddp_resume_is_exact_at_epoch_boundaries(tmp_path):
    """Under LRT with per-rank noise: 2 epochs, a checkpoint, and 2 more epochs from it in a
    fresh Trainer and module give bit for bit the steps and parameters of 4 epochs in one go."""
    _launch(tmp_path, 2, "resume")
    for rank in (0, 1):
        whole, first, resumed = (_load(tmp_path, p, rank) for p in ("whole", "first", "resumed"))
        assert first["data"] == whole["data"][:10]
        assert resumed["data"] == whole["data"][10:]
        for k, v in whole["state"].items():
            assert torch.equal(v, resumed["state"][k]), (rank, k)


def test_checkpoint_loads_into_a_fresh_module(tmp_path):
    """A fresh module whose guide has no sites yet loads a Lightning checkpoint (no "Unexpected
    key(s) guide.sites...") and predicts what the trained one predicts."""
    model, guide, (x, y) = toy("layer")
    module = VarnetModule(model, guide, example=(x, y), lr=1e-2)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, global_batches(x, y, BATCH))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    model2, guide2, _ = toy("layer")
    assert len(guide2.sites) == 0
    fresh = VarnetModule.load_from_checkpoint(tmp_path / "m.ckpt", model=model2, guide=guide2, example=(x, y))
    torch.testing.assert_close(predict(model2, guide2, x, mode="mean"), predict(model, guide, x, mode="mean"))
    assert isinstance(fresh, VarnetModule)


def test_global_batches_one_process_order_is_a_shuffling_dataloader():
    x, y = torch.randn(23, 2), torch.arange(23)
    ours = [b[1].tolist() for b in global_batches(x, y, 5, seed=3)]
    plain = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(3)
    )
    assert ours == [b[1].tolist() for b in plain]
    with pytest.raises(ValueError, match="NaN"):
        global_batches(x.clone().fill_(float("nan")), y, 5)


@pytest.mark.parametrize("precision", ["64-true", "bf16-mixed"])
def test_precision_settings(precision):
    """Lightning's precision plugins: "64-true" converts the built guide and the batches to
    float64; "bf16-mixed" runs the step under CPU autocast; both give a finite ELBO."""
    model, guide, (x, y) = toy("layer")
    module = VarnetModule(model, guide, example=(x, y), lr=1e-2)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, global_batches(x, y, BATCH))
    assert np.isfinite(float(trainer.callback_metrics["elbo"]))
    dtype = torch.float64 if precision == "64-true" else torch.float32
    assert all(p.dtype == dtype for p in [*model.parameters(), *guide.parameters()])
