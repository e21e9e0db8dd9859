"""The exception root of the shared package, and the farm's two kinds of failure.

A failure of the *farm* (the engine is down, the sandbox image is missing, the model provider
throttles or cannot be reached) is never data about the work: it travels as an exception
typed `TransientFailure` (a retry may help) or `PermanentFailure` (it cannot, until someone
fixes the farm). Each package's own errors inherit one of them beside the package's root
(e.g. `sandbox.errors.EngineUnavailable`), and the tasks classify by that type alone.
"""


class FarmError(Exception):
    """Root of errors raised by the shared package; messages say what to do next."""


class FarmFailure(FarmError):
    """The farm itself failed, not the work it was given: never recorded as data."""


class TransientFailure(FarmFailure):
    """A failure of the farm that a retry may cure (an engine restarting, a provider throttling)."""


class PermanentFailure(FarmFailure):
    """A failure of the farm that no retry cures (a missing image, a wrong configuration)."""


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


class StoreUnavailable(StoreError, TransientFailure, ConnectionError):
    """The store's backend did not answer (server down, endpoint unreachable); worth a retry."""


class StoreMismatch(StoreError):
    """Two roles of one farm point at different stores; both URLs are in the message."""


class NotDeployFormat(FarmError, ValueError):
    """A trajectory's messages break the deploy format (render contract); it cannot be trained on."""
