"""Children of an embedded run die with it: a killed `producer run` leaves no workers behind.

Linux only (prctl PR_SET_PDEATHSIG); elsewhere the children are stopped by the parent's
own shutdown path as before. The signal is SIGTERM by default, so a Celery worker shuts down
warm and its late-acked tasks go back to the queue. A worker whose task may run for an hour
and is not late-acked (the GPU worker: training, eval) gets SIGQUIT, Celery's cold shutdown:
a warm one would outlive its parent until that task ended.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """A `preexec_fn`: ask the kernel to send `sig` to this child when its parent exits."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
