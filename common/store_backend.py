"""How the store meets its fsspec backend: options, a local write-once create, and which
backend failures mean "unavailable" (worth a retry) rather than "wrong"."""

from __future__ import annotations

import os
import uuid

from common.errors import StoreError, StoreUnavailable

TMP_PREFIX = ".tmp-"


def create_local(target: str, data: bytes) -> bool:
    """Write a local file once, atomically: False (and nothing written) when it exists."""
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(target):
        return False
    tmp = os.path.join(directory, f"{TMP_PREFIX}{uuid.uuid4().hex}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        # link() is an atomic put-if-absent: it fails when the name exists, where rename would overwrite.
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


# Errors of a backend that is down or unreachable, by class name (fsspec backends raise their
# SDK's own types: botocore's and aiohttp's are not OSErrors, and common must not import them).
_UNAVAILABLE_NAMES = {"HTTPClientError", "EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
                      "ReadTimeoutError", "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
                      "FSTimeoutError", "ServiceUnavailable", "SlowDown"}


def backend_error(url: str, action: str, exc: BaseException) -> StoreError:
    """The store's error for a backend failure: `StoreUnavailable` (transient) when the backend
    could not be reached, else `StoreError` with what to check."""
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, (ConnectionError, TimeoutError)) or names & _UNAVAILABLE_NAMES:
        return StoreUnavailable(f"cannot {action}: the store at {url} did not answer ({type(exc).__name__}: {exc}); "
                                "is its server up and FARM_STORE_OPTIONS' endpoint right?")
    if isinstance(exc, PermissionError) or "AccessDenied" in str(exc) or "InvalidAccessKeyId" in str(exc):
        return StoreError(f"cannot {action}: the store at {url} refused the credentials ({exc}); set them in "
                          "FARM_STORE_OPTIONS or the backend's environment (AWS_ACCESS_KEY_ID, ...)")
    return StoreError(f"cannot {action} in the store at {url}: {type(exc).__name__}: {exc}")


def store_options(url: str, options: dict | None = None) -> dict:
    """The fsspec options for `url`: FARM_STORE_OPTIONS (unless `options` is given), and never a
    listings cache. A local path takes none of the remote options."""
    if options is None:
        from common.settings import get_settings

        options = get_settings().store_options
    if "://" not in url or url.startswith("file://"):
        return {}
    return {**options, "use_listings_cache": False}
