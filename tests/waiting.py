"""Polling for tests that wait on real processes (workers, compose services, Redis)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(pred: Callable[[], object], timeout: float, every: float = 0.25) -> bool:
    """True as soon as `pred()` is truthy; False once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return False
