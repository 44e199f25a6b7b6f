"""The one model interface, and the base for wrappers that add behaviour around a model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from brickyard._errors import InvalidRequestError
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult


class Model(ABC):
    """A chat and/or embedding model. Providers implement `complete` (and `embed` if they can).

    Capabilities are attributes so callers can choose a strategy without trying and failing.
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

    @abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResult:
        """Answer one request."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        """Yield the answer in pieces; providers that cannot stream yield it whole."""
        result = await self.complete(request)
        yield result.text

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        """Embed texts in order."""
        raise InvalidRequestError(f"{self.name} does not produce embeddings. Fix: use an embedding endpoint")

    async def aclose(self) -> None:  # noqa: B027 - an optional hook; most models hold nothing
        """Release connections, threads or loaded weights."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class WrapperModel(Model):
    """A model that delegates to `inner` and adds one behaviour."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.name = inner.name
        self.supports_chat = inner.supports_chat
        self.supports_embeddings = inner.supports_embeddings
        self.supports_json_schema = inner.supports_json_schema
        self.supports_logprobs = inner.supports_logprobs
        self.supports_tools = inner.supports_tools
        self.supports_grammar = inner.supports_grammar
        self.max_concurrency = inner.max_concurrency
        self.context_window = inner.context_window

    async def complete(self, request: ChatRequest) -> ChatResult:
        return await self.inner.complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        async for piece in self.inner.stream(request):
            yield piece

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        return await self.inner.embed(texts)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"
