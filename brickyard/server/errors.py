"""Errors in OpenAI's JSON shape (`{"error": {"message", "type", "param", "code"}}`) with the right status.

400 bad input or a parameter the target cannot honour; 401 no, unknown or revoked key; 403 out of the key's
scopes; 404 unknown model or route; 413 body too large; 429 over a key's rpm/tpm or the upstream's rate limit
(`rate_limit_error`, with Retry-After) or a spent budget (`insufficient_quota` / `budget_exceeded`, with
Retry-After until the window resets and `x-should-retry: false`); 502 the upstream failed after retries and
fallbacks; 503 the endpoint cannot run here (no upstream key set, weights not pulled) or the warehouse is
busy; 504 too slow; 500 a bug (no detail in the message).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from brickyard._errors import (
    BrickyardError,
    BudgetExceededError,
    ContextWindowError,
    GuardrailError,
    InvalidRequestError,
    MalformedResponseError,
    MissingExtraError,
    MissingKeyError,
    ModelNotPulledError,
    ProviderError,
    RateLimitedError,
    RefusedError,
    SQLTimeoutError,
    UnknownEndpointError,
    UpstreamTimeoutError,
    UserError,
)

log = logging.getLogger("brickyard.server")


@dataclass
class APIError(Exception):
    """An error answer: HTTP status, OpenAI error fields and extra headers (e.g. Retry-After)."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return Response(
            json.dumps(self.body(), ensure_ascii=False).encode(),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


def retry_after_header(seconds: float) -> dict[str, str]:
    """Retry-After in whole seconds (at least 1), plus the millisecond form the OpenAI SDK also reads."""
    return {"Retry-After": str(max(1, int(seconds + 0.999))), "retry-after-ms": str(max(1, int(seconds * 1000)))}


def refused(exc: RefusedError) -> APIError:
    """429 for a call refused before it was sent: `Retry-After` when waiting helps (a rate limit, a budget
    window that starts again), and `x-should-retry: false` when retrying soon will not (a spent budget)."""
    headers = retry_after_header(exc.retry_after) if exc.retry_after is not None else {}
    if isinstance(exc, BudgetExceededError):
        headers["x-should-retry"] = "false"
        return APIError(429, str(exc), "insufficient_quota", "budget_exceeded", headers=headers)
    headers["x-should-retry"] = "true"
    return APIError(429, str(exc), "rate_limit_error", "rate_limit_exceeded", headers=headers)


def to_api_error(exc: BaseException) -> APIError:
    """Map a brickyard exception (or any other) to the answer the client gets."""
    if isinstance(exc, APIError):
        return exc
    message = str(exc)
    if isinstance(exc, RefusedError):
        return refused(exc)
    if isinstance(exc, GuardrailError):
        return APIError(400, message, "invalid_request_error", "content_blocked")
    if isinstance(exc, ContextWindowError):
        return APIError(400, message, "invalid_request_error", "context_length_exceeded", "messages")
    if isinstance(exc, UnknownEndpointError):
        return APIError(404, message, "invalid_request_error", "model_not_found", "model")
    if isinstance(exc, MissingKeyError | ModelNotPulledError | MissingExtraError):
        return APIError(503, message, "server_error", "endpoint_unavailable")
    if isinstance(exc, SQLTimeoutError):
        return APIError(504, message, "timeout_error", "timeout")
    if isinstance(exc, InvalidRequestError | UserError):
        return APIError(400, message, "invalid_request_error", "invalid_value")
    if isinstance(exc, RateLimitedError):
        headers = retry_after_header(exc.retry_after) if exc.retry_after is not None else {}
        return APIError(429, message, "rate_limit_error", "upstream_rate_limited", headers=headers)
    if isinstance(exc, UpstreamTimeoutError):
        return APIError(504, message, "timeout_error", "upstream_timeout")
    if isinstance(exc, MalformedResponseError):
        return APIError(502, message, "upstream_error", "malformed_response")
    if isinstance(exc, ProviderError):
        return APIError(502, message, "upstream_error", "upstream_error")
    if isinstance(exc, TimeoutError):
        return APIError(
            504, "the request took longer than allowed ([server] request_timeout_s)", "timeout_error", "timeout"
        )
    if isinstance(exc, BrickyardError):
        return APIError(500, message, "server_error", "internal_error")
    log.exception("unhandled error", exc_info=exc)
    return APIError(500, "internal server error (logged on the server)", "server_error", "internal_error")
