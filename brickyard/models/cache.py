"""The response cache: keyed by endpoint, parameters and messages (or texts); failures never cached.

Chat calls and streams share entries: a stream is answered from a cached chat answer (as one piece) and a
finished stream fills the cache. Embeddings are cached per list of texts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from typing import Any

from brickyard.models._types import ChatResult, EmbeddingResult, Usage
from brickyard.models.base import Model, WrapperModel
from brickyard.models.calls import Call, EmbedCall, Outcome, Reply, StreamCall, single_piece_stream, when_done
from brickyard.store.base import Store


class CachedModel(WrapperModel):
    """Serves a stored answer for an identical call; stores every successful answer.

    A request with `extra={"cache": False}` is not served from nor written to the cache.
    """

    def __init__(self, inner: Model, store: Store, *, endpoint: str) -> None:
        super().__init__(inner)
        self._store = store
        self._endpoint = endpoint

    def _key(self, call: Call) -> str | None:
        if isinstance(call, EmbedCall):
            blob = json.dumps(["embed", self._endpoint, list(call.texts)], ensure_ascii=False)
            return hashlib.sha256(blob.encode()).hexdigest()
        if call.request.extra.get("cache") is False:
            return None
        return call.request.cache_key(self._endpoint)

    async def handle(self, call: Call) -> Reply:
        key = self._key(call)
        if key is None:
            return await self.inner.handle(call)
        hit = await asyncio.to_thread(self._store.cache_get, key)
        if hit is not None:
            return _from_cache(call, hit)
        reply = await self.inner.handle(call)

        def put(outcome: Outcome) -> None:
            result = outcome.result
            if outcome.status != "ok" or result is None:
                return
            self._store.cache_put(key, _to_cache(result))

        return when_done(reply, put)


def _to_cache(result: ChatResult | EmbeddingResult) -> dict[str, Any]:
    if isinstance(result, EmbeddingResult):
        return {"vectors": result.vectors, "model": result.model, "input_tokens": result.usage.input_tokens}
    return result.to_dict()


def _from_cache(call: Call, hit: dict[str, Any]) -> Reply:
    if isinstance(call, EmbedCall):
        if "vectors" not in hit:
            raise KeyError("not an embedding entry")
        return EmbeddingResult(
            vectors=hit["vectors"], model=hit["model"], usage=Usage(hit["input_tokens"], 0), cached=True
        )
    result = dataclasses.replace(ChatResult.from_dict(hit), cached=True, latency_s=0.0, cost_usd=0.0)
    if isinstance(call, StreamCall):
        return single_piece_stream(result, prompt=call.request.prompt_text())
    return result
