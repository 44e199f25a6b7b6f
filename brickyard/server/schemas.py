"""Request bodies of the HTTP API (validated with pydantic; the same models give the OpenAPI document).

Unsupported-parameter policy for `POST /v1/chat/completions`:

- honoured: `model`, `messages`, `temperature`, `max_tokens` / `max_completion_tokens`, `stop`, `seed`,
  `response_format` (`json_schema`, `json_object`, `text`), `logprobs` / `top_logprobs`, `tools` /
  `tool_choice`, `reasoning_effort`, `stream` / `stream_options.include_usage`, and brickyard's `tag`;
- passed to the upstream unchanged (it decides; an upstream that refuses one answers 400): `top_p`,
  `frequency_penalty`, `presence_penalty`, `logit_bias`, `parallel_tool_calls` and any field not named here
  (e.g. a llama.cpp `grammar` or vLLM `guided_json`); for an agent they are dropped;
- accepted and dropped, listed in the `X-Brickyard-Dropped-Params` response header: `user`, `metadata`,
  `store`, `service_tier`, `safety_identifier`, `prompt_cache_key`, `n` = 1;
- rejected with 400 naming the parameter: `n` > 1, `audio`, `modalities` other than text, `prediction`,
  `web_search_options`, `functions` / `function_call` (use `tools`), and `tools`, `logprobs` or a JSON
  `response_format` on an endpoint or agent that cannot honour them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from brickyard.models._types import MAX_OUTPUT_TOKENS

PASSED_THROUGH = ("top_p", "frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls")
DROPPED = ("metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key")
REJECTED = {
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "functions": "`functions` is deprecated. Fix: pass `tools`",
    "function_call": "`function_call` is deprecated. Fix: pass `tool_choice`",
}


class Message(BaseModel):
    """A chat message; fields other than these are kept and sent on."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(default="response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    """OpenAI's chat completion request. `model` is an endpoint, an alias or `agent:NAME`."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS, strict=True)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS, strict=True)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    top_p: float | None = Field(default=None, ge=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    tag: str | None = Field(default=None, max_length=200, description="brickyard: a usage and budget tag")


class EmbeddingsBody(BaseModel):
    """OpenAI's embeddings request (text input only)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] = Field(description="a text or a list of up to 2048 texts; token arrays are not accepted")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class InvocationBody(BaseModel):
    """A Databricks-style agent invocation: `input` (a text or Responses-style messages) or `messages`."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[Message] | None = None
    messages: list[Message] | None = None
    custom_inputs: dict[str, Any] | None = Field(default=None, description="accepted, not used")


class SQLBody(BaseModel):
    """One read-only SELECT; AI functions (`ai_classify`, `ai_query`, ...) may be used."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=100_000)
