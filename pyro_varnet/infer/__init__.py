"""Training (loss module, optimizer, loop, callbacks, checkpoints) and prediction in the paper's modes."""

from ..metrics import accuracy, nll
from .batches import tensor_loader
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .elbo import DecomposedELBO, DecomposedELBOModule
from .fit import Checkpoint, Evaluate, SchedulerStep, evaluate, fit, param_groups, restore, site_log_alpha
from .history import History
from .loop import Callback, FlushSubnormals, Loop, Step, flush_subnormals_, initialize
from .predict import BATCH_SIZE, MODES, predict, predictive_uncertainty
from .schedules import constant, hold_then_decay, kl_warmup, linear_decay

__all__ = [
    "BATCH_SIZE",
    "MODES",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "DecomposedELBO",
    "DecomposedELBOModule",
    "Evaluate",
    "History",
    "Loop",
    "SchedulerStep",
    "Step",
    "FlushSubnormals",
    "flush_subnormals_",
    "accuracy",
    "constant",
    "evaluate",
    "fit",
    "hold_then_decay",
    "initialize",
    "kl_warmup",
    "linear_decay",
    "load_checkpoint",
    "nll",
    "param_groups",
    "predict",
    "predictive_uncertainty",
    "restore",
    "save_checkpoint",
    "site_log_alpha",
    "tensor_loader",
]
