"""One query computes each AI call once: the same function on the same arguments, and each text's embedding.

SQL repeats calls that a person writes once: `CASE ai_classify(x, ...) WHEN 'a' THEN ... WHEN 'b' ...`
evaluates the function once per WHEN, and `ai_similarity(x, a) > ai_similarity(x, b)` embeds `x` twice.
A `QueryMemo` lives for one statement (the connection clears it before each): the UDFs look a row's
arguments up before calling the model, and the embedding endpoints serve a text they already embedded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from brickyard.models._types import EmbeddingResult, Usage
from brickyard.models.base import Model, WrapperModel
from brickyard.models.calls import Call, EmbedCall, Reply

MEMO_LIMIT = 200_000
"""Answers kept per query; past it the memo starts over (a bound on memory, not on correctness)."""


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return value


class QueryMemo:
    """The answers of one statement's AI calls, by function and arguments, and its texts' embeddings."""

    def __init__(self, limit: int = MEMO_LIMIT) -> None:
        self.limit = limit
        self._answers: dict[tuple[str, Any], Any] = {}
        self.vectors: dict[tuple[str, str], list[float]] = {}
        self.computed = 0
        """Rows sent to the functions since the memo was made (for tests and `--explain`)."""

    def clear(self) -> None:
        self._answers.clear()
        self.vectors.clear()

    def rows(
        self, function: str, columns: Sequence[Sequence[Any]], compute: Callable[[list[list[Any]]], list[Any]]
    ) -> list[Any]:
        """`compute` on the distinct rows not seen before in this query; every row's answer, in order."""
        n = len(columns[0]) if columns else 0
        keys = [(function, _hashable(tuple(column[i] for column in columns))) for i in range(n)]
        todo: dict[tuple[str, Any], int] = {}
        for i, key in enumerate(keys):
            if key not in self._answers and key not in todo:
                todo[key] = i
        fresh: dict[tuple[str, Any], Any] = {}
        if todo:
            index = list(todo.values())
            fresh = dict(zip(todo, compute([[column[i] for i in index] for column in columns]), strict=True))
            self.computed += len(fresh)
        out = [fresh[k] if k in fresh else self._answers[k] for k in keys]
        if len(self._answers) + len(fresh) > self.limit:
            self._answers.clear()
        self._answers.update(fresh)
        return out


class MemoizedEmbeddings(WrapperModel):
    """An embedding endpoint that serves the texts this query already embedded."""

    def __init__(self, inner: Model, memo: QueryMemo) -> None:
        super().__init__(inner)
        self._memo = memo

    async def handle(self, call: Call) -> Reply:
        if not isinstance(call, EmbedCall):
            return await self.inner.handle(call)
        known = self._memo.vectors
        missing = list(dict.fromkeys(t for t in call.texts if (self.name, t) not in known))
        result: EmbeddingResult | None = None
        if missing:
            reply = await self.inner.handle(EmbedCall(tuple(missing), call.caller))
            assert isinstance(reply, EmbeddingResult)
            result = reply
            known.update({(self.name, t): v for t, v in zip(missing, reply.vectors, strict=True)})
        vectors = [known[(self.name, t)] for t in call.texts]
        return EmbeddingResult(
            vectors=vectors,
            model=result.model if result else self.name,
            usage=result.usage if result else Usage(),
        )
