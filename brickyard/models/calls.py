"""The one call seam: a call (chat, stream or embed) goes in, a reply comes out.

Every wrapper implements `handle(call)` once and so applies to all three kinds (httpx's single
`handle_request`). A stream is a reply too (`ChatStream`): it is started (the first piece is awaited, so a
failure before any text surfaces from `handle`, where retries and fallbacks see it) and finishes later; a
wrapper that acts when a call is over registers `when_done`, which runs at once for a chat or embedding
result and when the stream ends (completed, failed or closed early) for a stream.

Who calls is data on the call (`Caller`): the API key's name, the tag, the query or sweep id, and the limits
the caller brings (its key's budget and rate, a query's cost cap). Nothing travels in a context variable.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, Usage, estimate_tokens

Status = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True)
class CallerBudget:
    """A USD budget the caller brings: `scope` is `key:NAME`, `query:ID` or `sweep:ID`."""

    scope: str
    limit_usd: float
    window: Literal["day", "month", "job"] = "job"
    fix: str = "raise the limit"
    """What the refusal tells the user to do (e.g. `raise --max-cost`)."""


@dataclass(frozen=True)
class CallerRate:
    """Requests and tokens per minute the caller may use (an API key's limits); over them a call is refused."""

    scope: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class Caller:
    """Who a call is made for, and the limits that come with them."""

    key: str | None = None
    tag: str | None = None
    query: str | None = None
    budgets: tuple[CallerBudget, ...] = ()
    rate: CallerRate | None = None

    def merged(self, inner: Caller) -> Caller:
        """This caller's fields where `inner` leaves them unset; budgets of both apply."""
        return Caller(
            key=inner.key or self.key,
            tag=inner.tag or self.tag,
            query=inner.query or self.query,
            budgets=(*self.budgets, *(b for b in inner.budgets if b not in self.budgets)),
            rate=inner.rate or self.rate,
        )


ANONYMOUS = Caller()


@dataclass(frozen=True)
class RouteNote:
    """Why a routing endpoint sent the call where it did; written on the call's usage record."""

    endpoint: str
    """The routing endpoint that was asked for."""
    chose: str
    """The candidate endpoint it sent the call to."""
    reason: str


@dataclass(frozen=True)
class _RequestCall:
    """A call that answers a chat request (whole or streamed)."""

    request: ChatRequest
    caller: Caller = ANONYMOUS
    route: RouteNote | None = None

    @property
    def tag(self) -> str | None:
        return self.caller.tag or self.request.tag

    def prompt_tokens(self) -> int:
        return estimate_tokens(self.request.prompt_text())


@dataclass(frozen=True)
class ChatCall(_RequestCall):
    """Answer one chat request."""

    kind: Literal["chat"] = field(default="chat", init=False)


@dataclass(frozen=True)
class StreamCall(_RequestCall):
    """Answer one chat request in pieces (the reply is a `ChatStream`)."""

    kind: Literal["stream"] = field(default="stream", init=False)


@dataclass(frozen=True)
class EmbedCall:
    """Embed texts, in order."""

    texts: tuple[str, ...]
    caller: Caller = ANONYMOUS
    route: RouteNote | None = None
    kind: Literal["embed"] = field(default="embed", init=False)

    @property
    def tag(self) -> str | None:
        return self.caller.tag

    def prompt_tokens(self) -> int:
        return sum(estimate_tokens(t) for t in self.texts)


Call = ChatCall | StreamCall | EmbedCall


def with_request(call: ChatCall | StreamCall, request: ChatRequest) -> ChatCall | StreamCall:
    return dataclasses.replace(call, request=request)


@dataclass(frozen=True)
class Outcome:
    """How a call ended. `result` is the answer (for a stream: what was produced, even when cut short)."""

    status: Status
    result: ChatResult | EmbeddingResult | None = None
    error: BaseException | None = None


Finisher = Callable[[Outcome], "ChatResult | EmbeddingResult | None"]
"""Runs once when a call is over; may return a replacement result (e.g. with the cost stamped on it)."""


class ChatStream:
    """A chat answer arriving in pieces. Iterate it for text; `final` is the whole result once it has ended.

    A provider builds it from an async iterator of text pieces that may end with a `Usage` (the tokens the
    upstream reported); without one, usage is estimated. `start()` awaits the first piece. Finishers registered
    with `when_done` run exactly once, innermost first, when the stream ends, fails or is closed.
    """

    def __init__(
        self,
        source: AsyncIterator[str | Usage],
        *,
        model: str,
        prompt: str = "",
        template: ChatResult | None = None,
    ) -> None:
        self._source = source
        self._template = template
        self._emitted: list[str] = []
        self.model = model
        self._prompt = prompt
        self._pieces: list[str] = []
        self._first: str | None = None
        self._started = False
        self._exhausted = False
        self._usage: Usage | None = None
        self._finishers: list[Finisher] = []
        self._stages: list[tuple[Callable[[str], str], Callable[[], str] | None]] = []
        self._done = False
        self.final: ChatResult | None = None
        self.finish_reason: str | None = None

    # -- building -----------------------------------------------------------------------------------
    async def start(self) -> ChatStream:
        """Wait for the first piece (a failure before any text is raised here); returns self."""
        if self._started:
            return self
        self._started = True
        try:
            self._first = await self._next_text()
        except BaseException as exc:
            await self._close_source()
            self._finish(Outcome("error" if isinstance(exc, Exception) else "cancelled", self._partial(), exc))
            raise
        return self

    def when_done(self, finisher: Finisher) -> None:
        """Run `finisher` once when the stream is over (registered by wrappers, outermost last)."""
        self._finishers.append(finisher)

    def map_pieces(self, fn: Callable[[str], str], end: Callable[[], str] | None = None) -> None:
        """Transform each piece on its way out (a guardrail); `end` gives text held back until the end."""
        self._stages.append((fn, end))

    # -- reading ------------------------------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        if not self._started:
            await self.start()
        try:
            piece = self._first
            self._first = None
            while piece is not None:
                out = self._mapped(piece)
                if out:
                    self._emitted.append(out)
                    yield out
                piece = await self._next_text()
            tail = self._tail()
            if tail:
                self._emitted.append(tail)
                yield tail
        except GeneratorExit:
            await self._close_source()
            self._finish(Outcome("cancelled", self._partial()))
            raise
        except BaseException as exc:
            await self._close_source()
            status: Status = "error" if isinstance(exc, Exception) else "cancelled"
            self._finish(Outcome(status, self._partial(), exc))
            raise
        self._finish(Outcome("ok", self._partial()))

    async def text(self) -> str:
        """Read the whole stream and return its text."""
        return "".join([piece async for piece in self])

    async def aclose(self) -> None:
        """Stop early: the upstream is closed and the finishers run with status `cancelled`."""
        if self._done:
            return
        await self._close_source()
        self._finish(Outcome("cancelled", self._partial()))

    # -- internals ----------------------------------------------------------------------------------
    async def _next_text(self) -> str | None:
        while not self._exhausted:
            try:
                item = await anext(self._source)
            except StopAsyncIteration:
                self._exhausted = True
                return None
            if isinstance(item, Usage):
                if item.total_tokens:  # zeros: the upstream reported nothing (usage is estimated instead)
                    self._usage = item
                continue
            if item:
                self._pieces.append(item)
                return item
        return None

    def _mapped(self, piece: str) -> str:
        for fn, _ in self._stages:
            piece = fn(piece) if piece else piece
        return piece

    def _tail(self) -> str:
        """What the stages held back, flushed in order (each stage's rest passes the stages after it)."""
        carry = ""
        for fn, end in self._stages:
            carry = (fn(carry) if carry else "") + (end() if end is not None else "")
        return carry

    async def _close_source(self) -> None:
        close = getattr(self._source, "aclose", None)
        if close is not None and not self._exhausted:
            self._exhausted = True
            with contextlib.suppress(Exception):  # closing a failed upstream: nothing more to learn from it
                await close()

    def _partial(self) -> ChatResult:
        """What the stream produced so far: the text as sent (after any masking), with its usage."""
        raw = "".join(self._pieces)
        text = "".join(self._emitted) if self._stages else raw
        usage = self._usage or Usage(estimate_tokens(self._prompt), estimate_tokens(raw), estimated=True)
        finish = self.finish_reason or "stop"
        if self._template is not None:
            return dataclasses.replace(self._template, text=text, usage=usage, finish_reason=finish, json=None)
        return ChatResult(text=text, model=self.model, usage=usage, finish_reason=finish)

    def _finish(self, outcome: Outcome) -> None:
        if self._done:
            return
        self._done = True
        result = outcome.result
        errors: list[BaseException] = []
        for finisher in self._finishers:
            try:
                replaced = finisher(dataclasses.replace(outcome, result=result))
            except Exception as exc:  # every finisher runs (a budget must settle even if metering failed)
                errors.append(exc)
                continue
            if isinstance(replaced, ChatResult):
                result = replaced
        self.final = result if isinstance(result, ChatResult) else None
        if errors and outcome.status == "ok":
            raise errors[0]


Reply = ChatResult | EmbeddingResult | ChatStream


def when_done(reply: Reply, finisher: Finisher) -> Reply:
    """Run `finisher` when the call behind `reply` is over: now for a result, at the end for a stream."""
    if isinstance(reply, ChatStream):
        reply.when_done(finisher)
        return reply
    replaced = finisher(Outcome("ok", reply))
    return replaced if replaced is not None else reply


def single_piece_stream(result: ChatResult, *, prompt: str = "") -> ChatStream:
    """A stream that yields a finished result whole (a cache hit, a provider that cannot stream)."""

    async def source() -> AsyncIterator[str | Usage]:
        if result.text:
            yield result.text
        yield result.usage

    stream = ChatStream(source(), model=result.model, prompt=prompt, template=result)
    stream.finish_reason = result.finish_reason
    return stream


async def answer_whole(call: Call, name: str, answer: Callable[[ChatRequest, Caller], Awaitable[ChatResult]]) -> Reply:
    """For a model that answers whole (an agent, a cascade): a chat call gets `answer`, a stream gets it as one
    piece, and an embedding call is refused."""
    if isinstance(call, EmbedCall):
        from brickyard._errors import InvalidRequestError

        raise InvalidRequestError(f"{name} answers chat requests only. Fix: name an embedding endpoint")
    result = await answer(call.request, call.caller)
    if isinstance(call, StreamCall):
        return await single_piece_stream(result, prompt=call.request.prompt_text()).start()
    return result
