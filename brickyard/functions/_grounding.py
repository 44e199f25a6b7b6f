"""Extraction that copies instead of inventing: values checked against the input, typed, de-duplicated, bounded.

`bounded_schema(schema, text)` tightens a JSON schema for one input (strings no longer than the text, arrays no
longer than its words), so a small model cannot loop until `max_tokens`. `ground(value, schema, text)` keeps
what the text supports: a string must occur in the text (compared after normalising case, spacing, thousands
separators and currency symbols); numbers, dates, booleans and enums are parsed and validated; arrays lose
duplicates and items not in the text. What is dropped is reported, field by field.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Any

MAX_STRING = 300
MAX_ITEMS = 32
_CURRENCY = re.compile(r"[$€£¥₹₩₽¢]|\b(?:usd|eur|gbp|jpy|chf|cad|aud|inr)\b", re.IGNORECASE)
_THOUSANDS = re.compile(r"(?<=\d)[,\u202f\u00a0'](?=\d{3}\b)")
_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%B %d, %Y", "%d %B %Y", "%b %d, %Y", "%d %b %Y")
_TRUE, _FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0"}


def normalise(text: str) -> str:
    """Lower case, one space, no thousands separators or currency symbols, plain quotes and dashes."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"').replace("–", "-")
    text = _THOUSANDS.sub("", text)
    text = _CURRENCY.sub(" ", text)
    return _SPACES.sub(" ", text).strip(" .,;:")


def occurs(value: str, text: str) -> bool:
    """Whether `value` appears in `text`, after normalising both."""
    wanted = normalise(value)
    return bool(wanted) and wanted in normalise(text)


def bounded_schema(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """The schema with string lengths and array sizes bounded by what this text can hold."""
    words = max(1, len(text.split()))
    limit = max(8, min(MAX_STRING, len(text)))

    def bound(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        out = {k: bound(v) if k in ("items",) else v for k, v in node.items()}
        if isinstance(node.get("properties"), dict):
            out["properties"] = {k: bound(v) for k, v in node["properties"].items()}
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "string" in kinds and "enum" not in node and "format" not in node:
            out["maxLength"] = min(int(node.get("maxLength", limit)), limit)
        if "array" in kinds:
            out["maxItems"] = min(int(node.get("maxItems", MAX_ITEMS)), MAX_ITEMS, words)
        return out

    return dict(bound(schema))


def output_budget(schema: dict[str, Any]) -> int:
    """`max_tokens` that fits the largest answer the bounded schema admits (about three characters a token)."""

    def size(node: Any) -> int:
        if not isinstance(node, dict):
            return 8
        if isinstance(node.get("properties"), dict):
            return 4 + sum(size(v) + len(k) // 3 + 4 for k, v in node["properties"].items())
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "array" in kinds:
            return 4 + int(node.get("maxItems", MAX_ITEMS)) * (size(node.get("items", {})) + 2)
        if "string" in kinds:
            return int(node.get("maxLength", 64)) // 3 + 4
        return 8

    return max(32, min(2048, size(schema)))


def ground(value: Any, schema: dict[str, Any], text: str, where: str, dropped: dict[str, str]) -> Any:
    """`value` as far as `text` supports it and `schema` types it; each dropped part is noted in `dropped`."""
    if value is None or value == "" or (isinstance(value, str) and value.strip().lower() in ("null", "none", "n/a")):
        return None
    kinds = schema.get("type")
    kinds = set(kinds if isinstance(kinds, list) else [kinds]) - {"null"}
    if isinstance(schema.get("properties"), dict):
        if not isinstance(value, dict):
            dropped[where or "value"] = "not an object"
            return None
        return {
            key: ground(value.get(key), sub, text, f"{where}.{key}" if where else key, dropped)
            for key, sub in schema["properties"].items()
        }
    if "array" in kinds:
        items = value if isinstance(value, list) else [value]
        kept: list[Any] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            grounded = ground(item, schema.get("items", {}), text, f"{where}[{i}]", dropped)
            key = normalise(str(grounded)) if grounded is not None else ""
            if grounded is None or key in seen:
                continue
            seen.add(key)
            kept.append(grounded)
        return kept
    if "enum" in schema:
        choices = {_SPACES.sub(" ", str(c)).strip().lower(): c for c in schema["enum"]}
        found = choices.get(_SPACES.sub(" ", str(value)).strip().lower())
        if found is None:
            dropped[where] = f"{value!r} is not one of {list(schema['enum'])}"
        return found
    if kinds & {"number", "integer"}:
        return _number(value, "integer" in kinds and "number" not in kinds, text, where, dropped)
    if "boolean" in kinds:
        word = str(value).strip().lower()
        if isinstance(value, bool) or word in _TRUE | _FALSE:
            return value if isinstance(value, bool) else word in _TRUE
        dropped[where] = f"{value!r} is not a boolean"
        return None
    if schema.get("format") in ("date", "date-time"):
        return _date(str(value), where, dropped)
    text_value = str(value).strip()
    if not occurs(text_value, text):
        dropped[where] = f"{text_value[:60]!r} is not in the text"
        return None
    return text_value


def _number(value: Any, integer: bool, text: str, where: str, dropped: dict[str, str]) -> int | float | None:
    if isinstance(value, bool):
        dropped[where] = "a boolean is not a number"
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        match = _NUMBER.search(normalise(str(value)).replace(" ", ""))
        if match is None:
            dropped[where] = f"{str(value)[:60]!r} is not a number"
            return None
        number = float(match.group())
    digits = _NUMBER.findall(normalise(text).replace(" ", ""))
    if not any(float(d) == number for d in digits):
        dropped[where] = f"{value!r} is not in the text"
        return None
    if integer:
        if number != int(number) or abs(number) >= 2**63:
            dropped[where] = f"{value!r} is not an integer in range"
            return None
        return int(number)
    return int(number) if number == int(number) and abs(number) < 2**53 else number


def _date(value: str, where: str, dropped: dict[str, str]) -> str | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value.strip(), fmt).date().isoformat()
        except ValueError:
            continue
    try:
        return date.fromisoformat(value.strip()[:10]).isoformat()
    except ValueError:
        dropped[where] = f"{value[:60]!r} is not a date"
        return None
