"""The workers package's exception root. Others may add subclasses; keep it small."""


class WorkerError(Exception):
    """Root of errors raised by the per-stage worker logic; messages say what to do next."""


class OperatorError(WorkerError, RuntimeError):
    """The operator could not produce a reply (model unreachable after retries, refused, ...).

    A rollout turns this into the outcome `operator_error`; it never crashes an episode.
    """


class UnknownOperator(OperatorError, LookupError):
    """The operator spec names no known operator, or its model string is malformed."""
