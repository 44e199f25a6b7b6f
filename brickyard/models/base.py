"""The one model interface (`handle(call)`), and the base for wrappers that add one behaviour around a model.

A provider implements the kinds it supports as `_complete`, `_stream` and `_embed`; `Model.handle` dispatches
to them and refuses a kind the model does not support. A wrapper implements `handle` alone, so its behaviour
applies to chat, streams and embeddings alike: it cannot forget a kind. Callers use `complete`, `stream`,
`open_stream` and `embed`, which build a call and send it through `handle`; they are not overridden.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from brickyard._errors import InvalidRequestError
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, Usage
from brickyard.models.calls import (
    ANONYMOUS,
    Call,
    Caller,
    ChatCall,
    ChatStream,
    EmbedCall,
    Reply,
    StreamCall,
    single_piece_stream,
)

_SEAM = ("complete", "stream", "open_stream", "embed")


@dataclass(frozen=True)
class Demonstrations:
    """How functions show a model labelled examples (`ai_extract`'s `examples`): a measured choice per model
    (BENCHMARKS.md §5), not a capability."""

    shown: int = 2
    """Examples shown per row: the pre-trained Gemma 3 keeps learning from up to 8, SmolLM2 gains nothing beyond 2."""
    compact_json: bool = False
    """Answers written without spaces (`{"a":1}`): fewer tokens in the prompt and in the answer the model copies
    the style into. Gemma 3 scored higher and answered faster so; SmolLM2 lost F1."""


AS_USUAL = Demonstrations()
"""Two examples, spaced JSON: what a model is shown unless its own measurements chose otherwise."""


@dataclass(frozen=True)
class Capabilities:
    """What a model can do, in one frozen object (read it as `model.capabilities`)."""

    chat: bool = True
    embeddings: bool = False
    json_schema: bool = False
    logprobs: bool = False
    tools: bool = False
    grammar: bool = False
    max_concurrency: int = 8
    context_window: int | None = None
    demonstrations: Demonstrations = AS_USUAL


class Model:
    """A chat and/or embedding model. Providers implement `_complete` (and `_stream`, `_embed` if they can).

    Capabilities are attributes (`supports_json_schema`, ...) gathered in `capabilities`, so callers can choose
    a strategy without trying and failing.
    """

    name: str = "model"
    supports_chat: bool = True
    supports_embeddings: bool = False
    supports_json_schema: bool = False
    supports_logprobs: bool = False
    supports_tools: bool = False
    supports_grammar: bool = False
    max_concurrency: int = 8
    context_window: int | None = None
    demonstrations: Demonstrations = AS_USUAL

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        overridden = [m for m in _SEAM if m in cls.__dict__]
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides {', '.join(overridden)}: implement `handle(call)` (a wrapper) or "
                "`_complete` / `_stream` / `_embed` (a provider) instead, so every call kind goes through one seam"
            )

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            chat=self.supports_chat,
            embeddings=self.supports_embeddings,
            json_schema=self.supports_json_schema,
            logprobs=self.supports_logprobs,
            tools=self.supports_tools,
            grammar=self.supports_grammar,
            max_concurrency=self.max_concurrency,
            context_window=self.context_window,
            demonstrations=self.demonstrations,
        )

    # -- the seam ---------------------------------------------------------------------------------------
    async def handle(self, call: Call) -> Reply:
        """Answer one call. Providers get this dispatch; wrappers replace it."""
        if isinstance(call, EmbedCall):
            if not self.supports_embeddings:
                raise InvalidRequestError(f"{self.name} does not produce embeddings. Fix: use an embedding endpoint")
            return await self._embed(list(call.texts))
        if not self.supports_chat:
            raise InvalidRequestError(f"{self.name} is an embedding model. Fix: use a chat endpoint")
        if isinstance(call, StreamCall):
            stream = ChatStream(self._stream(call.request), model=self.name, prompt=call.request.prompt_text())
            return await stream.start()
        return await self._complete(call.request)

    async def _complete(self, request: ChatRequest) -> ChatResult:
        raise InvalidRequestError(f"{self.name} does not answer chat requests. Fix: use a chat endpoint")

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        """Pieces of the answer, optionally ending with the `Usage` the upstream reported; default: whole."""
        result = await self._complete(request)
        if result.text:
            yield result.text
        yield result.usage

    async def _embed(self, texts: list[str]) -> EmbeddingResult:
        raise InvalidRequestError(f"{self.name} does not produce embeddings. Fix: use an embedding endpoint")

    # -- what callers use -------------------------------------------------------------------------------
    async def complete(self, request: ChatRequest, *, caller: Caller = ANONYMOUS) -> ChatResult:
        """Answer one request."""
        reply = await self.handle(ChatCall(request, caller))
        if isinstance(reply, ChatStream):  # a wrapper may serve a chat call from a stream
            await reply.text()
            assert reply.final is not None
            return reply.final
        assert isinstance(reply, ChatResult), f"{self!r} answered a chat call with {type(reply).__name__}"
        return reply

    async def open_stream(self, request: ChatRequest, *, caller: Caller = ANONYMOUS) -> ChatStream:
        """Start a stream (the first piece has arrived, or the call failed); iterate it, then read `final`."""
        reply = await self.handle(StreamCall(request, caller))
        if isinstance(reply, ChatResult):
            reply = await single_piece_stream(reply, prompt=request.prompt_text()).start()
        assert isinstance(reply, ChatStream), f"{self!r} answered a stream call with {type(reply).__name__}"
        return reply

    async def stream(self, request: ChatRequest, *, caller: Caller = ANONYMOUS) -> AsyncIterator[str]:
        """Yield the answer in pieces."""
        reply = await self.open_stream(request, caller=caller)
        try:
            async for piece in reply:
                yield piece
        finally:
            await reply.aclose()

    async def embed(self, texts: list[str], *, caller: Caller = ANONYMOUS) -> EmbeddingResult:
        """Embed texts in order."""
        reply = await self.handle(EmbedCall(tuple(texts), caller))
        assert isinstance(reply, EmbeddingResult), f"{self!r} answered an embed call with {type(reply).__name__}"
        return reply

    async def aclose(self) -> None:
        """Release connections, threads or loaded weights."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class WrapperModel(Model):
    """A model that delegates to `inner` and adds one behaviour in `handle`."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.name = inner.name
        copy_capabilities(self, inner)

    async def handle(self, call: Call) -> Reply:
        return await self.inner.handle(call)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def copy_capabilities(model: Model, source: Model | Capabilities) -> None:
    """Give `model` the capabilities of `source` (a model it wraps, or a combination of several)."""
    caps = source if isinstance(source, Capabilities) else source.capabilities
    model.supports_chat = caps.chat
    model.supports_embeddings = caps.embeddings
    model.supports_json_schema = caps.json_schema
    model.supports_logprobs = caps.logprobs
    model.supports_tools = caps.tools
    model.supports_grammar = caps.grammar
    model.max_concurrency = caps.max_concurrency
    model.context_window = caps.context_window
    model.demonstrations = caps.demonstrations
