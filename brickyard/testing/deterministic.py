"""A deterministic stand-in for a model that obeys grammars and JSON schemas: exact, repeatable answers.

Use it as `FunctionModel(answer)`, or in brickyard.toml as `model = "function:brickyard.testing.deterministic:answer"`
(importable on Spark workers too), to test SQL and pipelines with exact expected results:

- a label grammar (`root ::= "a" | "b"`) or a string `enum`: the label picked by a stable hash of the text;
- a JSON schema: a value of that shape built from the text (strings: the text's first capitalised word, or
  its first word; integers: the text's first integer, else its length; numbers: its first number, else its
  length / 10; booleans: the hash's parity; arrays: one item);
- anything else: `"echo: "` and the text's first twelve words.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from brickyard.models._types import ChatRequest

_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def content_of(request: ChatRequest) -> str:
    """The last user message, without the `<text>` delimiters brickyard puts around data."""
    users = [m for m in request.messages if m.get("role") == "user"]
    text = str(users[-1].get("content", "")) if users else ""
    return text.replace("<text>", "").replace("</text>", "").strip()


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _pick(options: list[Any], text: str) -> Any:
    return options[stable_hash(text) % len(options)]


def _word(text: str) -> str:
    capitalised = re.findall(r"\b[A-Z][a-z]+\b", text)
    if capitalised:
        return str(capitalised[0])
    words = text.split()
    return words[0] if words else ""


def value_for(schema: dict[str, Any], text: str) -> Any:
    """A value of `schema`'s shape, derived from `text` only."""
    if "enum" in schema:
        return _pick(list(schema["enum"]), text)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: value_for(sub, text) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [value_for(schema.get("items", {"type": "string"}), text)]
    numbers = re.findall(r"\d+(?:\.\d+)?", text)
    if kind == "integer":
        whole = [n for n in numbers if "." not in n]
        return int(whole[0]) if whole else len(text)
    if kind == "number":
        return float(numbers[0]) if numbers else round(len(text) / 10, 1)
    if kind == "boolean":
        return stable_hash(text) % 2 == 0
    if kind == "null":
        return None
    return _word(text)


def answer(request: ChatRequest) -> str | dict[str, Any] | list[Any]:
    """The deterministic answer to any brickyard request."""
    text = content_of(request)
    grammar = request.extra.get("grammar")
    if isinstance(grammar, str):
        literals = [json.loads(f'"{m}"') for m in _LITERAL.findall(grammar)]
        if literals:
            return str(_pick(literals, text))
    if request.json_schema is not None:
        value = value_for(request.json_schema, text)
        return value if isinstance(value, (dict, list)) else json.dumps(value)
    return "echo: " + " ".join(text.split()[:12])
