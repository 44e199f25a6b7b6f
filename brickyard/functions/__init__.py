"""AI functions as plain async Python functions over lists; the SQL engines are thin adapters.

Each returns an `Outcome`: one value per input (None for NULL input, never a model call) and one
error per input (None when the row succeeded), so no row is ever dropped.
"""

from brickyard.functions._rows import Demo, Outcome
from brickyard.functions.classify import analyze_sentiment, classify, classify_requests, label_map, parse_label
from brickyard.functions.embed import embed, similarity
from brickyard.functions.extract import extract
from brickyard.functions.filter_agg import aggregate, filter_
from brickyard.functions.query import query
from brickyard.functions.schema import ddl_to_schema, parse_response_format
from brickyard.functions.text import fix_grammar, gen, mask, summarize, translate

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
    "parse_label",
    "parse_response_format",
    "query",
    "similarity",
    "summarize",
    "translate",
]
