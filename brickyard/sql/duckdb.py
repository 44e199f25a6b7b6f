"""The embedded warehouse: a DuckDB connection with every AI function registered.

Each function is a vectorised Arrow UDF (`__by_<name>`): DuckDB hands it a whole chunk of rows,
which goes through the batch engine at once. SQL macros in front give Databricks' names, optional
and named arguments: Databricks' `name => value` works as written (DuckDB also accepts `name := value`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brickyard._errors import InvalidRequestError, MissingExtraError
from brickyard.functions.extract import SQL_TYPES
from brickyard.sql.binding import FunctionBinding
from brickyard.store.payloads import register_view as register_payloads_view
from brickyard.workspace import WAREHOUSE_NAME as WAREHOUSE_NAME  # the file name, for old imports
from brickyard.workspace import Workspace

MACROS = """
CREATE OR REPLACE MACRO ai_query(endpoint, request, returnType := NULL, modelParameters := NULL,
                                 responseFormat := NULL) AS
    __by_ai_query(endpoint, request, to_json(modelParameters)::VARCHAR, responseFormat::VARCHAR),
  (endpoint, request, failOnError, returnType := NULL, modelParameters := NULL, responseFormat := NULL) AS
    __by_ai_query_struct(endpoint, request, to_json(modelParameters)::VARCHAR, responseFormat::VARCHAR,
                         failOnError::BOOLEAN);
CREATE OR REPLACE MACRO ai_classify(content, labels, options := NULL) AS
    __by_ai_classify(content, to_json(labels)::VARCHAR, to_json(options)::VARCHAR);
CREATE OR REPLACE MACRO __ai_label_field(x) AS
    CASE WHEN split_part(trim(x), ' ', -1) IN ({types}) AND position(' ' IN trim(x)) > 0
         THEN (trim(left(trim(x), length(trim(x)) - length(split_part(trim(x), ' ', -1)))),
               split_part(trim(x), ' ', -1))
         ELSE (trim(x), 'VARCHAR') END;
CREATE OR REPLACE MACRO ai_extract(content, labels) AS
    json_transform(__by_ai_extract(content, to_json(labels)::VARCHAR),
                   to_json(map_from_entries(list_transform(labels, x -> __ai_label_field(x)))));
CREATE OR REPLACE MACRO ai_extract_json(content, schema) AS
    __by_ai_extract(content, to_json(schema)::VARCHAR)::JSON;
CREATE OR REPLACE MACRO ai_summarize(content, max_words := 50) AS __by_ai_summarize(content, max_words);
CREATE OR REPLACE MACRO ai_translate(content, to_lang) AS __by_ai_translate(content, to_lang);
CREATE OR REPLACE MACRO ai_fix_grammar(content) AS __by_ai_fix_grammar(content);
CREATE OR REPLACE MACRO ai_gen(prompt) AS __by_ai_gen(prompt);
CREATE OR REPLACE MACRO ai_mask(content, labels) AS __by_ai_mask(content, to_json(labels)::VARCHAR);
CREATE OR REPLACE MACRO ai_analyze_sentiment(content) AS __by_ai_analyze_sentiment(content);
CREATE OR REPLACE MACRO ai_similarity(a, b) AS __by_ai_similarity(a, b);
CREATE OR REPLACE MACRO ai_filter(predicate, content) AS __by_ai_filter(predicate, content);
CREATE OR REPLACE MACRO ai_embed(content, endpoint := NULL) AS __by_ai_embed(content, endpoint);
CREATE OR REPLACE MACRO ai_agg(texts, instruction) AS __by_ai_agg(texts, instruction);
CREATE OR REPLACE MACRO vector_search(index_name, query, k := 10) AS TABLE
    SELECT key, text, list_cosine_similarity(embedding::FLOAT[], ai_embed(query)) AS score
    FROM query_table(index_name) ORDER BY score DESC LIMIT k;
""".replace("{types}", ", ".join(f"'{name}'" for name in SQL_TYPES))


def _duckdb() -> Any:
    try:
        import duckdb
        import pyarrow  # noqa: F401  (Arrow UDFs need it)
    except ImportError as exc:
        raise MissingExtraError(exc.name or "duckdb", "sql") from exc
    return duckdb


def connect(
    workspace: Workspace | str | Path | None = None,
    database: str | Path | None = None,
    *,
    progress: bool | None = False,
    max_cost_usd: float | None = None,
    dry_run: bool = False,
    read_only: bool = False,
) -> Any:
    """A DuckDB connection on the workspace's warehouse with every AI function registered.

    `database` defaults to `<workspace>/warehouse.duckdb` (":memory:" for none). `max_cost_usd`
    caps what the connection's queries may spend; `dry_run` records calls instead of making them
    (see `estimate`). The binding is at `con.brickyard` for estimates and closing.
    """
    duckdb = _duckdb()
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if database is None:
        ws.path.mkdir(parents=True, exist_ok=True)
        database = ws.warehouse_path
    con = duckdb.connect(str(database), read_only=read_only)
    binding = FunctionBinding(ws, progress=progress, max_cost_usd=max_cost_usd, dry_run=dry_run)
    register(con, binding)
    register_payloads_view(con, ws.payloads_dir)  # the payload logs as a table: `SELECT ... FROM payloads`
    return _Connection(con, binding)


class _Connection:
    """A DuckDB connection that also owns its function binding (closed together)."""

    def __init__(self, con: Any, binding: FunctionBinding) -> None:
        self._con = con
        self.brickyard = binding

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    @property
    def duckdb(self) -> Any:
        """The underlying `duckdb.DuckDBPyConnection`."""
        return self._con

    def close(self) -> None:
        self._con.close()
        self.brickyard.close()

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _examples_reader(con: Any) -> Any:
    """Reads (text, label) rows of a table or view through a second cursor (a function runs inside a query)."""
    cursor = con.cursor()

    def read(relation: str) -> list[tuple[str, str]]:
        try:
            columns = [c[0] for c in cursor.execute(f"SELECT * FROM {relation} LIMIT 0").description]
        except Exception as exc:
            raise InvalidRequestError(
                f"examples: cannot read {relation} ({str(exc).splitlines()[0]}). "
                "Fix: name a table or a (non-temporary) view of the warehouse"
            ) from None
        lower = {c.lower(): c for c in columns}
        text = lower.get("content") or lower.get("text")
        if "label" not in lower or text is None:
            raise InvalidRequestError(
                f"examples: {relation} has columns {columns}; it needs `label` and `content` (or `text`). "
                "Fix: SELECT review AS content, verdict AS label ... into a view"
            )
        query = f'SELECT "{text}", "{lower["label"]}" FROM {relation} WHERE "{lower["label"]}" IS NOT NULL'
        return [(str(t), str(lab)) for t, lab in cursor.execute(query).fetchall() if t is not None]

    return read


def register(con: Any, binding: FunctionBinding) -> None:
    """Register the Arrow UDFs and the Databricks-style macros on a DuckDB connection."""
    import pyarrow as pa

    def strings(array: Any) -> list[Any]:
        return list(array.to_pylist())

    binding.read_examples = _examples_reader(con)

    def udf(name: str, params: list[str], returns: str, fn: Any) -> None:
        con.create_function(name, fn, params, returns, type="arrow", null_handling="special", side_effects=True)

    def ai_query(endpoint: Any, request: Any, params: Any, fmt: Any) -> Any:
        values, _ = binding.ai_query(strings(endpoint), strings(request), strings(params), strings(fmt))
        return pa.array(values, type=pa.string())

    def ai_query_struct(endpoint: Any, request: Any, params: Any, fmt: Any, fail: Any) -> Any:
        fail_on_error = bool(fail[0].as_py()) if len(fail) and fail[0].as_py() is not None else True
        values, errors = binding.ai_query(
            strings(endpoint), strings(request), strings(params), strings(fmt), fail_on_error=fail_on_error
        )
        return pa.StructArray.from_arrays(
            [pa.array(values, type=pa.string()), pa.array(errors, type=pa.string())], names=["result", "errorMessage"]
        )

    struct_type = "STRUCT(result VARCHAR, errorMessage VARCHAR)"
    udf("__by_ai_query", ["VARCHAR"] * 4, "VARCHAR", ai_query)
    udf("__by_ai_query_struct", ["VARCHAR"] * 4 + ["BOOLEAN"], struct_type, ai_query_struct)
    udf(
        "__by_ai_classify",
        ["VARCHAR"] * 3,
        "VARCHAR",
        lambda c, labels, opts: pa.array(binding.ai_classify(strings(c), strings(labels), strings(opts)), pa.string()),
    )
    udf(
        "__by_ai_extract",
        ["VARCHAR"] * 2,
        "VARCHAR",
        lambda c, labels: pa.array(binding.ai_extract(strings(c), strings(labels)), pa.string()),
    )
    udf(
        "__by_ai_summarize",
        ["VARCHAR", "INTEGER"],
        "VARCHAR",
        lambda c, words: pa.array(binding.ai_summarize(strings(c), strings(words)), pa.string()),
    )
    udf(
        "__by_ai_translate",
        ["VARCHAR"] * 2,
        "VARCHAR",
        lambda c, lang: pa.array(binding.ai_translate(strings(c), strings(lang)), pa.string()),
    )
    udf(
        "__by_ai_fix_grammar",
        ["VARCHAR"],
        "VARCHAR",
        lambda c: pa.array(binding.ai_fix_grammar(strings(c)), pa.string()),
    )
    udf("__by_ai_gen", ["VARCHAR"], "VARCHAR", lambda c: pa.array(binding.ai_gen(strings(c)), pa.string()))
    udf(
        "__by_ai_mask",
        ["VARCHAR"] * 2,
        "VARCHAR",
        lambda c, labels: pa.array(binding.ai_mask(strings(c), strings(labels)), pa.string()),
    )
    udf(
        "__by_ai_analyze_sentiment",
        ["VARCHAR"],
        "VARCHAR",
        lambda c: pa.array(binding.ai_analyze_sentiment(strings(c)), pa.string()),
    )
    udf(
        "__by_ai_similarity",
        ["VARCHAR"] * 2,
        "FLOAT",
        lambda a, b: pa.array(binding.ai_similarity(strings(a), strings(b)), pa.float32()),
    )
    udf(
        "__by_ai_filter",
        ["VARCHAR"] * 2,
        "BOOLEAN",
        lambda p, c: pa.array(binding.ai_filter(strings(p), strings(c)), pa.bool_()),
    )
    udf(
        "__by_ai_embed",
        ["VARCHAR"] * 2,
        "FLOAT[]",
        lambda c, e: pa.array(binding.ai_embed(strings(c), strings(e)), pa.list_(pa.float32())),
    )

    def ai_agg(texts: Any, instruction: Any) -> Any:
        # One list of texts per row (an aggregate via `list(col)`); rows are answered one by one.
        out = []
        for row_texts, row_instruction in zip(texts.to_pylist(), instruction.to_pylist(), strict=True):
            out.append(None if row_texts is None else binding.ai_agg(row_texts, row_instruction))
        return pa.array(out, pa.string())

    udf("__by_ai_agg", ["VARCHAR[]", "VARCHAR"], "VARCHAR", ai_agg)
    for statement in MACROS.split(";"):
        if statement.strip():
            con.execute(statement)
