"""The store every role of a farm uses: one per process and URL, counting what it writes.

    store = store_for(settings)      # Store(settings.store) with StoreCounts on the broker's Redis
    client = redis_client(url)       # the farm's Redis client, riding out restarts

Every process that writes counted artifacts (bundles, gate reports, trajectories, pairs, dead
letters) must write through `store_for`, or `producer status` undercounts until the next check
(`producer status --recount`).
"""

from __future__ import annotations

import threading
from functools import lru_cache

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.settings import Settings, get_settings
from common.store import Store
from common.store_counts import StoreCounts


@lru_cache(maxsize=8)
def redis_client(url: str) -> redis.Redis:
    """A client that rides out a Redis restart (retries with backoff on connection errors)."""
    return redis.Redis.from_url(
        url, retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), 12),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError], health_check_interval=10,
        socket_connect_timeout=5, socket_timeout=30,
    )


_stores: dict[tuple[str, str, str], Store] = {}
_stores_lock = threading.Lock()


def store_for(settings: Settings | None = None) -> Store:
    """The process's Store for the settings' URL and options, counting into the broker's Redis."""
    settings = settings or get_settings()
    key = (settings.store, repr(sorted(settings.store_options.items())), settings.broker_url)
    with _stores_lock:
        if key not in _stores:
            store = Store(settings.store, settings.store_options)
            store.counts = StoreCounts(store, redis_client(settings.broker_url))
            _stores[key] = store
        return _stores[key]
