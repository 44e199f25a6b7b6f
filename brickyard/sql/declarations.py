"""Every AI function declared once: its SQL signature, how each argument reaches Python, its result type.

From these declarations come the DuckDB macros and Arrow UDFs (`brickyard.sql.duckdb`), the SQL API's
allow-list (`brickyard.server.sql_api`) and the README's compatibility table (`compatibility_table()`).
A declaration names the `FunctionBinding` method that does the work; every function takes
`endpoint => 'name'`, which overrides `[functions]` and `[defaults]` for that call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from brickyard.functions.extract import SQL_TYPES


@dataclass(frozen=True)
class Param:
    """One argument: its SQL name, how the macro hands it to the UDF (`{x}` is the argument), and its default."""

    name: str
    encode: str = "__ai_text({x})"
    udf_type: str = "VARCHAR"
    default: str | None = None
    """SQL default for an optional (named) argument; None: required and positional."""
    passed: bool = True
    """False for an argument accepted for compatibility and not used (ai_query's `returnType`)."""


TEXT = "__ai_text({x})"
JSON = "to_json({x})::VARCHAR"
ENDPOINT = Param("endpoint", "{x}::VARCHAR", default="NULL")


@dataclass(frozen=True)
class AIFunction:
    """One AI function as SQL sees it."""

    name: str
    params: tuple[Param, ...]
    returns: str
    method: str
    """The `FunctionBinding` method: one list per UDF argument in, one value per row out."""
    summary: str
    wrap: str = "{call}"
    """SQL around the UDF call (`{call}`), e.g. a cast of the JSON text to the declared struct."""
    databricks: bool = True
    options: tuple[str, ...] = ()
    """The keys its `options` argument accepts; any other key is the query's error, naming these."""
    extra_macros: tuple[str, ...] = field(default=())
    """Further overloads written out (SQL `CREATE MACRO` bodies after the name), for functions with two shapes."""

    @property
    def udf(self) -> str:
        return f"__by_{self.name}"

    @property
    def udf_params(self) -> tuple[Param, ...]:
        """The arguments the UDF receives, in order (the binding method's columns)."""
        return tuple(p for p in self.params if p.passed)

    def macro(self) -> str:
        """`CREATE OR REPLACE MACRO name(args) AS body` (with any extra overloads)."""
        signature = ", ".join(p.name if p.default is None else f"{p.name} := {p.default}" for p in self.params)
        arguments = ", ".join(p.encode.replace("{x}", p.name) for p in self.udf_params)
        body = self.wrap.replace("{call}", f"{self.udf}({arguments})")
        overloads = [f"({signature}) AS {body}", *self.extra_macros]
        return f"CREATE OR REPLACE MACRO {self.name}" + ",\n  ".join(overloads)

    def signature(self) -> str:
        """The SQL signature as the README shows it."""
        return f"{self.name}(" + ", ".join(p.name if p.default is None else f"[{p.name}]" for p in self.params) + ")"


def _query_struct_overload() -> str:
    return (
        "(endpoint, request, failOnError, returnType := NULL, modelParameters := NULL, responseFormat := NULL) AS "
        "__by_ai_query_struct(endpoint::VARCHAR, __ai_text(request), to_json(modelParameters)::VARCHAR, "
        "responseFormat::VARCHAR, failOnError::BOOLEAN)"
    )


FUNCTIONS: tuple[AIFunction, ...] = (
    AIFunction(
        "ai_query",
        (
            Param("endpoint", "{x}::VARCHAR"),
            Param("request"),
            Param("returnType", default="NULL", passed=False),
            Param("modelParameters", JSON, default="NULL"),
            Param("responseFormat", "{x}::VARCHAR", default="NULL"),
        ),
        "VARCHAR",
        "ai_query_values",
        "VARCHAR (JSON text with `responseFormat`: a DDL struct or a JSON schema, checked, out-of-range values "
        "are the row's error); `returnType` accepted and ignored; `failOnError => false` gives "
        "STRUCT(result, errorMessage)",
        extra_macros=(_query_struct_overload(),),
    ),
    AIFunction(
        "ai_classify",
        (Param("content"), Param("labels", JSON), Param("options", JSON, default="NULL"), ENDPOINT),
        "VARCHAR",
        "ai_classify",
        "one label of an array or of a label → description object; options `instructions`, `multilabel` "
        "(JSON array text), `confidence` (JSON text: label, confidence, mechanism), `examples` (a table of "
        "labelled rows; DuckDB only); an unknown option is an error",
        options=("instructions", "multilabel", "confidence", "examples"),
    ),
    AIFunction(
        "ai_extract",
        (Param("content"), Param("labels", JSON), Param("options", JSON, default="NULL"), ENDPOINT),
        "VARCHAR",
        "ai_extract",
        "a STRUCT of the labels' values copied from the text (VARCHAR, or typed with labels such as `'total DOUBLE'`); "
        "options `instructions`, `examples` (a table of `content` and `label`, the answer as a JSON object: the most "
        "similar shown to each row, as many as the model learns from, 2 on SmolLM2 and 8 on Gemma 3; DuckDB only), "
        "`shots` (how many examples each row is shown)",
        options=("instructions", "examples", "shots"),
        wrap="json_transform({call}, to_json(map_from_entries(list_transform(labels, x -> __ai_label_field(x)))))",
    ),
    AIFunction(
        "ai_extract_json",
        (Param("content"), Param("schema", JSON), Param("options", JSON, default="NULL"), ENDPOINT),
        "VARCHAR",
        "ai_extract",
        "JSON of a JSON schema's shape (nested output); the options of `ai_extract`",
        options=("instructions", "examples", "shots"),
        wrap="{call}::JSON",
        databricks=False,
    ),
    AIFunction(
        "ai_summarize",
        (Param("content"), Param("max_words", "{x}::INTEGER", "INTEGER", default="50"), ENDPOINT),
        "VARCHAR",
        "ai_summarize",
        "a summary of at most `max_words` words (default 50)",
    ),
    AIFunction(
        "ai_translate",
        (Param("content"), Param("to_lang", "{x}::VARCHAR"), ENDPOINT),
        "VARCHAR",
        "ai_translate",
        "the text in another language (any name or code)",
    ),
    AIFunction("ai_fix_grammar", (Param("content"), ENDPOINT), "VARCHAR", "ai_fix_grammar", "the text corrected"),
    AIFunction("ai_gen", (Param("prompt"), ENDPOINT), "VARCHAR", "ai_gen", "an answer to a prompt"),
    AIFunction(
        "ai_mask",
        (Param("content"), Param("labels", JSON), ENDPOINT),
        "VARCHAR",
        "ai_mask",
        "the text with the labels' entities replaced by `[MASKED]`",
    ),
    AIFunction(
        "ai_analyze_sentiment",
        (Param("content"), ENDPOINT),
        "VARCHAR",
        "ai_analyze_sentiment",
        "positive, negative, neutral or mixed",
    ),
    AIFunction(
        "ai_similarity",
        (Param("a"), Param("b"), ENDPOINT),
        "FLOAT",
        "ai_similarity",
        "cosine of the two texts' embeddings, clipped to 0..1 (each text embedded once per query)",
    ),
    AIFunction(
        "ai_filter",
        (Param("predicate", "{x}::VARCHAR"), Param("content"), Param("options", JSON, default="NULL"), ENDPOINT),
        "BOOLEAN",
        "ai_filter",
        "BOOLEAN: the content satisfies the predicate; `ai_filter(prompt('{0} ... {1}', a, b))` judges a "
        "statement built from several columns; options `target_recall` (a proxy rejects rows, the model judges "
        "the rest), `seed`, `examples` (a table of `content` and a true/false `label` for this predicate: a "
        "classifier trained on the default embedder's vectors answers; DuckDB only), `contrast` (the opposite "
        "statement the embedding mechanism compares rows with; by default the predicate negated at its verb)",
        databricks=False,
        options=("target_recall", "seed", "examples", "contrast"),
        extra_macros=(
            "(statement) AS __by_ai_filter('the statement is true', __ai_text(statement), NULL::VARCHAR, "
            "NULL::VARCHAR)",
        ),
    ),
    AIFunction(
        "ai_match",
        (Param("content"), Param("predicates", JSON), ENDPOINT),
        "VARCHAR[]",
        "ai_match",
        "VARCHAR[]: the predicates the content satisfies, one multi-label call per row (the semantic join's rewrite)",
        databricks=False,
    ),
    AIFunction(
        "ai_embed",
        (Param("content"), ENDPOINT),
        "FLOAT[]",
        "ai_embed",
        "FLOAT[] from an embedding endpoint",
        databricks=False,
    ),
    AIFunction(
        "ai_agg",
        (Param("texts", "{x}::VARCHAR[]", "VARCHAR[]"), Param("instruction", "{x}::VARCHAR"), ENDPOINT),
        "VARCHAR",
        "ai_agg_rows",
        "one answer over any number of rows (map-reduce): `ai_agg(list(col), 'instruction')`",
        databricks=False,
    ),
)
"""The row functions; `vector_search` (a table macro) and `prompt` are plain SQL below."""

BY_NAME = {f.name: f for f in FUNCTIONS}

PROMPT_ARITY = 6
"""`prompt(template, a, ...)` takes up to this many values after the template."""

HELPERS = """
CREATE OR REPLACE MACRO __ai_text(x) AS CAST(x AS VARCHAR);
CREATE OR REPLACE MACRO __ai_label_field(x) AS
    CASE WHEN split_part(trim(x), ' ', -1) IN ({types}) AND position(' ' IN trim(x)) > 0
         THEN (trim(left(trim(x), length(trim(x)) - length(split_part(trim(x), ' ', -1)))),
               split_part(trim(x), ' ', -1))
         ELSE (trim(x), 'VARCHAR') END;
""".replace("{types}", ", ".join(f"'{name}'" for name in SQL_TYPES))

TABLE_MACROS = """
CREATE OR REPLACE MACRO vector_search(index_name, query, k := 10) AS TABLE
    SELECT key, text, list_cosine_similarity(embedding::FLOAT[], ai_embed(query)) AS score
    FROM query_table(index_name) ORDER BY score DESC LIMIT k;
"""


def _prompt_macro() -> str:
    """`prompt('Is {0} better than {1}?', a, b)`: a template over several columns (Snowflake's PROMPT)."""
    overloads = []
    for n in range(1, PROMPT_ARITY + 1):
        names = [f"v{i}" for i in range(n)]
        args = ", ".join(f"CAST({v} AS VARCHAR)" for v in names)
        overloads.append(f"(template, {', '.join(names)}) AS format(template, {args})")
    return "CREATE OR REPLACE MACRO prompt" + ",\n  ".join(overloads) + ";"


def macros_sql() -> str:
    """Every macro, in order: helpers first, then one per function, then `prompt` and the table macros."""
    return "\n".join([HELPERS, *(f.macro() + ";" for f in FUNCTIONS), _prompt_macro(), TABLE_MACROS])


SQL_NAMES = frozenset({*BY_NAME, "prompt", "vector_search"})
"""Every name the SQL surface adds (the SQL API's allow-list of functions)."""

AI_FUNCTION_NAMES = frozenset(BY_NAME)


def compatibility_table() -> str:
    """The README's table of functions: signature, Databricks name or brickyard's own, what it returns."""
    lines = ["| function | Databricks | returns |", "| --- | --- | --- |"]
    for f in FUNCTIONS:
        origin = "same name" if f.databricks else "brickyard (Snowflake/BigQuery style)"
        lines.append(f"| `{f.signature()}` | {origin} | {f.summary} |")
    return "\n".join(lines)


_INTERNAL = re.compile(r"__by_(ai_\w+?)(?:_struct)?\b|__ai_text\b|__ai_label_field\b")
_WRAPPERS = re.compile(
    r"^(?:(?:Invalid Input|Binder|Conversion) Error: )?"
    r"(?:Python exception occurred while executing the UDF: )?(?:\w+Error: )?"
)


def public_message(error: BaseException | str) -> str:
    """An engine error as a user should read it: no wrapper prefixes, no internal function names."""
    text = str(error).split("\n\nAt:")[0].strip()
    text = _WRAPPERS.sub("", text, count=1)
    return _INTERNAL.sub(lambda m: m.group(1) or "an AI function argument", text)
