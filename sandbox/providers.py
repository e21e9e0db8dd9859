"""One provider per distinct backend config per process: providers own live bounds, pools and
hosts, so every sandbox of a config must come from the same one. All are shut down at exit."""

from __future__ import annotations

import atexit
import threading
from typing import Callable, TypeVar

P = TypeVar("P")
_providers: dict[str, object] = {}
_lock = threading.Lock()


def provider_for(config, make: Callable[[object], P]) -> P:
    key = config.model_dump_json()
    with _lock:
        if key not in _providers:
            _providers[key] = make(config)
        return _providers[key]  # type: ignore[return-value]


def shutdown_providers() -> None:
    with _lock:
        providers = list(_providers.values())
        _providers.clear()
    for p in providers:
        p.shutdown()


atexit.register(shutdown_providers)
