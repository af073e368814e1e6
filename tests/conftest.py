import os

import pyro
import pytest
import torch

# tests read MNIST from the shared folder beside the checkout unless told otherwise
_SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
# absolute: the notebooks' kernels and the CLI's subprocesses run in other folders
os.environ["PYRO_VARNET_DATA"] = os.path.abspath(os.environ.get("PYRO_VARNET_DATA", _SHARED))
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _pyro_state():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()
