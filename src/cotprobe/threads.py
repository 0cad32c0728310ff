"""One explicit CPU thread count per process, so a CPU result does not depend on machine defaults.

torch's intra-op pool defaults to the machine's cores (or ``OMP_NUM_THREADS``), and a different
count changes the order of floating-point reductions: a training run with 2 threads lands
somewhere else than with 1. Every verb that trains or runs a model pins the count it was given
(a rule's ``threads``) before torch is imported, and again on torch if it already is.
"""

from __future__ import annotations

import os
import sys

_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pin_threads(n: int | None) -> int:
    """Use ``n`` CPU threads in this process and its children (``n`` <= 0 or None: all available).

    Sets the thread variables that torch and the BLAS libraries read when they load, and
    ``torch.set_num_threads`` when torch is already imported. Returns the count pinned.
    """
    n = int(n) if n and n > 0 else available_cpus()
    for var in _VARS:
        os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n
