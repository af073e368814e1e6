"""Keep freed activation memory in the process (glibc), so large ensemble passes do not page-fault.

A stacked 20-sample ensemble pass of a LeNet-5 at 1 000 rows allocates activations of tens of
MB. glibc serves blocks above its mmap threshold (dynamic, at most 32 MB) with fresh mmaps
and returns heap memory above its trim threshold to the system after every free, so each
pass faults its memory back in: 680 000 minor faults and 1.53x the time of 20 plain passes
for 1 000 MNIST images, against 1 074 faults and 1.09x with the thresholds raised
(``benchmarks/run_all.py``). :func:`keep_freed_memory` raises them once per process, as the
``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` environment variables would; the
cost is that up to ``trim`` bytes of freed memory stay with the process. It does nothing off
glibc, when those variables are set, or when ``PYRO_VARNET_MALLOPT=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_done: bool | None = None


def keep_freed_memory(trim: int = 1 << 30, mmap: int = 256 << 20) -> bool:
    """Raise glibc's trim and mmap thresholds (once); ``True`` if they are raised now or were."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get("PYRO_VARNET_MALLOPT", "1") == "0":
        return False
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False  # the user chose
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(M_TRIM_THRESHOLD, trim)) and bool(mallopt(M_MMAP_THRESHOLD, mmap))
    return _done
