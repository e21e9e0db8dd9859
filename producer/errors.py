"""The producer's exception root: errors a user can cause, each with what to do next.

The CLI prints these as one message and exits non-zero, never with a traceback.
"""


class ProducerError(Exception):
    """Root of producer errors; the message says what to do next."""


class BrokerUnreachable(ProducerError, ConnectionError):
    """The Redis broker cannot be reached."""


class PrerequisiteMissing(ProducerError, RuntimeError):
    """Something the farm needs on this machine is missing (engine, image, binary)."""


class BadArgument(ProducerError, ValueError):
    """An option names something that does not exist (a model string, an operator, a split)."""
