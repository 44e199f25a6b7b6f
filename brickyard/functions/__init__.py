"""AI functions as plain async Python functions over lists; the SQL engines are thin adapters.

Each returns an `Outcome`: one value per input (None for NULL input, never a model call) and one
error per input (None when the row succeeded), so no row is ever dropped.
"""

from brickyard.functions._rows import Demo, Outcome
from brickyard.functions.classify import analyze_sentiment, classify, classify_requests, label_map, parse_label
from brickyard.functions.embed import embed, similarity
from brickyard.functions.extract import extract
from brickyard.functions.filter_agg import aggregate, filter_, match
from brickyard.functions.query import query
from brickyard.functions.schema import ddl_to_schema, parse_response_format
from brickyard.functions.text import fix_grammar, gen, mask, summarize, translate
from brickyard.models.base import Demonstrations
from brickyard.models.catalog import CATALOG

__all__ = [
    "Demo",
    "Outcome",
    "aggregate",
    "analyze_sentiment",
    "classify",
    "classify_requests",
    "ddl_to_schema",
    "embed",
    "extract",
    "filter_",
    "fix_grammar",
    "gen",
    "label_map",
    "mask",
    "match",
    "mechanisms",
    "parse_label",
    "parse_response_format",
    "query",
    "similarity",
    "summarize",
    "translate",
]


def mechanisms(model: str | None) -> str:
    """How the AI functions answer on an endpoint serving `model` (shown by `brickyard models list`).

    The small local models answer classification and filters by embedding (measured better than their own
    labels, BENCHMARKS.md §10) and knowledge questions extractively (§11); extraction keeps values found in
    the text. Other chat models generate, constrained to the labels or the schema.
    """
    name = model or ""
    if name == "local:e5-small":
        return "embeddings (ai_embed, ai_similarity; the embedding mechanisms)"
    if name.startswith("classifier:"):
        return "a trained classifier (classification only)"
    if name.startswith("local:"):
        bundled = CATALOG.get(name.removeprefix("local:"))
        shown = f", {_shown(bundled.demonstrations)}" if bundled else ""
        return f"classify/filter: embedding; knowledge: extractive; extract: grounded{shown}"
    return "generation (constrained); extract: grounded"


def _shown(demonstrations: Demonstrations) -> str:
    """How a bundled model is shown `examples`, for `models list`."""
    style = ", compact JSON" if demonstrations.compact_json else ""
    return f"{demonstrations.shown} examples shown{style}"
