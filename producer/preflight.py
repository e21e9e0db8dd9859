"""Checks for what a user can get wrong, each failing with what to do next (no traceback)."""

from __future__ import annotations

import redis

from common.settings import Settings
from producer.errors import BadArgument, BrokerUnreachable, PrerequisiteMissing


def check_broker(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnreachable(
            f"cannot reach the broker at {_redact(url)} ({exc}). Start Redis (`docker compose up -d redis`), "
            "set FARM_BROKER_URL (or --broker), or use `producer run` for a self-contained run") from exc
    except redis.AuthenticationError as exc:
        raise BrokerUnreachable(f"the broker at {_redact(url)} refused the password: set it in FARM_BROKER_URL "
                                "as redis://:PASSWORD@host:port/0") from exc
    return client


def check_author(author: str) -> None:
    if author == "procedural":
        return
    if author.startswith("litellm:") and author.removeprefix("litellm:").strip():
        return
    raise BadArgument(f"unknown author {author!r}: use 'procedural' or 'litellm:MODEL' "
                      "(e.g. litellm:openai/gpt-4o-mini)")


def check_operator(operator: str, settings: Settings) -> None:
    from workers.errors import UnknownOperator
    from workers.operators import OPERATORS

    name, _, arg = operator.partition(":")
    if name not in OPERATORS or (name in ("litellm", "student", "continue") and not arg.strip()):
        raise BadArgument(f"unknown operator {operator!r}: use one of oracle, scripted, litellm:MODEL, "
                          "student:ADAPTER")
    if name in ("oracle", "scripted"):
        try:
            from workers.operators import make_operator

            make_operator(operator, settings)
        except UnknownOperator as exc:
            raise BadArgument(str(exc)) from exc


def check_sandbox(settings: Settings) -> None:
    """The sandbox backend can start worlds here (for docker: the engine answers and has the image)."""
    from sandbox.errors import SandboxError

    try:
        settings.sandbox.check_ready()
    except SandboxError as exc:
        raise PrerequisiteMissing(str(exc)) from exc


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def check_store(settings: Settings):
    """The store answers (read and write) at its URL: the Store, or a fix to make, within seconds."""
    from common.errors import StoreError
    from common.farm_store import check_store as probe

    try:
        probe(settings.store, settings.store_options)
    except StoreError as exc:
        raise PrerequisiteMissing(str(exc)) from exc
    from common.farm_store import store_for

    return store_for(settings)


def check_same_store(store, client) -> None:
    """Refuse a farm whose live workers use another store than this producer (both URLs named)."""
    from workers.store_guard import check_same_store as check

    check(store, client)
