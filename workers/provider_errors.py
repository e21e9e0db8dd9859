"""Which model-provider errors (through litellm) are worth a retry: the one list, for the
litellm operator and the LLM author alike. Past their own retries both raise
`workers.errors.ModelUnavailable`, so nothing downstream needs to know litellm's types."""

from __future__ import annotations


def transient_provider_errors() -> tuple[type[BaseException], ...]:
    """Throttling, timeouts, connection and server-side failures (litellm is imported on first use)."""
    import litellm

    e = litellm.exceptions
    return (e.RateLimitError, e.APIConnectionError, e.Timeout, e.ServiceUnavailableError,
            e.InternalServerError, e.BadGatewayError)
