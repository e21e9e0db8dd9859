"""A model operator through litellm: any provider, or a local OpenAI-compatible server.

    LitellmOperator("openai/gpt-4o-mini", api_base=..., api_key=...)   # spec "litellm:MODEL"
    student_operator("my-adapter", settings)                           # spec "student:ADAPTER"

A student is an adapter served by the GPU node's OpenAI-compatible endpoint, so it is
litellm's `openai/ADAPTER` at `settings.student_api_base`. Rate limits and transient
failures are retried with exponential backoff, and past the retries raise `ModelUnavailable`
(a failure of the farm: the rollout task retries the episode); anything else (bad model
string, auth, bad request) fails at once with an `OperatorError` (recorded as the outcome).
"""

from __future__ import annotations

import os
import random
import time

from common.bundle import Bundle
from common.settings import Settings
from common.trajectory import Message
from workers.errors import ModelUnavailable, OperatorError, UnknownOperator
from workers.operators.base import OperatorReply
from workers.provider_errors import transient_provider_errors

# Keep litellm offline: no fetch of the remote model cost map at import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# A local server still needs some key in the request; it ignores its value.
PLACEHOLDER_KEY = "sk-sekfarm-local"


class LitellmOperator:
    needs_scaffold = True

    def __init__(self, model: str, api_base: str | None = None, api_key: str | None = None,
                 temperature: float = 0.7, max_tokens: int = 256, retries: int = 3,
                 backoff_s: float = 0.5, timeout_s: float = 60.0, spec: str | None = None):
        if not model or any(c.isspace() for c in model):
            raise UnknownOperator(f"invalid model string {model!r}: expected e.g. 'openai/gpt-4o-mini'")
        self.model = model
        self.spec = spec or f"litellm:{model}"
        self.api_base = api_base
        self.api_key = api_key
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._rng = random.Random(0)

    @classmethod
    def from_settings(cls, model: str, settings: Settings, spec: str | None = None) -> "LitellmOperator":
        return cls(model, api_base=settings.teacher_api_base, api_key=settings.teacher_api_key,
                   temperature=settings.temperature, max_tokens=settings.max_tokens, spec=spec)

    def begin(self, bundle: Bundle, seed: int) -> None:
        # A model is not privileged; the seed only jitters the backoff.
        self._rng = random.Random(seed)

    def reply(self, messages: list[Message]) -> OperatorReply:
        import litellm

        transient = transient_provider_errors()
        payload = [{"role": m.role, "content": m.content} for m in messages]
        start = time.perf_counter()
        last: BaseException | None = None
        for attempt in range(self.retries + 1):
            try:
                response = litellm.completion(
                    model=self.model, messages=payload, api_base=self.api_base,
                    api_key=self.api_key or (PLACEHOLDER_KEY if self.api_base else None),
                    temperature=self.temperature, max_tokens=self.max_tokens,
                    timeout=self.timeout_s, num_retries=0,
                )
            except transient as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(self.backoff_s * (2 ** attempt) * (1 + self._rng.random() * 0.25))
                continue
            except Exception as exc:  # noqa: BLE001 - litellm raises many types; all end the episode
                raise OperatorError(f"{self.spec}: {type(exc).__name__}: {str(exc)[:500]}") from exc
            try:
                choice = response.choices[0]
                message = choice.message
                text = (message.content or "") if message else ""
            except (AttributeError, IndexError, TypeError) as exc:
                raise OperatorError(f"{self.spec}: malformed completion ({exc}); is the endpoint OpenAI-compatible?") from exc
            usage = getattr(response, "usage", None)
            return OperatorReply(
                text=text,
                tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
                tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
                latency_ms=(time.perf_counter() - start) * 1000,
                finish_reason=getattr(choice, "finish_reason", None) or None,
            )
        raise ModelUnavailable(
            f"{self.spec}: no reply after {self.retries + 1} attempts "
            f"({type(last).__name__}: {str(last)[:300]}); check the API base and the model server"
        ) from last


def student_operator(adapter: str, settings: Settings) -> LitellmOperator:
    """The student adapter behind the resident OpenAI-compatible server."""
    if not settings.student_api_base:
        raise UnknownOperator(f"student:{adapter} needs FARM_STUDENT_API_BASE (the resident server's /v1 URL)")
    op = LitellmOperator(
        f"openai/{adapter}", api_base=settings.student_api_base, api_key=PLACEHOLDER_KEY,
        temperature=settings.temperature, max_tokens=settings.max_tokens, spec=f"student:{adapter}",
    )
    # The student is trained on the imperative-free deploy format and is deployed without a
    # scaffold, so it sees none here either: at rollout and at held-out eval alike.
    op.needs_scaffold = False
    return op
