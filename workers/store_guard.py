"""One farm, one store: every role must read and write the same store, whatever its URL says.

- A sender stamps each task it sends with its store's identity and URL (`stamp`).
- A worker refuses a task stamped by another store (`refuse_foreign`): it puts the task back,
  stops taking work and logs both URLs, since a worker that cannot serve this farm must not
  eat its tasks.
- Running workers announce their store in Redis (`sekfarm:nodes`), so a producer refuses to
  start against a farm whose workers use another store (`check_same_store`).
- A worker checks at start that its store answers, and stops with a clear message if not.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from celery.exceptions import Reject
from celery.signals import worker_init, worker_ready, worker_shutdown

from common.errors import StoreError, StoreMismatch
from common.settings import get_settings
from common.store import Store

log = logging.getLogger(__name__)
STORE_HEADER = "farm_store"
NODES_KEY = "sekfarm:nodes"
HEARTBEAT_S = 20.0
_stop = threading.Event()


def stamp(store: Store) -> dict[str, str]:
    """Message headers naming the sender's store."""
    return {STORE_HEADER: f"{store.identity()} {store.url}"}


def refuse_foreign(task, store: Store) -> None:
    """Raise `Reject` (requeued) when the task was sent by a farm whose store is not this worker's."""
    stamped = task.request.get(STORE_HEADER)
    if not stamped:
        return
    identity, _, url = str(stamped).partition(" ")
    if identity == store.identity():
        return
    msg = (f"refusing {task.name}[{task.request.id}]: it was sent with the store {url} (id {identity}), but this "
           f"worker uses {store.url} (id {store.identity()}). Point FARM_STORE (and FARM_STORE_OPTIONS) of every "
           "role at the same store; this worker takes no more tasks")
    log.error(msg)
    hostname = task.request.hostname
    if hostname:
        from workers.celery_app import QUEUES

        for queue in QUEUES:
            task.app.control.cancel_consumer(queue, destination=[hostname])
    raise Reject(msg, requeue=True)


def check_same_store(store: Store, client, role: str = "producer") -> None:
    """Raise `StoreMismatch` when a live worker of this broker uses another store."""
    now = time.time()
    mine = store.identity()
    others = []
    for name, raw in client.hgetall(NODES_KEY).items():
        node = json.loads(raw)
        if now - node.get("at", 0) < 3 * HEARTBEAT_S and node.get("identity") != mine:
            others.append(f"{name.decode()} uses {node.get('url')} (id {node.get('identity')})")
    if others:
        raise StoreMismatch(f"this {role} uses the store {store.url} (id {mine}), but on the same broker "
                            + "; ".join(sorted(others)) + ". Point FARM_STORE (and FARM_STORE_OPTIONS) of every "
                            "role at the same store")


def _announce(client, name: str, store: Store) -> None:
    payload = json.dumps({"url": store.url, "identity": store.identity(), "at": time.time(), "pid": os.getpid()})
    client.hset(NODES_KEY, name, payload)


def _heartbeat(client, name: str, store: Store) -> None:
    while not _stop.wait(HEARTBEAT_S):
        try:
            _announce(client, name, store)
        except Exception as exc:  # Redis away for a moment: the next beat tries again
            log.warning("could not announce this worker's store: %s", exc)


@worker_init.connect
def _check_store_at_start(**_) -> None:
    from common.farm_store import check_store

    settings = get_settings()
    try:
        check_store(settings.store, settings.store_options)
    except StoreError as exc:
        log.error("error: %s", exc)
        logging.shutdown()
        os._exit(2)  # a worker without its store would only fail every task it takes


@worker_ready.connect
def _start_heartbeat(sender=None, **_) -> None:
    from common.farm_store import redis_client, store_for

    settings = get_settings()
    store = store_for(settings)
    name = getattr(sender, "hostname", None) or socket.gethostname()
    client = redis_client(settings.broker_url)
    try:
        check_same_store(store, client, role=f"worker {name}")
    except StoreMismatch as exc:
        log.error("error: %s", exc)
    _announce(client, name, store)
    threading.Thread(target=_heartbeat, args=(client, name, store), name="store-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_heartbeat(sender=None, **_) -> None:
    _stop.set()
    try:
        from common.farm_store import redis_client

        redis_client(get_settings().broker_url).hdel(NODES_KEY, getattr(sender, "hostname", "") or "")
    except Exception:  # the broker may be gone already; the entry ages out
        pass
