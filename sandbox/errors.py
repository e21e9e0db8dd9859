"""The sandbox's exception root.

A command that fails is *data* (a CommandResult with its exit status). These
exceptions mean the sandbox itself is broken; they never reach the model as output.
Each subclass also inherits the builtin it resembles, so callers can catch either.
The two that are failures of the farm rather than of an episode (no engine, no image) also
carry its transient/permanent type (common.errors), which is how the tasks classify them.
"""

from common.errors import PermanentFailure, TransientFailure


class SandboxError(Exception):
    """Root of sandbox failures. The message says what to do next."""


class EngineUnavailable(SandboxError, TransientFailure, ConnectionError):
    """The container engine cannot be reached (daemon down, socket missing, no permission)."""


class ImageMissing(SandboxError, PermanentFailure, LookupError):
    """The sandbox image is not present in the engine."""

    @classmethod
    def build_hint(cls, image: str) -> "ImageMissing":
        return cls(f"sandbox image {image!r} is missing. Build it: `sandbox/image/build.sh {image}` "
                   f"(offline) or `docker build -f Dockerfile.dash -t {image} .`")


class SandboxBusy(SandboxError, TransientFailure, TimeoutError):
    """No sandbox slot freed in time (max_live reached): the farm is saturated, not the episode wrong."""


class SandboxDied(SandboxError, RuntimeError):
    """The container stopped or vanished while in use."""


class SandboxTimeout(SandboxError, TimeoutError):
    """The sandbox's total wall-clock limit ran out."""


class SandboxClosed(SandboxError, RuntimeError):
    """The sandbox was used after close()."""
