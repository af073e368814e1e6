"""How many CPU threads torch uses for a call: given, from ``OMP_NUM_THREADS``, or from the idle cores.

On a small machine that another process keeps busy, torch's default (one thread per core)
makes every op wait for the slowest thread: a Pyro SVI step of a small model ran 20-30x
slower with 2 threads than with 1 on a 2-core machine with one core taken. ``fit``,
``predict`` and the CLI take ``threads``: an int, or ``"auto"`` (what :func:`auto_threads`
finds), or ``None`` to leave torch's setting alone.
"""

from __future__ import annotations

import contextlib
import os
import time

import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def idle_cores(window: float = 0.1) -> float | None:
    """Cores left idle by the other processes over ``window`` seconds (this one sleeps meanwhile);
    ``None`` where /proc/stat is not available."""
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(window)
    after = _cpu_times()
    busy, total = after[0] - before[0], after[1] - before[1]
    cores = os.cpu_count() or 1
    return cores * (1 - busy / total) if total > 0 else float(cores)


def auto_threads() -> int:
    """``OMP_NUM_THREADS`` when set; else the cores of this process's affinity that other
    processes leave idle (at least 1): a busy core would make every parallel op wait."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = available_cores()
    idle = idle_cores()
    if idle is None:
        return cores
    return max(1, min(cores, int(idle + 0.5)))


def resolve_threads(threads: int | str | None) -> int | None:
    """``threads`` as a number of threads (``None`` stays ``None``), checked."""
    if threads is None:
        return None
    if threads == "auto":
        return auto_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"expected threads to be a positive int, 'auto' or None, got {threads!r}")
    return threads


@contextlib.contextmanager
def use_threads(threads: int | str | None):
    """Run the block with ``torch.set_num_threads(threads)`` (``"auto"``: :func:`auto_threads`;
    ``None``: unchanged) and restore torch's previous setting afterwards."""
    n = resolve_threads(threads)
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield n if n is not None else before
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


__all__ = ["auto_threads", "available_cores", "idle_cores", "resolve_threads", "use_threads"]
