"""The engine-neutral side of AI functions in SQL: argument parsing, endpoint choice, cost caps, dry runs.

DuckDB and Spark adapters hand columns (as Python lists) to a `FunctionBinding` method and get a
list back. Rows that share their non-content arguments (labels, options, endpoint) are run together
through the batch engine. In strict mode a failing row fails the query with a message naming the
function, the row and the cause; `ai_query(..., failOnError => false)` returns the error per row.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from brickyard._errors import AIFunctionError, BrickyardError, InvalidRequestError
from brickyard.batch import BatchEstimate, estimate_batch
from brickyard.batch_api import batch_price, provider_for
from brickyard.batch_api.model import BatchJobModel
from brickyard.batch_api.sql import batch_query, wants_batch, without_batch
from brickyard.functions import (
    Outcome,
    aggregate,
    analyze_sentiment,
    classify,
    embed,
    extract,
    filter_,
    fix_grammar,
    gen,
    mask,
    match,
    query,
    similarity,
    summarize,
    translate,
)
from brickyard.functions._rows import is_null
from brickyard.functions.classify import Classification
from brickyard.functions.filter_cascade import CascadeReport, filter_with_recall
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, Usage
from brickyard.models.base import Model
from brickyard.models.budget import CostCap
from brickyard.models.metering import Price
from brickyard.sql._loop_thread import LoopThread
from brickyard.sql.declarations import BY_NAME
from brickyard.sql.memo import MemoizedEmbeddings, QueryMemo
from brickyard.workspace import Workspace

EMBEDDING_FUNCTIONS = {"ai_embed", "ai_similarity", "vector_search"}


QueryCap = CostCap
"""A USD cap for one query, shared by every endpoint it calls."""


class RecordingModel(Model):
    """Dry run: records the requests a query would send and answers nothing."""

    supports_embeddings = True

    def __init__(self, like: Model, sink: list[ChatRequest]) -> None:
        self.name = like.name
        self.supports_grammar = like.supports_grammar
        self.supports_json_schema = like.supports_json_schema
        self.context_window = like.context_window
        self.demonstrations = like.demonstrations
        self.max_concurrency = 64
        self._sink = sink

    async def _complete(self, request: ChatRequest) -> ChatResult:
        self._sink.append(request)
        raise _DryRun

    async def _embed(self, texts: list[str]) -> EmbeddingResult:
        self._sink.extend(ChatRequest.from_prompt(t, max_tokens=1) for t in texts)
        return EmbeddingResult(vectors=[[0.0] for _ in texts], model=self.name, usage=Usage())


class _DryRun(BrickyardError):
    """Raised by `RecordingModel` in place of an answer."""


@dataclass(frozen=True)
class QueryEstimate:
    """What a query would send, per endpoint, before anything runs."""

    per_endpoint: dict[str, BatchEstimate]

    @property
    def calls(self) -> int:
        return sum(e.calls for e in self.per_endpoint.values())

    @property
    def cost_usd(self) -> float:
        return sum(e.cost_usd for e in self.per_endpoint.values())

    @property
    def input_tokens(self) -> int:
        return sum(e.input_tokens for e in self.per_endpoint.values())

    @property
    def output_tokens(self) -> int:
        return sum(e.output_tokens for e in self.per_endpoint.values())


class FunctionBinding:
    """AI functions over columns for one workspace; owned by one SQL connection or Spark worker."""

    def __init__(
        self,
        workspace: Workspace,
        *,
        progress: bool | None = False,
        max_cost_usd: float | None = None,
        dry_run: bool = False,
    ) -> None:
        self.workspace = workspace
        self.progress = progress
        self.dry_run = dry_run
        self.cap = (
            QueryCap(max_cost_usd, kind="query", fix="raise --max-cost, or run `brickyard sql --estimate` first")
            if max_cost_usd is not None
            else None
        )
        self.recorded: dict[str, list[ChatRequest]] = defaultdict(list)
        self.read_examples: Callable[[str], list[tuple[str, str]]] | None = None
        """Reads a table's (text, label) rows for `ai_classify(..., options => {'examples': 'table'})`; set by
        the warehouse that owns this binding (none on Spark workers)."""
        self.cascades: list[CascadeReport] = []
        """What each `ai_filter(..., options => {'target_recall': ...})` batch did (calls avoided, recall)."""
        self.memo = QueryMemo()
        """This statement's answers: the same call on the same row is computed once (cleared per statement)."""
        self._models: dict[str, Model] = {}
        self._loop = LoopThread()
        self.batch = False
        """Send the rows of every AI function through provider batch jobs (`brickyard sql --batch`); set before
        the first query."""

    def begin_statement(self) -> None:
        """Forget the previous statement's answers (the response cache, if on, still serves them)."""
        self.memo.clear()

    # -- models ---------------------------------------------------------------------------------
    def endpoint_for(self, function: str, endpoint: str | None = None) -> str:
        """The endpoint named in the call, else `[functions]` in brickyard.toml, else the default."""
        if endpoint:
            return endpoint
        settings = self.workspace.settings
        if function in settings.functions:
            return settings.functions[function]
        return settings.defaults.embedding if function in EMBEDDING_FUNCTIONS else settings.defaults.chat

    def model(self, function: str, endpoint: str | None = None) -> Model:
        name = self.endpoint_for(function, endpoint)
        if name not in self._models:
            model = self.workspace.registry.resolve(name).model
            if self.dry_run:
                model = RecordingModel(model, self.recorded[name])
            elif self.cap is not None:
                model = self.cap.bind(model, self.workspace.store)
            if model.supports_embeddings:
                model = MemoizedEmbeddings(model, self.memo)
            if self.batch and not self.dry_run:  # `brickyard sql --batch`: row lists become provider batch jobs
                model = BatchJobModel(model, self.workspace, name, cap=self.cap)
            self._models[name] = model
        return self._models[name]

    def estimate(self) -> QueryEstimate:
        """After a dry run: the calls, tokens and USD the query would cost (cache hits excluded).

        With `batch` set (`brickyard sql --batch --estimate`), chat endpoints are priced at their batch price,
        and one whose provider has no batch API fails the estimate as it would fail the query.
        """
        registry = self.workspace.registry
        return QueryEstimate(
            {
                name: estimate_batch(
                    requests, price=self._price(name), endpoint=registry.canonical(name), store=self.workspace.store
                )
                for name, requests in self.recorded.items()
            }
        )

    def _price(self, name: str) -> Price:
        registry = self.workspace.registry
        if not self.batch or not registry.resolve(name).model.supports_chat:
            return registry.price(name)
        provider_for(registry, name)  # the query's own refusal: no batch API, or no key
        return batch_price(registry, name)[0]

    def close(self) -> None:
        self._loop.run(self.workspace.aclose())
        self._loop.close()

    # -- plumbing -------------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, Outcome[Any]]) -> Outcome[Any]:
        return self._loop.run(coro)

    def _finish(self, outcome: Outcome[Any], *, placeholder: Any = None) -> list[Any]:
        """The values, or the first row's error raised (a strict query); a dry run gives placeholders."""
        if self.dry_run:
            return [placeholder] * len(outcome.values)
        failed = outcome.first_error()
        if failed is not None:
            index, message = failed
            fix = "" if "Fix:" in message else " Fix: correct the input, or use ai_query(..., failOnError => false)"
            raise AIFunctionError(f"{message} (row {index + 1} of this batch).{fix}")
        return outcome.values

    def _grouped(
        self,
        function: str,
        keys: Sequence[Any],
        run: Callable[[Any, list[int]], Outcome[Any]],
        contents: Sequence[Any] | None = None,
    ) -> Outcome[Any]:
        """Run `run(key, indices)` once per distinct key and scatter the results back in order.

        An error about a group's arguments goes to each of its rows, except rows whose content is
        NULL: NULL in, NULL out.
        """
        groups: dict[str, tuple[Any, list[int]]] = {}
        for index, key in enumerate(keys):
            marker = json.dumps(key, sort_keys=True, default=str)
            groups.setdefault(marker, (key, []))[1].append(index)
        values: list[Any] = [None] * len(keys)
        errors: list[str | None] = [None] * len(keys)
        reports = []
        for key, indices in groups.values():
            try:
                outcome = run(key, indices)
            except _DryRun:
                continue
            except BrickyardError as exc:  # a bad argument for this group: every row of it carries it
                if self.dry_run:  # an estimate fails as the query would (a missing key, an unknown endpoint)
                    message = f"{function}: {exc}" if not str(exc).startswith(function) else str(exc)
                    raise AIFunctionError(message) from None
                for i in indices:
                    if contents is None or not is_null(contents[i]):
                        errors[i] = f"{function}: {exc}" if not str(exc).startswith(function) else str(exc)
                continue
            reports.extend(outcome.reports)
            for i, value, error in zip(indices, outcome.values, outcome.errors, strict=True):
                values[i], errors[i] = value, error
        return Outcome(values, errors, reports)

    # -- functions ------------------------------------------------------------------------------
    def ai_query(
        self,
        endpoints: Sequence[str | None],
        requests: Sequence[str | None],
        model_parameters: Sequence[str | None],
        response_formats: Sequence[str | None],
        *,
        fail_on_error: bool = True,
    ) -> tuple[list[str | None], list[str | None]]:
        """Answers (and per-row errors when not failing on error)."""
        keys = list(zip(endpoints, model_parameters, response_formats, strict=True))

        def run(key: Any, idx: list[int]) -> Outcome[Any]:
            endpoint, params, fmt = key
            if is_null(endpoint) or not str(endpoint).strip():
                raise InvalidRequestError("the endpoint is NULL or empty. Fix: name an endpoint from brickyard.toml")
            if not self.dry_run and (self.batch or wants_batch(params)):  # a provider batch job (batch_api)
                rows = [requests[i] for i in idx]
                return self._run(batch_query(self.workspace, endpoint, rows, params, fmt, cap=self.cap))
            params = without_batch(params)
            return self._run(
                query(
                    [requests[i] for i in idx],
                    self.model("ai_query", endpoint),
                    model_parameters=params,
                    response_format=fmt,
                    tag="sql",
                    progress=self.progress,
                )
            )

        outcome = self._grouped("ai_query", keys, run, requests)
        if fail_on_error:
            return self._finish(outcome), [None] * len(keys)
        if self.dry_run:
            return [None] * len(keys), [None] * len(keys)
        return outcome.values, outcome.errors

    def ai_classify(
        self,
        contents: Sequence[str | None],
        labels: Sequence[str | None],
        options: Sequence[str | None],
        endpoints: Sequence[str | None] | None = None,
    ) -> list[str | None]:
        def run(key: Any, idx: list[int]) -> Outcome[Any]:
            label_json, opts, endpoint = key
            parsed = _options(opts, set(BY_NAME["ai_classify"].options))
            multilabel = _flag(parsed, "multilabel")
            with_confidence = _flag(parsed, "confidence")
            if with_confidence and multilabel:
                raise InvalidRequestError("`confidence` applies to single-label classification. Fix: drop one")
            examples = self._examples(parsed["examples"]) if "examples" in parsed else None
            outcome = self._run(
                classify(
                    [contents[i] for i in idx],
                    _labels(label_json),
                    self.model("ai_classify", endpoint),
                    instructions=parsed.get("instructions"),
                    multilabel=multilabel,
                    tag="sql",
                    progress=self.progress,
                    embedder=self.model("ai_embed"),  # the default embedder, for small local models
                    examples=examples,
                )
            )
            if multilabel:
                outcome.values = [None if v is None else json.dumps(v) for v in outcome.values]
            elif with_confidence:
                assert isinstance(outcome, Classification)
                outcome.values = [
                    None if v is None else json.dumps({"label": v, "confidence": c, "mechanism": m})
                    for v, c, m in zip(outcome.values, outcome.confidences, outcome.mechanisms, strict=True)
                ]
            return outcome

        keys = list(zip(labels, options, _each(endpoints, len(contents)), strict=True))
        return self._finish(self._grouped("ai_classify", keys, run, contents))

    def _examples(self, relation: Any, *, calls: bool = False) -> list[tuple[str, str]]:
        """The labelled rows of `examples`: a table or view with a `label` column and a `content` or `text` column.
        `calls`: the function still calls the model per row with them (a dry run estimates those calls)."""
        if not isinstance(relation, str) or not _RELATION.fullmatch(relation.strip()):
            raise InvalidRequestError(
                f"examples must name a table or view, e.g. 'main.labelled_reviews'; got {relation!r}"
            )
        if self.read_examples is None:
            raise InvalidRequestError(
                "examples are read from the embedded warehouse; this engine cannot read a table inside a function. "
                "Fix: run the query with `brickyard sql`"
                + ("" if calls else ", or train a classifier endpoint (`brickyard eval classifier`)")
            )
        rows = self.read_examples(relation.strip())
        if not rows:
            raise InvalidRequestError(f"examples table {relation} has no labelled rows. Fix: fill it first")
        if self.dry_run and not calls:  # no model call to record: the classifier answers from embeddings
            raise _DryRun
        return rows

    def ai_extract(
        self,
        contents: Sequence[str | None],
        labels: Sequence[str | None],
        options: Sequence[str | None] | None = None,
        endpoints: Sequence[str | None] | None = None,
    ) -> list[str | None]:
        def run(key: Any, idx: list[int]) -> Outcome[Any]:
            label_json, opts, endpoint = key
            parsed = _options(opts, set(BY_NAME["ai_extract"].options))
            examples = self._examples(parsed["examples"], calls=True) if "examples" in parsed else None
            shots = _shots(parsed)
            model = self.model("ai_extract", endpoint)
            outcome = self._run(
                extract(
                    [contents[i] for i in idx],
                    _labels(label_json),
                    model,
                    instructions=parsed.get("instructions"),
                    tag="sql",
                    progress=self.progress,
                    examples=examples,
                    embedder=self.model("ai_embed") if examples else None,
                    shots=shots,
                )
            )
            outcome.values = [None if v is None else json.dumps(v, ensure_ascii=False) for v in outcome.values]
            return outcome

        keys = list(zip(labels, _each(options, len(contents)), _each(endpoints, len(contents)), strict=True))
        return self._finish(self._grouped("ai_extract", keys, run, contents))

    def _text_function(
        self,
        function: str,
        contents: Sequence[str | None],
        keys: Sequence[Any],
        call: Callable[[list[str | None], Any, Model], Coroutine[Any, Any, Outcome[Any]]],
        endpoints: Sequence[str | None] | None,
    ) -> list[Any]:
        def run(key: Any, idx: list[int]) -> Outcome[Any]:
            argument, endpoint = key
            return self._run(call([contents[i] for i in idx], argument, self.model(function, endpoint)))

        both = list(zip(keys, _each(endpoints, len(contents)), strict=True))
        return self._finish(self._grouped(function, both, run, contents))

    def ai_summarize(
        self,
        contents: Sequence[str | None],
        max_words: Sequence[int | None],
        endpoints: Sequence[str | None] | None = None,
    ) -> list[Any]:
        return self._text_function(
            "ai_summarize",
            contents,
            [50 if is_null(m) else int(m) for m in max_words],  # type: ignore[arg-type]
            lambda texts, words, model: summarize(texts, model, max_words=words, tag="sql", progress=self.progress),
            endpoints,
        )

    def ai_translate(
        self,
        contents: Sequence[str | None],
        to_langs: Sequence[str | None],
        endpoints: Sequence[str | None] | None = None,
    ) -> list[Any]:
        return self._text_function(
            "ai_translate",
            contents,
            to_langs,
            lambda texts, lang, model: translate(texts, lang, model, tag="sql", progress=self.progress),
            endpoints,
        )

    def ai_fix_grammar(
        self, contents: Sequence[str | None], endpoints: Sequence[str | None] | None = None
    ) -> list[Any]:
        return self._text_function(
            "ai_fix_grammar",
            contents,
            [None] * len(contents),
            lambda texts, _, model: fix_grammar(texts, model, tag="sql", progress=self.progress),
            endpoints,
        )

    def ai_gen(self, prompts: Sequence[str | None], endpoints: Sequence[str | None] | None = None) -> list[Any]:
        return self._text_function(
            "ai_gen",
            prompts,
            [None] * len(prompts),
            lambda texts, _, model: gen(texts, model, tag="sql", progress=self.progress),
            endpoints,
        )

    def ai_mask(
        self,
        contents: Sequence[str | None],
        labels: Sequence[str | None],
        endpoints: Sequence[str | None] | None = None,
    ) -> list[Any]:
        return self._text_function(
            "ai_mask",
            contents,
            labels,
            lambda texts, label_json, model: mask(
                texts, _string_list(label_json), model, tag="sql", progress=self.progress
            ),
            endpoints,
        )

    def ai_analyze_sentiment(
        self, contents: Sequence[str | None], endpoints: Sequence[str | None] | None = None
    ) -> list[Any]:
        return self._text_function(
            "ai_analyze_sentiment",
            contents,
            [None] * len(contents),
            lambda texts, _, model: analyze_sentiment(texts, model, tag="sql", progress=self.progress),
            endpoints,
        )

    def ai_filter(
        self,
        predicates: Sequence[str | None],
        contents: Sequence[str | None],
        options: Sequence[str | None] | None = None,
        endpoints: Sequence[str | None] | None = None,
    ) -> list[Any]:
        def run(key: Any, idx: list[int]) -> Outcome[Any]:
            predicate, opts, endpoint = key
            parsed = _options(opts, set(BY_NAME["ai_filter"].options))
            rows = [contents[i] for i in idx]
            model = self.model("ai_filter", endpoint)
            given = parsed.get("contrast")
            if "examples" in parsed:
                if "target_recall" in parsed or given is not None:
                    other = "target_recall" if "target_recall" in parsed else "contrast"
                    raise InvalidRequestError(f"`examples` and `{other}` are two mechanisms. Fix: drop one")
                examples = self._examples(parsed["examples"])
                return self._run(
                    filter_(predicate, rows, model, tag="sql", embedder=self.model("ai_embed"), examples=examples)
                )
            if "target_recall" in parsed and not self.dry_run:  # an estimate stays the upper bound
                outcome, report = self._loop.run(
                    filter_with_recall(
                        predicate,
                        rows,
                        model,
                        self.model("ai_embed"),
                        target_recall=_number(parsed, "target_recall"),
                        seed=int(_number(parsed, "seed", 0)),
                        tag="sql",
                        progress=self.progress,
                        contrast_with=None if given is None else str(given),
                    )
                )
                self.cascades.append(report)
                return outcome
            return self._run(
                filter_(
                    predicate,
                    rows,
                    model,
                    tag="sql",
                    progress=self.progress,
                    embedder=self.model("ai_embed"),
                    contrast=None if given is None else str(given),
                )
            )

        n = len(contents)
        keys = list(zip(predicates, options or [None] * n, _each(endpoints, n), strict=True))
        # A dry run lets every row through, so the estimate covers what comes after the filter.
        return self._finish(self._grouped("ai_filter", keys, run, contents), placeholder=True)

    def ai_match(
        self,
        contents: Sequence[str | None],
        predicates: Sequence[str | None],
        endpoints: Sequence[str | None] | None = None,
    ) -> list[Any]:
        """The predicates each content satisfies (a list per row)."""

        def run(key: Any, idx: list[int]) -> Outcome[Any]:
            predicate_json, endpoint = key
            return self._run(
                match(
                    [contents[i] for i in idx],
                    _string_list(predicate_json),
                    self.model("ai_filter", endpoint),
                    tag="sql",
                    progress=self.progress,
                    embedder=self.model("ai_embed"),
                )
            )

        keys = list(zip(predicates, _each(endpoints, len(contents)), strict=True))
        return self._finish(self._grouped("ai_match", keys, run, contents), placeholder=[])

    def ai_query_values(
        self,
        endpoints: Sequence[str | None],
        requests: Sequence[str | None],
        model_parameters: Sequence[str | None],
        response_formats: Sequence[str | None],
    ) -> list[str | None]:
        """`ai_query` in a strict query: the answers (a failing row fails the query)."""
        return self.ai_query(endpoints, requests, model_parameters, response_formats)[0]

    def ai_agg_rows(
        self,
        texts: Sequence[Sequence[str | None] | None],
        instructions: Sequence[str | None],
        endpoints: Sequence[str | None] | None = None,
    ) -> list[str | None]:
        """`ai_agg(list(col), instruction)`: one list of texts per row (an aggregate), each answered by map-reduce."""
        each = _each(endpoints, len(texts))
        return [
            None if row is None else self.ai_agg(list(row), str(instruction), endpoint)
            for row, instruction, endpoint in zip(texts, instructions, each, strict=True)
        ]

    def ai_agg(self, texts: Sequence[str | None], instruction: str, endpoint: str | None = None) -> str | None:
        model = self.model("ai_agg", endpoint)
        try:
            return self._loop.run(aggregate(texts, instruction, model, tag="sql", progress=self.progress))
        except _DryRun:
            return None

    def ai_embed(self, contents: Sequence[str | None], endpoints: Sequence[str | None]) -> list[Any]:
        def run(key: Any, idx: list[int]) -> Outcome[Any]:
            return self._run(embed([contents[i] for i in idx], self.model("ai_embed", key)))

        return self._finish(self._grouped("ai_embed", list(endpoints), run, contents))

    def ai_similarity(
        self,
        left: Sequence[str | None],
        right: Sequence[str | None],
        endpoints: Sequence[str | None] | None = None,
    ) -> list[Any]:
        def run(key: Any, idx: list[int]) -> Outcome[Any]:
            model = self.model("ai_similarity", key)
            return self._run(similarity([left[i] for i in idx], [right[i] for i in idx], model))

        return self._finish(self._grouped("ai_similarity", _each(endpoints, len(left)), run))


def _each(endpoints: Sequence[str | None] | None, n: int) -> list[str | None]:
    """The `endpoint =>` argument per row (None: the function's configured endpoint)."""
    if endpoints is None:
        return [None] * n
    return [None if is_null(e) or not str(e).strip() else str(e).strip() for e in endpoints]


def _options(raw: str | None, allowed: set[str]) -> dict[str, Any]:
    if is_null(raw) or raw in ("", "null"):
        return {}
    assert raw is not None
    try:
        value = json.loads(raw)
        if isinstance(value, str):
            value = json.loads(value)
    except json.JSONDecodeError:
        raise InvalidRequestError("options must be a struct or map, e.g. {'instructions': '...'}") from None
    if not isinstance(value, dict):
        raise InvalidRequestError("options must be a struct or map, e.g. {'multilabel': true}")
    unknown = set(value) - allowed
    if unknown:
        raise InvalidRequestError(f"unknown option(s) {sorted(unknown)}. Fix: use some of {sorted(allowed)}")
    return value


_RELATION = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}")


def _shots(options: dict[str, Any]) -> int | None:
    """`ai_extract`'s `shots`: a whole number of examples ≥ 1, and only with `examples`."""
    if "shots" not in options:
        return None
    if "examples" not in options:
        raise InvalidRequestError("`shots` counts the examples shown to each row. Fix: add {'examples': 'table'}")
    value = _number(options, "shots")
    if value < 1 or value != int(value):
        raise InvalidRequestError(
            f"`shots` must be a whole number of at least 1; got {options['shots']!r}. Fix: e.g. 4"
        )
    return int(value)


def _number(options: dict[str, Any], name: str, default: float | None = None) -> float:
    """A numeric option (a number, or its text)."""
    value = options.get(name, default)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRequestError(f"option `{name}` must be a number; got {value!r}") from None


def _flag(options: dict[str, Any], name: str) -> bool:
    """A boolean option given as true/false (or 1/0, or their text)."""
    value = options.get(name, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0", "", "none", "null"):
        return False
    raise InvalidRequestError(f"option `{name}` must be true or false; got {value!r}")


def _labels(raw: str | None) -> Any:
    if is_null(raw):
        raise InvalidRequestError("labels is NULL. Fix: pass an array of labels or a JSON object")
    assert raw is not None
    try:
        value = json.loads(raw)
        if isinstance(value, str):  # a JSON object given as a string literal
            value = json.loads(value)
    except json.JSONDecodeError:
        raise InvalidRequestError(
            "labels must be an array (ARRAY['a', 'b']) or a JSON object of label → description"
        ) from None
    if not isinstance(value, (list, dict)):
        raise InvalidRequestError("labels must be an array (ARRAY['a', 'b']) or a JSON object")
    return value


def _string_list(raw: str | None) -> list[str]:
    value = _labels(raw)
    if isinstance(value, dict):
        return [str(k) for k in value]
    return [str(v) for v in value]
