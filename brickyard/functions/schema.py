"""Structured-output formats: Databricks `responseFormat` strings to JSON schema, and back to SQL types.

`responseFormat` is either a JSON schema (`{"type": "json_schema", "json_schema": {...}}`, or a bare
schema) or a DDL struct string such as `STRUCT<name: STRING, year: INT, tags: ARRAY<STRING>>`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from brickyard._errors import InvalidRequestError

_SCALARS: dict[str, dict[str, Any]] = {
    "STRING": {"type": "string"},
    "VARCHAR": {"type": "string"},
    "TEXT": {"type": "string"},
    "INT": {"type": "integer"},
    "INTEGER": {"type": "integer"},
    "BIGINT": {"type": "integer"},
    "SMALLINT": {"type": "integer"},
    "TINYINT": {"type": "integer"},
    "LONG": {"type": "integer"},
    "FLOAT": {"type": "number"},
    "DOUBLE": {"type": "number"},
    "DECIMAL": {"type": "number"},
    "BOOLEAN": {"type": "boolean"},
    "BOOL": {"type": "boolean"},
    "DATE": {"type": "string", "format": "date"},
    "TIMESTAMP": {"type": "string", "format": "date-time"},
}

_INTEGER_BITS = {"INT": 32, "INTEGER": 32, "BIGINT": 64, "LONG": 64, "SMALLINT": 16, "TINYINT": 8}
"""SQL integer types and their width: an answer outside the range is that row's error, not a failed cast."""

_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[0-9]+|`[^`]+`|<|>|,|:|\(|\))")


class _DDL:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if not match:
                raise self.error(f"unexpected character {text[pos:].strip()[:1]!r}")
            self.tokens.append(match.group(1))
            pos = match.end()
        self.i = 0

    def error(self, problem: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"responseFormat {self.text!r}: {problem}. Fix: write e.g. 'STRUCT<name: STRING, year: INT>'"
        )

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise self.error("it ends too early")
        if expected is not None and token.upper() != expected:
            raise self.error(f"expected {expected!r} but found {token!r}")
        self.i += 1
        return token

    def type_(self) -> dict[str, Any]:
        name = self.take().upper()
        if name == "STRUCT":
            self.take("<")
            properties: dict[str, Any] = {}
            while True:
                field = self.take().strip("`")
                if self.peek() == ":":
                    self.take(":")
                properties[field] = self.type_()
                if self.peek() == ",":
                    self.take(",")
                    continue
                self.take(">")
                break
            return {"type": "object", "properties": properties, "required": list(properties)}
        if name == "ARRAY":
            self.take("<")
            items = self.type_()
            self.take(">")
            return {"type": "array", "items": items}
        if name not in _SCALARS:
            raise self.error(f"unknown type {name}")
        if self.peek() == "(":  # DECIMAL(10, 2), VARCHAR(20)
            while self.take() != ")":
                pass
        scalar = dict(_SCALARS[name])
        if name in _INTEGER_BITS:
            bits = _INTEGER_BITS[name]
            scalar.update(minimum=-(2 ** (bits - 1)), maximum=2 ** (bits - 1) - 1)
        return scalar


def ddl_to_schema(ddl: str) -> dict[str, Any]:
    """`STRUCT<a: STRING, b: ARRAY<INT>>` → a JSON schema (fields required, values may be null)."""
    parser = _DDL(ddl)
    schema = parser.type_()
    if parser.peek() is not None:
        raise parser.error(f"unexpected {parser.peek()!r} after the type")
    return schema


def parse_response_format(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A JSON schema from a Databricks `responseFormat` (JSON schema text or object, or DDL)."""
    if value is None:
        return None
    if isinstance(value, dict):
        spec = value
    else:
        text = value.strip()
        if not text:
            return None
        if not text.startswith("{"):
            return ddl_to_schema(text)
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"responseFormat is not valid JSON ({exc}). Fix: check the quotes") from None
    if spec.get("type") == "json_schema":
        inner = spec.get("json_schema", {})
        schema = inner.get("schema") if isinstance(inner, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                'responseFormat of type json_schema needs {"json_schema": {"name": ..., "schema": {...}}}'
            )
        return schema
    if spec.get("type") == "json_object":
        return {"type": "object"}
    if "type" in spec or "properties" in spec:
        return spec
    raise InvalidRequestError("responseFormat is neither a JSON schema nor a DDL struct string")


def conformance_error(schema: dict[str, Any], value: Any) -> str | None:
    """Why `value` does not fit `schema` (a type, a range, a missing field), or None when it fits."""
    import jsonschema_rs

    try:
        validator = jsonschema_rs.validator_for(schema)
    except Exception:  # a schema the validator does not understand: the provider already checked it
        return None
    error = next(iter(validator.iter_errors(value)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.instance_path)
    return f"the answer does not fit responseFormat{f' at {where}' if where else ''}: {error.message}"
