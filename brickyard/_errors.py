"""The exception tree. User errors say what to change; provider errors carry status and endpoint."""

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


class BudgetExceededError(BrickyardError):
    """A call was refused before it was sent because a budget is spent."""

    def __init__(self, scope: str, limit_usd: float, spent_usd: float, window: str) -> None:
        self.scope, self.limit_usd, self.spent_usd, self.window = scope, limit_usd, spent_usd, window
        super().__init__(
            f"budget for {scope} is spent: {spent_usd:.4f} of {limit_usd:.4f} USD this {window}. "
            f"Fix: raise `limit_usd` for {scope} in brickyard.toml or wait for the next {window}"
        )


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
    """The upstream answered with something that is not what the protocol or schema promised."""


__all__ = [
    "BrickyardError",
    "BudgetExceededError",
    "ConfigError",
    "ContextWindowError",
    "GuardrailError",
    "InvalidRequestError",
    "MalformedResponseError",
    "MissingExtraError",
    "MissingKeyError",
    "ModelNotPulledError",
    "ProviderError",
    "RateLimitedError",
    "ServerError",
    "UnknownEndpointError",
    "UpstreamTimeoutError",
    "UserError",
]
