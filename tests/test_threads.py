"""Threads per call (given, OMP_NUM_THREADS or idle cores; restored after the call) and the
allocator setting of the ensemble."""

import pytest
import torch

from pyro_varnet import threads as th
from pyro_varnet.data import toy_problem
from pyro_varnet.guides import NetworkGuide
from pyro_varnet.infer import fit, predict
from pyro_varnet.models import MLP, Classifier


def test_auto_respects_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert th.auto_threads() == 3


def test_auto_leaves_busy_cores_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(th, "available_cores", lambda: 4)
    monkeypatch.setattr(th, "idle_cores", lambda: 1.2)  # other processes keep ~3 cores busy
    assert th.auto_threads() == 1
    monkeypatch.setattr(th, "idle_cores", lambda: 0.1)  # a fully loaded machine: still one thread
    assert th.auto_threads() == 1
    monkeypatch.setattr(th, "idle_cores", lambda: 7.9)  # never more than the affinity allows
    assert th.auto_threads() == 4
    monkeypatch.setattr(th, "idle_cores", lambda: None)  # no /proc/stat: every core
    assert th.auto_threads() == 4


def test_idle_cores_is_a_fraction_of_the_machine():
    idle = th.idle_cores(0.05)
    if idle is None:
        pytest.skip("no /proc/stat here")
    import os

    assert 0 <= idle <= (os.cpu_count() or 1) + 1e-9


def test_use_threads_sets_and_restores():
    before = torch.get_num_threads()
    with th.use_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), th.use_threads(1):
        raise RuntimeError("restored even on errors")
    assert torch.get_num_threads() == before
    with th.use_threads(None) as n:
        assert n == before


@pytest.mark.parametrize("bad", [0, -2, "many", 1.5, True])
def test_bad_threads_are_refused(bad):
    with pytest.raises(ValueError, match="positive int, 'auto' or None"):
        th.resolve_threads(bad)


def test_fit_and_predict_run_with_their_threads_and_restore_them():
    x, y = toy_problem(20, seed=0)
    model = Classifier(MLP([2, 8, 4]), num_data=len(x))
    guide = NetworkGuide(model, default="layer")
    seen = []
    before = torch.get_num_threads()
    fit(model, guide, (x, y), epochs=2, batch_size=40, progress=False, seed=0, eval_modes=(), threads=1,
        callbacks=[lambda epoch, metrics: seen.append(torch.get_num_threads())])  # fmt: skip
    assert seen == [1, 1] and torch.get_num_threads() == before
    predict(model, guide, x, num_samples=3, threads=1)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        fit(model, guide, (x, y), epochs=1, threads=0, progress=False)
    with pytest.raises(ValueError, match="threads"):
        predict(model, guide, x, threads="all")


def test_keep_freed_memory_is_once_and_can_be_turned_off(monkeypatch):
    from pyro_varnet import _malloc

    monkeypatch.setattr(_malloc, "_done", None)
    monkeypatch.setenv("PYRO_VARNET_MALLOPT", "0")
    assert _malloc.keep_freed_memory() is False
    assert _malloc.keep_freed_memory() is False  # decided once per process
    monkeypatch.setattr(_malloc, "_done", None)
    monkeypatch.delenv("PYRO_VARNET_MALLOPT")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")  # the user's own choice wins
    assert _malloc.keep_freed_memory() is False
