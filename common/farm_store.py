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


def check_store(url: str, options: dict | None = None, timeout_s: float = 30.0) -> Store:
    """The store, once it has answered a read and a write (its identity); else a `StoreError`
    naming the URL and what to fix, within `timeout_s` whatever the backend does."""
    import concurrent.futures

    from common.errors import StoreError, StoreUnavailable

    def probe() -> Store:
        store = Store(url, options)
        store.identity()
        return store

    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-check")
    try:
        return pool.submit(probe).result(timeout_s)
    except concurrent.futures.TimeoutError:
        raise StoreUnavailable(f"the store at {url} did not answer within {timeout_s:.0f} s: is its server up, "
                               "and FARM_STORE_OPTIONS' endpoint_url (or AWS_ENDPOINT_URL) right?") from None
    except StoreError as exc:
        cause = exc.__cause__
        if isinstance(cause, FileNotFoundError):
            bucket = url.split("://", 1)[-1].split("/", 1)[0]
            raise StoreError(f"the store at {url} has no bucket {bucket!r} (the server says: {cause}): create it "
                             f"(e.g. `aws s3 mb s3://{bucket}`) or fix FARM_STORE") from None
        raise
    finally:
        pool.shutdown(wait=False)
