"""Jobs for tests/test_pool.py: ``job`` creates a process-shared lock in the worker, as tqdm's
``get_lock`` does in every process that shows a progress bar; ``interrupted`` stops as ``fit``
does on SIGTERM. Run as a module, it maps one of them over a 2-process pool."""

import multiprocessing as mp

_LOCK = None


def interrupted(i: int) -> int:
    """A job stopped by SIGTERM during its epoch ``i``, as ``fit`` stops on the signal."""
    import signal

    from pyro_varnet.infer.loop import Interrupted

    raise Interrupted(signal.SIGTERM, i)


def job(i: int) -> int:
    global _LOCK
    _LOCK = mp.get_context("spawn").RLock()
    return 2 * i


if __name__ == "__main__":
    import sys

    from pyro_varnet._pool import map_processes
    from pyro_varnet.infer.loop import Interrupted

    if sys.argv[1:] == ["interrupted"]:
        try:
            map_processes(interrupted, [7, 7], processes=2)
        except Interrupted as e:
            print(f"{e.epoch} {e.exit_status} {e}")
    else:
        print(map_processes(job, range(4), processes=2))
