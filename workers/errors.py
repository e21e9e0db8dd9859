"""The workers package's exception root. Others may add subclasses; keep it small."""

from common.errors import TransientFailure


class WorkerError(Exception):
    """Root of errors raised by the per-stage worker logic; messages say what to do next."""


class OperatorError(WorkerError, RuntimeError):
    """The operator could not produce a reply (refused, a bad request, a malformed completion, ...).

    A rollout turns this into the outcome `operator_error`; it never crashes an episode.
    """


class UnknownOperator(OperatorError, LookupError):
    """The operator spec names no known operator, or its model string is malformed."""


class ModelUnavailable(OperatorError, TransientFailure):
    """The model provider throttled or could not be reached, past the caller's own retries.

    A failure of the farm, not of the operator: the episode is not recorded, its task is retried.
    """
