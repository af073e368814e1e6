"""Map a function over jobs on spawned worker processes (or in this process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def map_processes(fn: Callable, jobs: Iterable, processes: int = 1) -> list:
    """``[fn(job) for job in jobs]``, in order; with ``processes > 1`` on that many spawned
    processes (``fn`` and the jobs must pickle: a module-level function), one job at a time each."""
    jobs = list(jobs)
    if processes > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(processes, len(jobs))) as pool:
            results = pool.map(fn, jobs, chunksize=1)
            pool.close()  # let the workers exit on their own (leaving the block terminates them)
            pool.join()
        return results
    return [fn(job) for job in jobs]
