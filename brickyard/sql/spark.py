"""The same AI functions on Apache Spark, as pandas (Arrow) UDFs.

`register(spark, target)` registers every function on a `SparkSession`. `target` is either a
workspace folder (each executor runs the models itself, reading the same `brickyard.toml`), or the
URL of a brickyard gateway / any OpenAI-compatible server (`http://host:port/v1`): executors then
send every call there, so rate limits and budgets are enforced in one place for the whole cluster.
"""

import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from brickyard._errors import MissingExtraError, UserError
from brickyard.sql.binding import FunctionBinding
from brickyard.workspace import Workspace

GATEWAY_KEY_ENV = "BRICKYARD_GATEWAY_KEY"

# One binding per executor Python process and target, built on first use: a Spark worker is a
# long-lived process that serves many batches, and loading a model per batch would dominate.
_WORKER_BINDINGS: dict[str, FunctionBinding] = {}


class _Durable:
    """A binding whose calls return only once their usage is in the ledger: a cluster may stop an executor
    (and its Python workers, without exit handlers) as soon as its last task has finished."""

    def __init__(self, binding: FunctionBinding) -> None:
        self.binding = binding

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.binding, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            finally:
                self.binding.workspace.store.flush()

        return call


def _binding(target: str, default_endpoint: str | None, env: Mapping[str, str]) -> Any:
    key = f"{target}|{default_endpoint}|{sorted(env.items())}"
    if key not in _WORKER_BINDINGS:
        _WORKER_BINDINGS[key] = FunctionBinding(_worker_workspace(target, default_endpoint, env))
    return _Durable(_WORKER_BINDINGS[key])


def _key_variables(target: str) -> set[str]:
    """The variables the executors need that a cluster's workers do not inherit from the driver: the gateway
    key (gateway mode), or every endpoint's and provider's key variable (workspace mode)."""
    if target.startswith(("http://", "https://")):
        return {GATEWAY_KEY_ENV}
    from brickyard.models.registry import discover_providers

    endpoints = Workspace(target).settings.endpoints.values()
    names = {e.api_key_env for e in endpoints} | {p.key_env for p in discover_providers().values()}
    return {n for n in names if n}


def _worker_workspace(target: str, default_endpoint: str | None, forwarded: Mapping[str, str]) -> Workspace:
    env = {**os.environ, **forwarded}
    if not target.startswith(("http://", "https://")):
        if not Path(target).is_dir():
            raise UserError(
                f"the workspace {target} is not readable on this Spark executor ({socket.gethostname()}). Fix: put "
                "it on a filesystem every worker mounts at the same path, or use gateway mode (an http:// target)"
            )
        return Workspace(target, env=env)
    # Gateway mode: a private workspace whose endpoints are all the gateway's, by name.
    home = Path(tempfile.mkdtemp(prefix="brickyard-spark-"))
    chat = default_endpoint or "default"
    key = f'api_key_env = "{GATEWAY_KEY_ENV}"\n' if env.get(GATEWAY_KEY_ENV) else ""  # a keyed gateway
    (home / "brickyard.toml").write_text(
        f'[defaults]\nchat = "{chat}"\nembedding = "{chat}"\n'
        f'[endpoints."{chat}"]\nmodel = "openai:{chat}"\nbase_url = "{target}"\ncache = false\n{key}'
    )
    workspace = Workspace(home, env=env)
    workspace.registry.gateway_base_url = target
    workspace.registry.gateway_key_env = GATEWAY_KEY_ENV
    return workspace


def _pyspark() -> Any:
    try:
        import pandas  # noqa: F401
        import pyspark.sql.functions as functions
    except ImportError as exc:
        raise MissingExtraError(exc.name or "pyspark", "spark") from exc
    return functions


def register(
    spark: Any,
    target: str | Path | Workspace,
    *,
    default_endpoint: str | None = None,
    forward_env: Iterable[str] = (),
) -> list[str]:
    """Register the AI functions on `spark`; returns their names.

    Executors on a cluster do not inherit the driver's environment: the key variables the endpoints read
    (`BRICKYARD_GATEWAY_KEY` in gateway mode), plus any named in `forward_env`, are taken from the driver
    when set there and travel inside the functions' closures (never in the Spark conf or its logs).

    Spark's Python UDFs take positional arguments: optional ones are separate names
    (`ai_summarize(content)` and `ai_summarize(content, max_words)` both work because the UDF has a
    default; named arguments `max_words => 10` work on Spark 4).
    """
    functions = _pyspark()
    import pandas as pd

    pandas_udf = functions.pandas_udf
    if isinstance(target, Workspace):
        target = str(target.path)
    target = str(Path(target).resolve()) if not str(target).startswith(("http://", "https://")) else str(target)
    spark.conf.set("spark.sql.execution.pythonUDF.arrow.enabled", "true")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    if not target.startswith(("http://", "https://")) and not Path(target).is_dir():
        raise UserError(
            f"the Spark target {target} is neither a workspace folder nor an http(s) URL. "
            f"Fix: brickyard init {target}, or pass a gateway URL like http://127.0.0.1:8080/v1"
        )
    names = [forward_env] if isinstance(forward_env, str) else list(forward_env)  # one name or several
    unset = [n for n in names if n not in os.environ]
    if unset:
        raise UserError(f"forward_env names {', '.join(unset)}, not set on the driver. Fix: export it, or drop it")
    forwarded = {n: os.environ[n] for n in sorted(_key_variables(target) | set(names)) if n in os.environ}

    def b() -> Any:  # a FunctionBinding
        return _binding(target, default_endpoint, forwarded)

    def col(series: Any) -> list[Any]:
        return [None if v is None or (isinstance(v, float) and v != v) else v for v in series.tolist()]

    def labels_json(series: Any) -> list[str | None]:
        out: list[str | None] = []
        for v in series.tolist():
            if v is None:
                out.append(None)
            elif isinstance(v, (str, dict)):
                out.append(json.dumps(v))
            else:
                out.append(json.dumps([str(x) for x in list(v)]))
        return out

    def optional(series: Any, n: int) -> list[Any]:
        return [None] * n if series is None else col(series)

    def as_json(series: Any, n: int) -> list[str | None]:
        """A struct or map column (dicts, Rows or key/value pairs) as JSON text, like DuckDB's to_json."""
        if series is None:
            return [None] * n
        if isinstance(series, pd.DataFrame):  # a struct column arrives as a frame of its fields
            return [
                json.dumps({k: v for k, v in row.items() if v is not None}, default=str)
                for row in series.to_dict(orient="records")
            ]
        out: list[str | None] = []
        for v in series.tolist():
            if v is None:
                out.append(None)
            elif isinstance(v, str):
                out.append(v)
            else:
                pairs = v.asDict() if hasattr(v, "asDict") else (dict(v) if not isinstance(v, dict) else v)
                out.append(json.dumps(pairs, default=str))
        return out

    @pandas_udf("string")
    def ai_query(
        endpoint: pd.Series,
        request: pd.Series,
        returnType: pd.Series = None,
        modelParameters: pd.Series = None,
        responseFormat: pd.Series = None,
    ) -> pd.Series:
        n = len(request)
        values, _ = b().ai_query(col(endpoint), col(request), as_json(modelParameters, n), optional(responseFormat, n))
        return pd.Series(values, dtype=object)

    @pandas_udf("result string, errorMessage string")
    def ai_query_safe(
        endpoint: pd.Series,
        request: pd.Series,
        modelParameters: pd.Series = None,
        responseFormat: pd.Series = None,
    ) -> pd.DataFrame:
        n = len(request)
        values, errors = b().ai_query(
            col(endpoint), col(request), as_json(modelParameters, n), optional(responseFormat, n), fail_on_error=False
        )
        return pd.DataFrame({"result": values, "errorMessage": errors})

    @pandas_udf("string")
    def ai_classify(content: pd.Series, labels: pd.Series, options: pd.Series = None) -> pd.Series:
        return pd.Series(
            b().ai_classify(col(content), labels_json(labels), as_json(options, len(content))), dtype=object
        )

    @pandas_udf("string")
    def ai_extract(content: pd.Series, labels: pd.Series) -> pd.Series:
        return pd.Series(b().ai_extract(col(content), labels_json(labels)), dtype=object)

    @pandas_udf("string")
    def ai_summarize(content: pd.Series, max_words: pd.Series = None) -> pd.Series:
        return pd.Series(b().ai_summarize(col(content), optional(max_words, len(content))), dtype=object)

    @pandas_udf("string")
    def ai_translate(content: pd.Series, to_lang: pd.Series) -> pd.Series:
        return pd.Series(b().ai_translate(col(content), col(to_lang)), dtype=object)

    @pandas_udf("string")
    def ai_fix_grammar(content: pd.Series) -> pd.Series:
        return pd.Series(b().ai_fix_grammar(col(content)), dtype=object)

    @pandas_udf("string")
    def ai_gen(prompt: pd.Series) -> pd.Series:
        return pd.Series(b().ai_gen(col(prompt)), dtype=object)

    @pandas_udf("string")
    def ai_mask(content: pd.Series, labels: pd.Series) -> pd.Series:
        return pd.Series(b().ai_mask(col(content), labels_json(labels)), dtype=object)

    @pandas_udf("string")
    def ai_analyze_sentiment(content: pd.Series) -> pd.Series:
        return pd.Series(b().ai_analyze_sentiment(col(content)), dtype=object)

    @pandas_udf("float")
    def ai_similarity(a: pd.Series, c: pd.Series) -> pd.Series:
        return pd.Series(b().ai_similarity(col(a), col(c)), dtype=object).astype("float32")

    @pandas_udf("boolean")
    def ai_filter(predicate: pd.Series, content: pd.Series) -> pd.Series:
        return pd.Series(b().ai_filter(col(predicate), col(content)), dtype=object)

    @pandas_udf("array<float>")
    def ai_embed(content: pd.Series, endpoint: pd.Series = None) -> pd.Series:
        return pd.Series(b().ai_embed(col(content), optional(endpoint, len(content))), dtype=object)

    @pandas_udf("string")
    def ai_agg(texts: pd.Series, instruction: pd.Series) -> pd.Series:
        # `ai_agg(collect_list(col), 'instruction')`: one list of texts per row, answered by map-reduce.
        answers = [
            None if row is None else b().ai_agg([None if t is None else str(t) for t in list(row)], str(ins))
            for row, ins in zip(texts.tolist(), instruction.tolist(), strict=True)
        ]
        return pd.Series(answers, dtype=object)

    udfs = {
        "ai_agg": ai_agg,
        "ai_query": ai_query,
        "ai_query_safe": ai_query_safe,
        "ai_classify": ai_classify,
        "ai_extract": ai_extract,
        "ai_summarize": ai_summarize,
        "ai_translate": ai_translate,
        "ai_fix_grammar": ai_fix_grammar,
        "ai_gen": ai_gen,
        "ai_mask": ai_mask,
        "ai_analyze_sentiment": ai_analyze_sentiment,
        "ai_similarity": ai_similarity,
        "ai_filter": ai_filter,
        "ai_embed": ai_embed,
    }
    for name, fn in udfs.items():
        spark.udf.register(name, fn)
    return sorted(udfs)
