"""Matching helpers for the scorers: text, label and value normalisation, ROUGE-L's LCS, a small
JSON-schema check, and the documents a knowledge answer cites."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from brickyard.functions._rows import is_null

_ABSENT = {"", "null", "none", "n/a"}
_NUMBER = re.compile(r"^[+-]?(\d+|\d{1,3}(,\d{3})+)(\.\d+)?([eE][+-]?\d+)?$|^[+-]?\.\d+$")


# --- normalisation ------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Casefolded, punctuation removed (Unicode category P), whitespace collapsed."""
    kept = "".join(ch for ch in unicodedata.normalize("NFKC", text) if not unicodedata.category(ch).startswith("P"))
    return " ".join(kept.casefold().split())


def output_text(output: Any) -> str:
    """The text a scorer compares: a knowledge answer's `answer`, a string as is, anything else as JSON."""
    if isinstance(output, dict) and isinstance(output.get("answer"), str):
        return output["answer"]
    if isinstance(output, str):
        return output
    return json.dumps(output, ensure_ascii=False, sort_keys=True, default=str)


def label_key(label: Any) -> str:
    """A label compared case- and spacing-insensitively."""
    return " ".join(str(label).casefold().split())


def label_set(value: Any) -> frozenset[str]:
    """A multilabel value as a set of label keys: a list, a JSON array, or "a, b" text."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = re.split(r"[,;|]", value)
        value = parsed if isinstance(parsed, list) else [parsed]
    if not isinstance(value, list | tuple | set | frozenset):
        value = [value]
    return frozenset(label_key(v) for v in value if not is_null(v) and str(v).strip())


def is_multi(*values: Any) -> bool:
    """Whether any value is a collection (a multilabel value)."""
    return any(isinstance(v, list | tuple | set | frozenset) for v in values)


def number_key(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().lstrip("$€£¥").rstrip("%").strip()
        if not _NUMBER.match(text):
            return None
        number = float(text.replace(",", ""))
    else:
        return None
    return f"#{number:.12g}" if math.isfinite(number) else None


def scalar_key(value: Any) -> str | None:
    """A normalised scalar: a number as a number, text normalised; None when absent (null, empty)."""
    if is_null(value):
        return None
    number = number_key(value)
    if number is not None:
        return number
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        flat = {k: sorted(v) for k, v in flat_fields(value).items() if v}
        return json.dumps(flat, sort_keys=True) if flat else None
    text = str(value)
    if text.strip().casefold() in _ABSENT:
        return None
    return normalize_text(text) or None


def value_items(value: Any) -> frozenset[str]:
    """A field's value as a set of normalised items (a list is a set; empty = absent)."""
    if isinstance(value, list | tuple | set | frozenset):
        return frozenset(key for item in value if (key := scalar_key(item)) is not None)
    key = scalar_key(value)
    return frozenset() if key is None else frozenset([key])


def flat_fields(obj: dict[str, Any], prefix: str = "") -> dict[str, frozenset[str]]:
    """Nested objects flattened to dotted field names, each with its set of normalised items."""
    fields: dict[str, frozenset[str]] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            fields.update(flat_fields(value, f"{name}."))
        else:
            fields[name] = value_items(value)
    return fields


def as_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if (tp or fp or fn) else 1.0


def tokens(text: str) -> list[str]:
    """Lowercased word tokens (letters and digits), as ROUGE compares them."""
    return re.findall(r"\w+", text.casefold())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row of memory)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F-measure (β = 1) of two texts on word tokens: LCS / length as precision and recall."""
    c, r = tokens(candidate), tokens(reference)
    if not c or not r:
        return float(not c and not r)
    lcs = lcs_length(c, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(c), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def references(expected: Any) -> list[str]:
    """The reference texts: `expected` itself, or each item of a list of acceptable answers."""
    if isinstance(expected, list | tuple):
        return [output_text(e) for e in expected if not is_null(e)]
    return [output_text(expected)]


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}


def schema_problems(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """What `value` breaks in a JSON schema: `type`, `enum`, `required`, `properties`,
    `additionalProperties: false`, `items` and `anyOf`/`oneOf` (a small subset; other keywords are ignored)."""
    for key in ("anyOf", "oneOf"):
        if key in schema and not any(not schema_problems(value, sub, path) for sub in schema[key]):
            return [f"{path}: matches none of the `{key}` alternatives"]
    types = schema.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    if names and not any(_TYPES.get(name, lambda v: True)(value) for name in names):
        return [f"{path}: expected {' or '.join(names)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    problems = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        problems += [f"{path}: missing required key {key!r}" for key in schema.get("required", []) if key not in value]
        for key, sub in properties.items():
            if key in value and isinstance(sub, dict):
                problems += schema_problems(value[key], sub, f"{path}.{key}")
        if schema.get("additionalProperties") is False:
            problems += [f"{path}: unexpected key {key!r}" for key in value if key not in properties]
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += schema_problems(item, schema["items"], f"{path}[{i}]")
    return problems


def doc_key(name: str) -> str:
    return str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].casefold()


def cited_documents(output: Any) -> list[str]:
    """The distinct documents a knowledge answer cites, in citation order (matched by file name)."""
    citations = output.get("citations") if isinstance(output, dict) else None
    documents: list[str] = []
    for citation in citations or []:
        if isinstance(citation, dict):
            name = next(
                (citation[k] for k in ("source_path", "source", "document", "path", "title") if citation.get(k)), None
            )
        else:
            name = citation
        if name and doc_key(name) not in {doc_key(d) for d in documents}:
            documents.append(str(name))
    return documents
