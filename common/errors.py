"""The exception root of the shared package."""


class FarmError(Exception):
    """Root of errors raised by the shared package; messages say what to do next."""


class InvalidBundle(FarmError, ValueError):
    """A scenario bundle failed validation; `reason` is the short machine-readable cause."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SplitViolation(FarmError, ValueError):
    """Something from a held-out split (val/test) was about to enter training data."""


class StoreError(FarmError, OSError):
    """The artifact store could not be read or written."""


class StoreUnavailable(StoreError, ConnectionError):
    """The store's backend did not answer (server down, endpoint unreachable); worth a retry."""


class StoreMismatch(StoreError):
    """Two roles of one farm point at different stores; both URLs are in the message."""


class NotDeployFormat(FarmError, ValueError):
    """A trajectory's messages break the deploy format (render contract); it cannot be trained on."""
