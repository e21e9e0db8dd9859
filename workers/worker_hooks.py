"""Worker lifecycle hooks: sandbox workers remove orphaned containers on start and then
periodically, so a worker killed mid-episode (SIGKILL, OOM, node loss) leaves nothing behind.

A container is an orphan when its owner process is dead, its deadline passed or it
stopped (see sandbox/docker/cleanup.py); a dead worker's network-namespace holders are orphans too.
The sweep, and the warm-up of the holders, run only in workers that start sandboxes.
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown

from common.settings import get_settings

log = logging.getLogger(__name__)
SANDBOX_QUEUES = {"gate", "rollout"}
_stop = threading.Event()


def sweep_once() -> int:
    try:
        removed = get_settings().sandbox.sweep_orphans()
    except Exception as exc:  # the engine may be briefly away; the next sweep tries again
        log.warning("orphan sweep failed: %s", exc)
        return 0
    if removed:
        log.info("removed %d orphaned sandbox container(s)", removed)
    return removed


def warm_netns(concurrency: int | None = None) -> int:
    """Prepare this worker's backend before its first episode (the docker backend starts its
    network-namespace holders, sandbox/docker/netns_pool.py: each is a new namespace, the
    costliest part of a container). As many as episodes can be live at once: the worker's
    concurrency, at most max_live."""
    config = get_settings().sandbox
    try:
        return config.warm_up(concurrency or config.max_live)
    except Exception as exc:  # the first episodes start them instead
        log.warning("could not start network-namespace holders: %s", exc)
        return 0


def _sweep_forever(interval: float) -> None:
    while not _stop.wait(interval):
        sweep_once()


@worker_ready.connect
def _on_ready(sender=None, **_):
    try:
        queues = set(sender.app.amqp.queues.consume_from or {})
    except AttributeError:
        queues = set()
    if queues and not queues & SANDBOX_QUEUES:
        return
    if not get_settings().sandbox.starts_worlds:
        return
    sweep_once()
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", None)
    threading.Thread(target=warm_netns, args=(concurrency,), name="netns-warm", daemon=True).start()
    threading.Thread(target=_sweep_forever, args=(get_settings().orphan_sweep_s,), name="orphan-sweep",
                     daemon=True).start()


@worker_shutdown.connect
def _on_shutdown(**_):
    _stop.set()
