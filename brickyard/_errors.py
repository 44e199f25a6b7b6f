"""The exception tree. User errors say what to change; provider errors carry status and endpoint.

    BrickyardError
    ├── UserError                       something the user can fix (the message says what)
    │   ├── ConfigError                 a bad brickyard.toml: file, key, problem, fix
    │   ├── UnknownEndpointError        not an endpoint, alias or `provider:model`
    │   ├── MissingKeyError             an endpoint's API key variable is not set
    │   ├── ModelNotPulledError         a bundled model was not pulled yet
    │   ├── MissingExtraError           an optional dependency is not installed
    │   ├── AIFunctionError             a row of a strict AI function failed
    │   ├── DocumentError               a file cannot be read into a document
    │   │   └── UnsupportedFormatError  no reader for its suffix
    │   ├── SQLToolError                the read-only SQL tool could not answer
    │   │   ├── SQLRefusedError         not one read-only SELECT (also an InvalidRequestError)
    │   │   └── SQLQueryError           DuckDB rejected or failed the query
    │   │       └── SQLTimeoutError     it ran past the timeout
    │   └── InvalidRequestError         no model can answer this request
    │       ├── ContextWindowError      the prompt does not fit
    │       └── GuardrailError          an endpoint's guardrails refused it
    ├── RefusedError                    refused before it was sent (`retry_after`, `should_retry`)
    │   ├── BudgetExceededError         a budget (endpoint, tag, key, query, sweep) is spent
    │   │   ├── KeyBudgetExceededError  an API key's budget
    │   │   └── CostCapError            a job's cap (`--max-cost` of a query or a sweep)
    │   │       └── QueryCostCapError   a query's cap
    │   └── CallerRateLimitedError      an API key is over its rpm or tpm (alias: KeyRateLimitedError)
    └── ProviderError                   an upstream failed (`status`, `endpoint`, `retryable`)
        ├── RateLimitedError            429 (retried)
        ├── ServerError                 5xx (retried)
        ├── UpstreamTimeoutError        no answer in time / connection failed (retried)
        └── MalformedResponseError      a 200 that is not what the protocol promised (retried)

Every public error is exported here; other modules raise these, they do not define their own.
"""

from __future__ import annotations


class BrickyardError(Exception):
    """Base of every error brickyard raises on purpose."""


class UserError(BrickyardError):
    """Something the user can fix: a config value, an argument, a missing setup step."""


class ConfigError(UserError):
    """An invalid `brickyard.toml`: names the file, the key and the fix."""

    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        super().__init__(f"{file}: `{key}`: {problem}. Fix: {fix}")


class UnknownEndpointError(UserError):
    """The name is neither an endpoint, an alias nor a `provider:model` id."""


class MissingKeyError(UserError):
    """The endpoint needs an API key that is not set."""


class ModelNotPulledError(UserError):
    """A bundled local model was asked for before `brickyard models pull`."""


class MissingExtraError(UserError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed. Fix: pip install 'brickyard[{extra}]'")


class InvalidRequestError(UserError):
    """A request that no model can answer: empty prompt, bad schema, too long for the context."""


class ContextWindowError(InvalidRequestError):
    """The prompt does not fit in the model's context window."""


class AIFunctionError(UserError):
    """A row of an AI function failed and the query was strict (`failOnError => true`)."""


class DocumentError(UserError):
    """A file that cannot be read into a document; `reason` says why."""

    def __init__(self, path: object, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class UnsupportedFormatError(DocumentError):
    """The file's suffix has no reader."""


class SQLToolError(UserError):
    """The SQL tool could not answer: a refused, failing or slow query, or a missing table."""


class SQLRefusedError(SQLToolError, InvalidRequestError):
    """The query is not a single read-only SELECT over the allowed tables; nothing was executed."""


class SQLQueryError(SQLToolError):
    """DuckDB rejected the query (syntax, unknown column, permission) or it failed while running."""


class SQLTimeoutError(SQLQueryError):
    """The query ran longer than the tool's timeout and was interrupted."""


_PII_WORDS = {
    "email": "an email address",
    "phone": "a phone number",
    "card": "a card number",
    "iban": "an IBAN",
    "national_id": "a national id number",
    "keyword": "a blocked keyword",
}


class GuardrailError(InvalidRequestError):
    """An endpoint's guardrails refused a request or withheld an answer. Names the kinds found, never the values.

    `direction` is "input" or "output"; `kinds` are PII kinds (email, phone, card, iban, national_id) or "keyword".
    """

    def __init__(self, endpoint: str, direction: str, kinds: list[str]) -> None:
        self.endpoint, self.direction, self.kinds = endpoint, direction, kinds
        found = ", ".join(_PII_WORDS.get(k, k) for k in kinds)
        if direction == "input":
            message = (
                f"endpoint {endpoint}: the request contains {found}, which this endpoint's guardrails block. "
                "Fix: remove it from the messages"
            )
        else:
            message = (
                f"endpoint {endpoint}: the answer contained {found} and was withheld by this endpoint's guardrails. "
                "Fix: ask for an answer that does not include it"
            )
        super().__init__(message)


class RefusedError(BrickyardError):
    """A call refused before it was sent. `retry_after` says when waiting helps; `should_retry` False: it will not."""

    retry_after: float | None = None
    should_retry: bool = False


class BudgetExceededError(RefusedError):
    """A call was refused before it was sent because a budget would be exceeded.

    `scope` names the budget (`endpoint gpt-5`, `tag sql`, `key team-a`, `query 1f3c`), `spent_usd` what is spent
    and held by calls in flight in its window, `window` is `day`, `month` or `job`.
    """

    def __init__(
        self,
        scope: str,
        limit_usd: float,
        spent_usd: float,
        window: str,
        *,
        retry_after: float | None = None,
        fix: str | None = None,
        estimate_usd: float | None = None,
    ) -> None:
        self.scope, self.limit_usd, self.spent_usd, self.window = scope, limit_usd, spent_usd, window
        self.retry_after = retry_after
        self.should_retry = retry_after is not None
        self.estimate_usd = estimate_usd
        nxt = f" The next call would need about {estimate_usd:.4g} USD." if estimate_usd else ""
        if window == "job":
            super().__init__(
                f"the cost cap of {scope} is reached: {spent_usd:.6g} of {limit_usd:.6g} USD spent or held by "
                f"calls in flight.{nxt} Fix: {fix or 'raise the cap'}"
            )
            return
        fix = fix or f"raise `limit_usd` for {scope} in brickyard.toml or wait for the next {window}"
        state = "is spent" if spent_usd >= limit_usd else "would be exceeded"
        super().__init__(
            f"budget for {scope} {state}: {spent_usd:.4f} of {limit_usd:.4f} USD used this {window} (calls in "
            f"flight included).{nxt} Fix: {fix}"
        )


class KeyBudgetExceededError(BudgetExceededError):
    """An API key's USD budget is spent; `retry_after` is the time until its window starts again."""


class CostCapError(BudgetExceededError):
    """A job (a query's or a sweep's `--max-cost`) would cost more than its cap."""


class QueryCostCapError(CostCapError):
    """A query would cost more than its `--max-cost` cap."""


class CallerRateLimitedError(RefusedError):
    """An API key is over its requests or tokens per minute."""

    def __init__(self, key: str, what: str, limit: int, retry_after: float) -> None:
        self.key, self.what, self.limit, self.retry_after = key, what, limit, retry_after
        self.should_retry = True
        super().__init__(
            f"key {key} is over its limit of {limit:,} {what} per minute. Retry after {retry_after:.1f} s, "
            f"or ask an admin for a higher --{'rpm' if what == 'requests' else 'tpm'}"
        )


KeyRateLimitedError = CallerRateLimitedError


class ProviderError(BrickyardError):
    """An upstream failed. `status` is the HTTP status (or None), `endpoint` who failed."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.endpoint, self.status, self.retry_after = endpoint, status, retry_after
        where = f"{endpoint}: " if endpoint else ""
        code = f"[{status}] " if status is not None else ""
        super().__init__(f"{where}{code}{message}")


class RateLimitedError(ProviderError):
    """The upstream said 429."""

    retryable = True


class ServerError(ProviderError):
    """The upstream said 5xx."""

    retryable = True


class UpstreamTimeoutError(ProviderError):
    """The upstream did not answer in time (or the connection failed)."""

    retryable = True


class MalformedResponseError(ProviderError):
    """The upstream answered with something that is not what the protocol or schema promised (retried: a
    malformed 200 is usually a passing fault). An answer whose *content* does not parse (the model's JSON cut at
    `max_tokens`) is not retried: `retryable=False`."""

    retryable = True

    def __init__(
        self, message: str, *, endpoint: str = "", status: int | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint, status=status)
        if retryable is not None:
            self.retryable = retryable


__all__ = [
    "AIFunctionError",
    "BrickyardError",
    "BudgetExceededError",
    "CallerRateLimitedError",
    "ConfigError",
    "ContextWindowError",
    "CostCapError",
    "DocumentError",
    "GuardrailError",
    "InvalidRequestError",
    "KeyBudgetExceededError",
    "KeyRateLimitedError",
    "MalformedResponseError",
    "MissingExtraError",
    "MissingKeyError",
    "ModelNotPulledError",
    "ProviderError",
    "QueryCostCapError",
    "RateLimitedError",
    "RefusedError",
    "SQLQueryError",
    "SQLRefusedError",
    "SQLTimeoutError",
    "SQLToolError",
    "ServerError",
    "UnknownEndpointError",
    "UnsupportedFormatError",
    "UpstreamTimeoutError",
    "UserError",
]
