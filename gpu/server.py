"""The resident OpenAI-compatible server: one hot base model, named adapters, batched requests.

    python -m gpu serve --base smollm2 --adapters-dir ./adapters --port 8000

Endpoints:
    POST   /v1/chat/completions   OpenAI protocol; `model` is "base", the base's name, or an adapter name
    GET    /v1/models             the base and every loaded adapter
    POST   /v1/load_lora_adapter  {"lora_name": ..., "lora_path": ...}: load a peft adapter (the base stays loaded)
    POST   /v1/unload_lora_adapter {"lora_name": ...}: unload it
    GET    /health                liveness plus batching counters

The adapter endpoints are vLLM's (its runtime LoRA loading), with its answers: 200 and a line of
text, 400 for an adapter that is already loaded or cannot be, 404 for unloading an unknown one. So
the node drives both servers with the same calls (gpu.adapter_loading). A request for an adapter
that is not loaded is also served: the node's resident model fetches it from the store first
(off the event loop, so other requests keep flowing).

The prompt is built exactly as training builds its prefixes: `gpu.render.canonicalize` (a
leading system turn folds into the first user turn, same-role turns merge) then the chat
template with the generation prompt (`render_serving_prompt`). Generation stops at the
end-of-turn token, the token training supervises as the stop. Concurrent requests are
batched (see gpu/request_batcher.py). Errors use OpenAI's error body, so clients raise their
usual exceptions (unknown model: 404, bad request: 400).

Operators reach it through litellm like any OpenAI endpoint: the rollout's `student:NAME`
operator is `litellm.completion(model="openai/NAME", api_base="http://HOST:PORT/v1", api_key="x")`
(FARM_STUDENT_API_BASE=http://HOST:PORT/v1).

On a GPU node, FARM_GPU_SERVE=vllm serves through vLLM instead (gpu.vllm_server), which speaks
the same protocol and selects adapters by the same names. vLLM applies the model's chat template
without our canonicalisation, so send it canonical conversations (the deploy format already is
one: no system message, strict alternation).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gpu.errors import GpuError, InvalidConversation
from gpu.request_batcher import RequestBatcher
from gpu.resident_model import AdapterLoadError, ResidentModel, SamplingParams, UnknownModel

log = logging.getLogger(__name__)
DEFAULT_MAX_TOKENS = 256


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | None = None


class ChatCompletionRequest(BaseModel):
    """The OpenAI fields we honour; others that clients send (user, logprobs=false, ...) are ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    n: int = 1
    seed: int | None = None
    stream: bool = False

    def sampling(self) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            max_tokens=self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS,
            stop=tuple(s for s in stop if s),
            seed=self.seed,
        )


class LoadLoraRequest(BaseModel):
    """vLLM's LoadLoRAAdapterRequest."""

    model_config = ConfigDict(extra="ignore")
    lora_name: str
    lora_path: str


class UnloadLoraRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lora_name: str


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        self.status, self.message, self.type, self.code = status, message, type_, code


def _error(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "type": type_, "param": None, "code": code}})


def create_app(resident: ResidentModel, window_ms: float = 5.0, max_batch: int = 16, batcher: Any = None) -> FastAPI:
    """The HTTP app around a loaded ResidentModel; the batching thread lives with the app. An engine
    that batches by itself (gpu.engines) passes itself as `batcher` (start, stop, submit)."""
    batcher = batcher or RequestBatcher(resident, window_ms=window_ms, max_batch=max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(title="sekfarm resident model server", lifespan=lifespan)
    app.state.resident = resident
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.type, exc.code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"invalid request: {exc.errors()}", "invalid_request_error")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "base": resident.base_name, "adapters": sorted(resident.adapters),
                "generate_calls": resident.generate_calls, "batches": batcher.batches, "requests": batcher.requests}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "sekfarm",
                 "root": resident.adapters.get(name, resident.base_name),
                 "parent": None if name in resident.base_names else resident.base_name}
                for name in resident.model_names()]
        return {"object": "list", "data": data}

    @app.post("/v1/load_lora_adapter", response_class=PlainTextResponse)
    def load_lora_adapter(req: LoadLoraRequest) -> str:
        try:
            resident.load_adapter(req.lora_name, req.lora_path)
        except AdapterLoadError as exc:
            raise ApiError(400, str(exc)) from exc
        return f"Success: LoRA adapter '{req.lora_name}' added successfully."

    @app.post("/v1/unload_lora_adapter", response_class=PlainTextResponse)
    def unload_lora_adapter(req: UnloadLoraRequest) -> str:
        try:
            resident.unload_adapter(req.lora_name)
        except UnknownModel as exc:
            raise ApiError(404, str(exc), "NotFoundError", code="model_not_found") from exc
        return f"Success: LoRA adapter '{req.lora_name}' removed successfully."

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> dict[str, Any]:
        if req.n != 1:
            raise ApiError(400, "only n=1 is supported: send one request per sample")
        if req.stream:
            raise ApiError(400, "streaming is not supported: send stream=false")
        try:  # an adapter not loaded yet is fetched from the store: not on the event loop
            await run_in_threadpool(resident.ensure_model, req.model)
        except UnknownModel as exc:
            raise ApiError(404, str(exc), code="model_not_found") from exc
        except AdapterLoadError as exc:
            raise ApiError(500, str(exc), "server_error") from exc
        try:
            prompt = resident.prompt_ids([m.model_dump(include={"role", "content"}) for m in req.messages])
            params = req.sampling()
        except (InvalidConversation, ValueError) as exc:
            raise ApiError(400, str(exc)) from exc
        try:
            done = await asyncio.wrap_future(batcher.submit(req.model, prompt, params))
        except UnknownModel as exc:  # the adapter was unloaded while the request waited
            raise ApiError(404, str(exc), code="model_not_found") from exc
        except GpuError as exc:
            raise ApiError(500, str(exc), "server_error") from exc
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                         "finish_reason": done.finish_reason, "logprobs": None}],
            "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                      "total_tokens": done.prompt_tokens + done.completion_tokens},
        }

    return app


def adapter_dirs(adapters_dir: str | Path) -> dict[str, Path]:
    """Adapter name (the directory's name) -> directory, for every peft adapter directly under it."""
    root = Path(adapters_dir)
    if not root.is_dir():
        raise GpuError(f"adapters dir {root} does not exist; create it or leave --adapters-dir out")
    return {p.name: p for p in sorted(root.iterdir()) if (p / "adapter_config.json").is_file()}


def serve(base: str, adapters_dir: str | None = None, host: str = "127.0.0.1", port: int = 8000,
          window_ms: float = 5.0, max_batch: int = 16) -> None:
    """Load the base once, load the adapters found in `adapters_dir`, serve until interrupted."""
    import uvicorn

    resident = ResidentModel.load(base)
    for name, path in (adapter_dirs(adapters_dir) if adapters_dir else {}).items():
        resident.load_adapter(name, path)
        log.info("loaded adapter %s from %s", name, path)
    uvicorn.run(create_app(resident, window_ms=window_ms, max_batch=max_batch), host=host, port=port, log_level="info")
