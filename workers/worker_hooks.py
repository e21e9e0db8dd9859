"""Worker lifecycle hooks: sandbox workers remove orphaned containers on start and then
periodically, so a worker killed mid-episode (SIGKILL, OOM, node loss) leaves nothing behind.

A container is an orphan when its owner process is dead, its deadline passed or it
stopped (see sandbox.cleanup). The sweep runs only in workers that start sandboxes.
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
    from sandbox import config_from_settings
    from sandbox.cleanup import cleanup_orphans

    config = config_from_settings(get_settings())
    if config.type != "docker":
        return 0
    try:
        removed = cleanup_orphans(config)
    except Exception as exc:  # the engine may be briefly away; the next sweep tries again
        log.warning("orphan sweep failed: %s", exc)
        return 0
    if removed:
        log.info("removed %d orphaned sandbox container(s)", removed)
    return removed


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
    if get_settings().sandbox_backend != "docker":
        return
    sweep_once()
    threading.Thread(target=_sweep_forever, args=(get_settings().orphan_sweep_s,), name="orphan-sweep",
                     daemon=True).start()


@worker_shutdown.connect
def _on_shutdown(**_):
    _stop.set()
