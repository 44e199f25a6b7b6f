"""`brickyard.toml`: typed settings that reject unknown keys, and the commented default file."""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from brickyard._errors import ConfigError
from brickyard.config_commitments import CommitmentConfig, KeyedProblem, RouteConfig, check_commitments


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Window(StrEnum):
    """A budget window."""

    day = "day"
    month = "month"


class PiiAction(StrEnum):
    """What a guardrail does with personal data it finds."""

    none = "none"
    mask = "mask"
    block = "block"


class PiiKind(StrEnum):
    """Kinds of personal data found by pattern."""

    email = "email"
    phone = "phone"
    card = "card"
    iban = "iban"
    national_id = "national_id"


class GuardrailsConfig(_Strict):
    """Checks on an endpoint's input and output (`[endpoints.NAME.guardrails]`)."""

    input_pii: PiiAction = PiiAction.none
    output_pii: PiiAction = PiiAction.none
    pii_kinds: list[PiiKind] = Field(default_factory=lambda: list(PiiKind), description="which kinds to look for")
    blocked_keywords: list[str] = Field(default_factory=list, description="requests or answers containing these fail")

    @property
    def active(self) -> bool:
        return bool(
            self.input_pii is not PiiAction.none or self.output_pii is not PiiAction.none or self.blocked_keywords
        )


class ServerConfig(_Strict):
    """`brickyard serve` settings (`[server]`)."""

    max_request_bytes: int = Field(default=1_000_000, gt=0, description="larger bodies get 413")
    request_timeout_s: float = Field(default=300.0, gt=0, description="a call running longer gets 504")
    sql_row_limit: int = Field(default=1000, gt=0, description="rows returned by POST /api/sql at most")
    sql_timeout_s: float = Field(default=60.0, gt=0)


class PayloadsConfig(_Strict):
    """Payload (inference) logs: request and response of each call (`[payloads]`)."""

    enabled: bool = True
    retention_days: int = Field(default=30, ge=0, description="0 keeps them forever")
    max_chars: int = Field(default=20_000, gt=0, description="longer payloads are truncated")


class StoreConfig(_Strict):
    """Where the ledger, cache, budgets and keys live (`[store]`): the workspace's SQLite files by default."""

    url: str | None = Field(
        default=None, description="postgresql://USER@HOST:PORT/DATABASE: one store shared by several hosts"
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("not a PostgreSQL url (it must start with postgresql://)")
        return url


class Confidence(StrEnum):
    """How a cascade measures its proxy's confidence in an answer."""

    auto = "auto"  # the model's own score if it gives one, else label log-probabilities, else samples
    score = "score"  # the score the model reports (e.g. a `classifier:` endpoint's class probability)
    logprobs = "logprobs"  # the answer's probability among the label alternatives, from token log-probabilities
    samples = "samples"  # the share of sampled answers (temperature 1) that agree with the answer


class CascadeConfig(_Strict):
    """A cascade: `proxy` answers first; rows it is less sure of than `threshold` go to `strong`."""

    proxy: str = Field(description="the cheap endpoint that answers first")
    strong: str = Field(description="the endpoint that answers the rows the proxy is unsure of")
    threshold: float = Field(ge=0.0, le=1.0, description="confidence below this defers the row to `strong`")
    confidence: Confidence = Confidence.auto
    samples: int = Field(default=5, ge=2, le=20, description="samples per row when confidence = samples")


class EndpointConfig(_Strict):
    """A named endpoint: a provider model id plus what the gateway adds around it."""

    model: str | None = Field(default=None, description="provider model id, e.g. `openai:gpt-5-mini`")
    split: dict[str, float] | None = Field(
        default=None, description="weighted traffic split over other endpoints, e.g. {a = 80, b = 20}"
    )
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="environment variable holding the key")
    price_input_per_1m: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    price_output_per_1m: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    batch_price_input_per_1m: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="through a provider batch API (default: half)"
    )
    batch_price_output_per_1m: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_tokens: int | None = Field(
        default=None,
        gt=0,
        le=1_048_576,
        description="max_tokens for requests that set none; also what a budget reserves for them",
    )
    rpm: int | None = Field(default=None, gt=0, description="requests per minute")
    tpm: int | None = Field(default=None, gt=0, description="tokens per minute")
    max_concurrency: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)
    fallbacks: list[str] = Field(default_factory=list)
    cascade: CascadeConfig | None = Field(
        default=None, description="answer with a cheap proxy, defer unsure rows to a strong endpoint"
    )
    route: RouteConfig | None = Field(
        default=None, description="send each call to the equivalent candidate whose commitment is most behind"
    )
    cache: bool = True
    options: dict[str, Any] = Field(default_factory=dict, description="provider-specific options")
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)

    @model_validator(mode="after")
    def _model_or_split(self) -> EndpointConfig:
        if self.route is not None:
            if self.model is not None or self.split is not None or self.cascade is not None:
                raise ValueError("set exactly one of `model`, `split`, `cascade` or `route`")
            return self
        if self.cascade is None and (self.model is None) == (self.split is None):
            raise ValueError("set exactly one of `model` or `split`")
        if self.cascade is not None and (self.model is not None or self.split is not None):
            raise ValueError("set exactly one of `model`, `split` or `cascade`")
        if self.split is not None and (not self.split or any(w <= 0 for w in self.split.values())):
            raise ValueError("`split` needs at least one endpoint with a positive weight")
        return self


class BudgetConfig(_Strict):
    """A USD budget for one endpoint or one tag over a window."""

    endpoint: str | None = None
    tag: str | None = None
    limit_usd: float = Field(gt=0, allow_inf_nan=False)
    window: Window = Window.month

    @model_validator(mode="after")
    def _one_scope(self) -> BudgetConfig:
        if (self.endpoint is None) == (self.tag is None):
            raise ValueError("set exactly one of `endpoint` or `tag`")
        return self

    @property
    def scope(self) -> str:
        return f"endpoint {self.endpoint}" if self.endpoint else f"tag {self.tag}"


class DefaultsConfig(_Strict):
    """Which endpoints answer when none is named."""

    chat: str = "smollm2"
    embedding: str = "e5-small"


class LocalConfig(_Strict):
    """Settings for in-process local models."""

    models_dir: str | None = Field(default=None, description="where pulled GGUF files live")
    threads: int | None = Field(default=None, gt=0)
    parallel: int = Field(default=4, gt=0, le=64, description="llama.cpp slots (continuous batching)")
    context_per_slot: int = Field(default=2048, ge=256)
    deterministic: bool = Field(
        default=True,
        description="decode one request at a time so a greedy answer never depends on its batch neighbours",
    )
    share_host: bool = Field(default=True, description="take turns with other processes' local engines on this host")
    prompt_cache_mib: int = Field(default=256, ge=0, le=65536, description="host memory for cached prompts, per engine")


class Settings(_Strict):
    """The whole of `brickyard.toml`."""

    defaults: DefaultsConfig = Field(default_factory=DefaultsConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    commitments: list[CommitmentConfig] = Field(default_factory=list)
    functions: dict[str, str] = Field(
        default_factory=dict, description='AI function name → endpoint, e.g. ai_classify = "gemma3"'
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    payloads: PayloadsConfig = Field(default_factory=PayloadsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)

    @model_validator(mode="after")
    def _references_exist(self) -> Settings:
        # The bundled endpoints exist without being written in the file, so they may be referred to.
        names = set(self.endpoints) | set(self.aliases) | set(DEFAULT_ENDPOINTS)
        for name, endpoint in self.endpoints.items():
            cascade = [endpoint.cascade.proxy, endpoint.cascade.strong] if endpoint.cascade else []
            route = endpoint.route.candidates if endpoint.route else []
            checks = (
                ("fallbacks", endpoint.fallbacks),
                ("split", endpoint.split or {}),
                ("cascade", cascade),
                ("route.candidates", route),
            )
            for field, refs in checks:
                for ref in refs:
                    if ref not in names and ":" not in ref:
                        raise _RefError(f"endpoints.{name}.{field}", ref)
        for alias, target in self.aliases.items():
            if target not in names and ":" not in target:
                raise _RefError(f"aliases.{alias}", target)
        for function, target in self.functions.items():
            if not function.startswith("ai_") and function != "vector_search":
                raise ValueError(f"[functions] `{function}` is not an AI function name (they start with ai_)")
            if target not in names and ":" not in target and not target.startswith("agent:"):
                raise _RefError(f"functions.{function}", target)
        for i, budget in enumerate(self.budgets):
            if budget.endpoint and budget.endpoint not in names:
                raise _RefError(f"budgets[{i}].endpoint", budget.endpoint)
        builtin = {n: EndpointConfig(**cfg) for n, cfg in DEFAULT_ENDPOINTS.items() if n not in self.endpoints}
        check_commitments(self.commitments, {**builtin, **self.endpoints}, self.aliases)
        return self


class _RefError(ValueError):
    def __init__(self, key: str, ref: str) -> None:
        self.key, self.ref = key, ref
        super().__init__(f"`{ref}` is not a defined endpoint or alias")


DEFAULT_ENDPOINTS: dict[str, dict[str, Any]] = {
    "smollm2": {"model": "local:smollm2-135m"},
    "gemma3": {"model": "local:gemma3-270m"},
    "e5-small": {"model": "local:e5-small"},
}


def load_settings(path: Path) -> Settings:
    """Read and validate a config file; a missing file means the defaults."""
    if not path.exists():
        return with_builtin_endpoints(Settings())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", f"not valid TOML ({exc})", "correct the syntax at that line") from exc
    return parse_settings(raw, str(path))


def parse_settings(raw: dict[str, Any], source: str) -> Settings:
    """Validate a parsed config; the first problem becomes a `ConfigError` naming file, key and fix."""
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, KeyedProblem):
            raise ConfigError(source, ctx_error.key, ctx_error.problem, ctx_error.fix) from None
        if isinstance(ctx_error, _RefError):
            raise ConfigError(
                source, ctx_error.key, str(ctx_error), f"define [endpoints.{ctx_error.ref}] or fix the name"
            ) from None
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        raise ConfigError(source, key, err["msg"], _fix_for(err)) from None
    return with_builtin_endpoints(settings)


def _fix_for(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "remove this key or check its spelling (see `brickyard init` for every setting)"
    if kind == "missing":
        return "add this key"
    if err["loc"][:1] == ("store",):
        return 'write url = "postgresql://USER@HOST:5432/DATABASE", or remove it to keep the SQLite files'
    if "exactly one of" in err["msg"]:
        return "keep one of the two keys named and remove the other"
    if "ctx" in err and "expected" in err["ctx"]:
        return f"use one of {err['ctx']['expected']}"
    return "give a value of the expected type (see the comments `brickyard init` writes)"


def with_builtin_endpoints(settings: Settings) -> Settings:
    """Add the bundled local endpoints unless the file redefines them."""
    endpoints = {name: EndpointConfig(**cfg) for name, cfg in DEFAULT_ENDPOINTS.items()}
    endpoints.update(settings.endpoints)
    return settings.model_copy(update={"endpoints": endpoints})


DEFAULT_TOML = """\
# brickyard.toml: endpoints, aliases, prices, limits and budgets for this workspace.
# Every key is checked; an unknown key is an error that names the key and the fix.

[defaults]
chat = "smollm2"          # endpoint used when none is named (AI functions, `brickyard ask`)
embedding = "e5-small"    # endpoint used for embeddings

[local]
# models_dir = "~/.cache/brickyard/models"   # where `brickyard models pull` puts GGUF files
# threads = 2                                # CPU threads for llama.cpp (default: all cores)
parallel = 4              # llama.cpp slots: requests decoded together (continuous batching)
context_per_slot = 2048   # context window of each slot, in tokens
# deterministic = true    # one request at a time: greedy answers never depend on their batch neighbours
# share_host = true       # local engines of several processes on this host take turns instead of fighting
# prompt_cache_mib = 256  # host memory for llama.cpp's cache of past prompts, per engine

# Bundled local endpoints exist without being written here:
#   smollm2  = local:smollm2-135m   (SmolLM2-135M-Instruct Q4_1, `brickyard models pull smollm2-135m`)
#   gemma3   = local:gemma3-270m    (Gemma 3 270M Q4_K_M,        `brickyard models pull gemma3-270m`)
#   e5-small = local:e5-small       (multilingual-e5-small 4-bit embeddings, always available)
# Any GGUF file works by path:  model = "local:/path/to/model.gguf"

# [endpoints.gpt-5-mini]
# model = "openai:gpt-5-mini"
# api_key_env = "OPENAI_API_KEY"     # the key is read from this environment variable
# price_input_per_1m = 0.25          # USD per 1M input tokens
# price_output_per_1m = 2.00         # USD per 1M output tokens
# rpm = 500                          # requests per minute
# tpm = 200000                       # tokens per minute
# max_concurrency = 16
# timeout_s = 60
# max_retries = 4                    # on 429, 5xx and timeouts, with backoff and jitter
# fallbacks = ["claude-haiku"]       # tried in order after retries fail with 429/5xx
# cache = true                       # on-disk response cache

# [endpoints.gpt-5-mini.guardrails]
# input_pii = "mask"                 # none | mask | block: emails, phones, cards, IBANs, national ids
# output_pii = "mask"
# blocked_keywords = ["password"]

# [endpoints.claude-haiku]
# model = "anthropic:claude-haiku-4-5"
# api_key_env = "ANTHROPIC_API_KEY"
# price_input_per_1m = 1.00
# price_output_per_1m = 5.00

# Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, a Databricks serving endpoint):
# [endpoints.my-vllm]
# model = "openai:meta-llama/Llama-3.1-8B-Instruct"
# base_url = "http://127.0.0.1:8000/v1"
# api_key_env = "VLLM_API_KEY"        # leave out when the server needs no key

# A weighted traffic split between endpoints:
# [endpoints.mini-ab]
# split = { gpt-5-mini = 90, claude-haiku = 10 }

# A cascade: the proxy answers first; rows it is less sure of than `threshold` go to the strong endpoint
# (`brickyard eval cascade` tunes the threshold on your data and writes this block):
# [endpoints.sentiment]
# cascade = { proxy = "smollm2", strong = "gpt-5-mini", threshold = 0.8 }

[aliases]
# fast = "gpt-5-mini"

# Which endpoint each AI function uses in SQL when the call names none (default: [defaults]):
[functions]
# ai_classify = "gemma3"
# ai_summarize = "gpt-5-mini"

# `brickyard serve`: request limits and the SQL API
[server]
max_request_bytes = 1000000
request_timeout_s = 300
sql_row_limit = 1000
sql_timeout_s = 60

# Payload logs: request and response of every call (keys never written), table `payloads`
[payloads]
enabled = true
retention_days = 30

# Where usage, cache, budgets and API keys are kept: SQLite files in this folder unless a PostgreSQL url is set
# (one store shared by several `brickyard serve` hosts; `pip install 'brickyard[postgres]'`; the password
# comes from PGPASSWORD or ~/.pgpass):
[store]
# url = "postgresql://brickyard@127.0.0.1:5432/brickyard"

# USD budgets per endpoint or per tag, over a day or a month:
# [[budgets]]
# endpoint = "gpt-5-mini"
# limit_usd = 20
# window = "day"
#
# [[budgets]]
# tag = "team-a"
# limit_usd = 100
# window = "month"

# Spend committed to a provider (or to some endpoints) between two dates; `brickyard usage --commitments`
# shows the burn-down, the projection to the end date and whether it will be under- or over-used:
# [[commitments]]
# name = "openai-2026"
# provider = "openai"                # every endpoint whose model is openai:...; or endpoints = ["gpt-5-mini"]
# amount_usd = 1000                  # per period when `period` is set
# start = 2026-01-01
# end = 2026-12-31                   # the last day, included
# period = "month"                   # month | quarter | year (leave out: one amount for the whole window)
"""
