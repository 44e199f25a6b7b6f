"""The on-disk response cache: keyed by endpoint, parameters and messages; failures never cached."""

from __future__ import annotations

import asyncio
import dataclasses

from brickyard.models._types import ChatRequest, ChatResult
from brickyard.models.base import Model, WrapperModel
from brickyard.store.base import Store


class CachedModel(WrapperModel):
    """Serves a stored answer for an identical request; stores every successful answer.

    A request with `extra={"cache": False}` is not served from nor written to the cache.
    """

    def __init__(self, inner: Model, store: Store, *, endpoint: str) -> None:
        super().__init__(inner)
        self._store = store
        self._endpoint = endpoint

    async def complete(self, request: ChatRequest) -> ChatResult:
        if request.extra.get("cache") is False:
            return await self.inner.complete(request)
        key = request.cache_key(self._endpoint)
        hit = await asyncio.to_thread(self._store.cache_get, key)
        if hit is not None:
            return dataclasses.replace(ChatResult.from_dict(hit), cached=True, latency_s=0.0)
        result = await self.inner.complete(request)
        if self._store.buffered:  # a queue append: no thread hop
            self._store.cache_put(key, result.to_dict())
        else:
            await asyncio.to_thread(self._store.cache_put, key, result.to_dict())
        return result
