"""The same AI functions on Apache Spark, as pandas (Arrow) UDFs.

`register(spark, target)` registers every declared function (`brickyard.sql.declarations`, as DuckDB
does) on a `SparkSession`, plus `ai_query_safe` for the `failOnError => false` form. `target` is either a
workspace folder (each executor runs the models itself, reading the same `brickyard.toml`), or the
URL of a brickyard gateway / any OpenAI-compatible server (`http://host:port/v1`): executors then
send every call there, so rate limits and budgets are enforced in one place for the whole cluster.
"""

import inspect
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
from brickyard.sql.declarations import FUNCTIONS, JSON, TEXT, AIFunction, Param
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


SPARK_TYPES = {
    "VARCHAR": "string",
    "FLOAT": "float",
    "BOOLEAN": "boolean",
    "FLOAT[]": "array<float>",
    "VARCHAR[]": "array<string>",
}
"""Spark's name for each declared result type."""


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

    def argument(param: Param, series: Any, n: int) -> list[Any]:
        """One UDF argument as the binding takes it, converted as the DuckDB macro converts it."""
        if series is None:
            return [None] * n
        if param.udf_type == "VARCHAR[]":
            return [None if v is None else [None if t is None else str(t) for t in list(v)] for v in series.tolist()]
        if param.encode == JSON:
            return labels_json(series) if not isinstance(series, pd.DataFrame) else as_json(series, n)
        if param.encode == TEXT and isinstance(series, pd.DataFrame):  # a struct as content: its JSON text
            return as_json(series, n)
        return col(series)

    def declared(function: AIFunction) -> Any:
        """The pandas UDF of a declared function: every SQL argument positional, optional ones may be left out."""

        def call(*series: Any, **named: Any) -> Any:  # Spark 4 passes `name => value` by keyword
            given = {**dict(zip([p.name for p in function.params], series, strict=False)), **named}
            n = len(next(iter(given.values())))
            columns = [argument(p, given.get(p.name), n) for p in function.udf_params]
            values = getattr(b(), function.method)(*columns)
            out = pd.Series(values, dtype=object)
            return out.astype("float32") if function.returns == "FLOAT" else out

        call.__name__ = function.name
        call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    p.name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=inspect.Parameter.empty if p.default is None else None,
                    annotation=pd.Series,
                )
                for p in function.params
            ],
            return_annotation=pd.Series,
        )
        call.__annotations__ = {**{p.name: pd.Series for p in function.params}, "return": pd.Series}
        return pandas_udf(SPARK_TYPES[function.returns])(call)

    udfs = {f.name: declared(f) for f in FUNCTIONS}
    udfs["ai_query_safe"] = ai_query_safe
    for name, fn in udfs.items():
        spark.udf.register(name, fn)
    return sorted(udfs)
