"""The two provider batch APIs behind one small interface, through the official SDKs.

OpenAI: a JSONL file uploaded with purpose `batch`, a batch over it (`completion_window="24h"`, metadata naming
the job and chunk), its status polled, the output and error files downloaded. Anthropic: Message Batches
(create, poll, the results JSONL stream). Request bodies and answers are mapped by the interactive provider
models themselves, so a row in a batch is sent and read exactly as the same call made directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from brickyard._errors import BrickyardError, UserError
from brickyard.config import EndpointConfig
from brickyard.models._types import ChatRequest, ChatResult
from brickyard.models.anthropic_provider import AnthropicModel
from brickyard.models.openai_provider import OpenAIModel
from brickyard.models.registry import Registry, parse_model_id
from brickyard.store.batch_jobs import RowOutcome

PROVIDERS_WITH_BATCH = {"openai": "OpenAI Batch API", "anthropic": "Anthropic Message Batches"}
JOB_TAG, CHUNK_TAG = "brickyard_job", "brickyard_chunk"
RECONCILE_SLACK_S = 300.0
"""How far before a chunk's `submitting` time a provider batch may have been created (clock skew)."""


@dataclass(frozen=True)
class Poll:
    """A provider batch's state: `ended` once its results (or some of them) can be read."""

    status: str
    ended: bool


class BatchProvider(Protocol):
    """One provider's batch API for one endpoint."""

    name: str
    max_rows: int
    max_bytes: int
    """The most rows and request bytes one provider batch takes (OpenAI: 50,000 and 200 MB; Anthropic: 100,000
    and 256 MB), with a margin."""

    async def create(self, job_id: str, chunk: int, rows: list[tuple[str, ChatRequest]]) -> tuple[str, str]:
        """Submit rows (custom_id, request) as one batch; (provider batch id, status)."""
        ...

    async def find(self, job_id: str, chunk: int, size: int, since: float, exclude: set[str]) -> str | None:
        """The batch a crashed run created for this chunk but did not record, if the provider has one."""
        ...

    async def poll(self, batch_id: str) -> Poll: ...

    async def results(self, batch_id: str, requests: dict[str, ChatRequest]) -> list[RowOutcome]:
        """One outcome per row the provider reports (costs left at 0: the runner prices them)."""
        ...

    async def cancel(self, batch_id: str) -> None: ...

    async def aclose(self) -> None: ...


def provider_for(registry: Registry, endpoint: str) -> BatchProvider:
    """The batch API of an endpoint, or a `UserError` naming the providers that have one."""
    name = registry.canonical(endpoint)
    config = registry.config_for(name)
    have = ", ".join(f"{p} ({what})" for p, what in PROVIDERS_WITH_BATCH.items())
    if config.model is None:
        raise UserError(
            f"endpoint {name} is a split or cascade; a batch job needs one provider endpoint. Fix: name one of its "
            f"endpoints whose provider has a batch API: {have}"
        )
    provider, _ = parse_model_id(config.model)
    if provider not in PROVIDERS_WITH_BATCH or (provider == "openai" and not _openai_batches(config)):
        what = (
            "a generic OpenAI-compatible server (base_url set), whose batch API is unknown"
            if provider == "openai"
            else f"provider `{provider}`, which has no batch API"
        )
        extra = (
            f' or set options.batch_api = "openai" under [endpoints.{name}] if the server implements OpenAI\'s '
            "Batch API"
            if provider == "openai"
            else ""
        )
        raise UserError(
            f"endpoint {name} uses {what}. Fix: send batch jobs to an endpoint whose provider has a batch API: "
            f"{have}{extra}; or run without batch"
        )
    info, spec = registry.spec_for(name, config)
    model = registry._provider_model(name, config)  # the interactive model: raises the missing-key error
    if isinstance(model, OpenAIModel):
        return OpenAIBatches(
            model, api_key=spec.api_key, base_url=spec.base_url, timeout_s=spec.timeout_s, retries=config.max_retries
        )
    if isinstance(model, AnthropicModel):
        return AnthropicBatches(
            model,
            api_key=spec.api_key or "",
            base_url=spec.base_url,
            timeout_s=spec.timeout_s,
            retries=config.max_retries,
        )
    raise UserError(f"endpoint {name}: provider {info.name} built no {provider} model. Fix: check the plugin")


def _openai_batches(config: EndpointConfig) -> bool:
    """Real OpenAI (no base_url), or a compatible server configured as implementing OpenAI's Batch API."""
    return config.base_url is None or str(config.options.get("batch_api", "")).lower() == "openai"


def result_dict(result: ChatResult) -> dict[str, Any]:
    """What is stored for an answered row."""
    return {"text": result.text, "json": result.json, "finish_reason": result.finish_reason, "model": result.model}


class OpenAIBatches:
    """OpenAI's Files + Batch API (`/v1/chat/completions` rows)."""

    name = "openai"
    max_rows = 50_000
    max_bytes = 180_000_000

    def __init__(
        self, model: OpenAIModel, *, api_key: str | None, base_url: str | None, timeout_s: float, retries: int
    ) -> None:
        import openai

        self._model = model
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=max(timeout_s, 120.0), max_retries=retries
        )

    async def create(self, job_id: str, chunk: int, rows: list[tuple[str, ChatRequest]]) -> tuple[str, str]:
        lines = [
            {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": self._model.chat_body(r)}
            for cid, r in rows
        ]
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
        try:
            uploaded = await self._client.files.create(file=(f"{job_id}-{chunk}.jsonl", data), purpose="batch")
            batch = await self._client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={JOB_TAG: job_id, CHUNK_TAG: str(chunk)},
            )
        except Exception as exc:
            raise self._error(exc) from None
        return batch.id, batch.status

    async def find(self, job_id: str, chunk: int, size: int, since: float, exclude: set[str]) -> str | None:
        try:
            async for batch in self._client.batches.list(limit=100):
                if batch.created_at < since - RECONCILE_SLACK_S:
                    return None  # newest first: nothing older can be ours
                meta = batch.metadata or {}
                if meta.get(JOB_TAG) == job_id and meta.get(CHUNK_TAG) == str(chunk) and batch.id not in exclude:
                    return str(batch.id)
        except Exception as exc:
            raise self._error(exc) from None
        return None

    async def poll(self, batch_id: str) -> Poll:
        try:
            batch = await self._client.batches.retrieve(batch_id)
        except Exception as exc:
            raise self._error(exc) from None
        return Poll(batch.status, batch.status in ("completed", "failed", "expired", "cancelled"))

    async def results(self, batch_id: str, requests: dict[str, ChatRequest]) -> list[RowOutcome]:
        try:
            batch = await self._client.batches.retrieve(batch_id)
            texts = [
                (await self._client.files.content(file_id)).text
                for file_id in (batch.output_file_id, batch.error_file_id)
                if file_id
            ]
        except Exception as exc:
            raise self._error(exc) from None
        outcomes = [o for text in texts for line in text.splitlines() if (o := self._line(line, requests))]
        if batch.status == "failed":  # nothing ran: every row is unfinished (sent again by the deadline policy)
            reason = "; ".join(e.message or "" for e in (batch.errors.data or [])) if batch.errors else ""
            answered = {o.custom_id for o in outcomes}
            outcomes += [
                RowOutcome(cid, "unfinished", error=f"the provider batch failed: {reason or 'no reason given'}")
                for cid in requests
                if cid not in answered
            ]
        return [o for o in outcomes if o.custom_id in requests]

    def _line(self, text: str, requests: dict[str, ChatRequest]) -> RowOutcome | None:
        """One output or error file line as a row's outcome; None for a line that is not a JSON object (the row
        it was for, if any, stays unanswered and is sent again by the deadline policy)."""
        try:
            line = json.loads(text)
        except ValueError:
            return None
        if not isinstance(line, dict):
            return None
        cid = str(line.get("custom_id"))
        error, response = line.get("error"), line.get("response")
        if error:  # the row never ran: batch_expired, batch_cancelled
            return RowOutcome(cid, "unfinished", error=f"{error.get('code')}: {error.get('message')}")
        if not isinstance(response, dict):
            return RowOutcome(cid, "error", error="the batch output line has no response")
        body = response.get("body") or {}
        if response.get("status_code") != 200:
            message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
            return RowOutcome(cid, "error", error=f"[{response.get('status_code')}] {message or body}")
        request = requests.get(cid)
        if request is None:
            return RowOutcome(cid, "error", error="not a row of this chunk")
        try:
            result = self._model._from_chat(request, body, 0.0)  # the interactive provider's own mapping
        except BrickyardError as exc:
            return RowOutcome(cid, "error", error=str(exc))
        usage = result.usage
        return RowOutcome(cid, "ok", result_dict(result), None, usage.input_tokens, usage.output_tokens)

    async def cancel(self, batch_id: str) -> None:
        try:
            await self._client.batches.cancel(batch_id)
        except Exception as exc:
            raise self._error(exc) from None

    async def aclose(self) -> None:
        await self._client.close()

    def _error(self, exc: Exception) -> Exception:
        return self._model._map_error(exc)  # scrubs the key, maps status codes


class AnthropicBatches:
    """Anthropic's Message Batches. They carry no metadata, so a crashed submission is found by creation time
    and size, then confirmed by its results' custom_ids (which name the job and chunk)."""

    name = "anthropic"
    max_rows = 100_000
    max_bytes = 230_000_000

    def __init__(
        self, model: AnthropicModel, *, api_key: str, base_url: str | None, timeout_s: float, retries: int
    ) -> None:
        from brickyard.models.anthropic_provider import API_VERSION, _sdk

        sdk = _sdk()
        self._model = model
        headers = {"x-api-key": api_key, "Authorization": sdk.Omit(), "anthropic-version": API_VERSION}
        self._client = sdk.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=max(timeout_s, 120.0),
            max_retries=retries,
            default_headers=headers,
        )

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        params = self._model._params(request)  # the interactive provider's own mapping
        extra = params.pop("extra_body", None)
        return {**params, **extra} if extra else params

    async def create(self, job_id: str, chunk: int, rows: list[tuple[str, ChatRequest]]) -> tuple[str, str]:
        requests = [{"custom_id": cid, "params": self._params(r)} for cid, r in rows]
        try:
            batch = await self._client.messages.batches.create(requests=requests)
        except Exception as exc:
            raise self._error(exc) from None
        return batch.id, batch.processing_status

    async def find(self, job_id: str, chunk: int, size: int, since: float, exclude: set[str]) -> str | None:
        try:
            async for batch in self._client.messages.batches.list(limit=100):
                if batch.created_at.timestamp() < since - RECONCILE_SLACK_S:
                    return None
                counts = batch.request_counts
                total = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
                if total == size and batch.id not in exclude:
                    return str(batch.id)
        except Exception as exc:
            raise self._error(exc) from None
        return None

    async def poll(self, batch_id: str) -> Poll:
        try:
            batch = await self._client.messages.batches.retrieve(batch_id)
        except Exception as exc:
            raise self._error(exc) from None
        return Poll(batch.processing_status, batch.processing_status == "ended")

    async def results(self, batch_id: str, requests: dict[str, ChatRequest]) -> list[RowOutcome]:
        outcomes: list[RowOutcome] = []
        try:
            async for item in await self._client.messages.batches.results(batch_id):
                outcomes.append(self._item(item.custom_id, item.result, requests))
        except Exception as exc:
            raise self._error(exc) from None
        return [o for o in outcomes if o.custom_id in requests]

    def _item(self, cid: str, result: Any, requests: dict[str, ChatRequest]) -> RowOutcome:
        kind = result.type
        if kind in ("expired", "canceled"):
            return RowOutcome(cid, "unfinished", error=f"the request {kind} before the provider answered it")
        if kind == "errored":
            inner = getattr(result.error, "error", None)
            return RowOutcome(cid, "error", error=f"{getattr(inner, 'type', 'error')}: {getattr(inner, 'message', '')}")
        request = requests.get(cid)
        if request is None:
            return RowOutcome(cid, "error", error="not a row of this chunk")
        try:
            answer = self._model._result(result.message.model_dump(mode="json"), request, 0.0)
        except BrickyardError as exc:
            return RowOutcome(cid, "error", error=str(exc))
        usage = answer.usage
        return RowOutcome(cid, "ok", result_dict(answer), None, usage.input_tokens, usage.output_tokens)

    async def cancel(self, batch_id: str) -> None:
        try:
            await self._client.messages.batches.cancel(batch_id)
        except Exception as exc:
            raise self._error(exc) from None

    async def aclose(self) -> None:
        await self._client.close()

    def _error(self, exc: Exception) -> Exception:
        return self._model._error(exc) or exc
