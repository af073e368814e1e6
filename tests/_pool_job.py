"""A job for tests/test_pool.py: it creates a process-shared lock in the worker, as tqdm's
``get_lock`` does in every process that shows a progress bar."""

import multiprocessing as mp

_LOCK = None


def job(i: int) -> int:
    global _LOCK
    _LOCK = mp.get_context("spawn").RLock()
    return 2 * i


if __name__ == "__main__":
    from pyro_varnet._pool import map_processes

    print(map_processes(job, range(4), processes=2))
