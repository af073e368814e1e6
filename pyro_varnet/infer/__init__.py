"""Training (SVI loop, schedules, checkpoints) and prediction in the paper's modes."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .elbo import DecomposedELBO
from .fit import evaluate, fit, restore, site_log_alpha
from .history import History
from .predict import BATCH_SIZE, MODES, accuracy, nll, predict
from .schedules import constant, hold_then_decay, kl_warmup, linear_decay

__all__ = [
    "BATCH_SIZE",
    "MODES",
    "CheckpointError",
    "DecomposedELBO",
    "History",
    "accuracy",
    "constant",
    "evaluate",
    "fit",
    "kl_warmup",
    "linear_decay",
    "hold_then_decay",
    "load_checkpoint",
    "nll",
    "predict",
    "restore",
    "save_checkpoint",
    "site_log_alpha",
]
