"""The exception root of the gpu package.

Every error raised on purpose inside gpu/ derives from `GpuError`; subclasses
also inherit the builtin they behave like, so callers may catch either.
"""


class GpuError(Exception):
    """Root of errors raised by the gpu package; messages say what to do next."""


class RowRefused(GpuError, ValueError):
    """A conversation cannot become a training row; `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class InvalidConversation(GpuError, ValueError):
    """Messages that no canonicalisation can turn into a user/assistant conversation."""


class BaseModelUnavailable(GpuError, LookupError):
    """The base model named in settings cannot be found or loaded here."""


class UnsupportedPrecision(GpuError, ValueError):
    """A precision this machine cannot run at a useful speed (bf16 on a CPU without native bf16)."""
