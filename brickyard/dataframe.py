"""AI functions on pandas and Polars data frames: `df.ai.classify("review", ["fresh", "rotten"])`.

A thin surface over the same functions SQL uses (`brickyard.functions`): no second implementation. Importing
this module registers the `ai` accessor on pandas and Polars data frames (whichever is installed), the way
data frame extensions do; nothing else happens at import.

    import brickyard.dataframe  # noqa: F401  (registers `df.ai`)
    df["label"] = df.ai.classify("review", ["fresh", "rotten"])
    liked = df.ai.filter("The reviewer liked the film: {review}")
    people = df.ai.extract("sentence", ["person", "organization"])

Every method takes `endpoint=` (default: `[functions]` or `[defaults]` of the workspace), `workspace=` (a
`Workspace`, a folder, or `$BRICKYARD_HOME` / `./.brickyard`), `progress=` (a bar in terminals and notebooks)
and `errors=` (`"raise"`: the first failing row raises; `"null"`: a failing row is None, never dropped).
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from brickyard._errors import AIFunctionError, InvalidRequestError
from brickyard.functions import Outcome, classify, embed, extract, filter_, query
from brickyard.models.base import Model
from brickyard.workspace import Workspace

Errors = Literal["raise", "null"]
WorkspaceArg = Workspace | str | Path | None


class AIFrame:
    """The `ai` namespace of one data frame (pandas or Polars); results come back in row order."""

    def __init__(self, frame: Any) -> None:
        self._frame = frame

    # -- columns in, columns out ---------------------------------------------------------------------
    def classify(
        self,
        column: str,
        labels: Sequence[str] | Mapping[str, str],
        *,
        instructions: str | None = None,
        examples: Sequence[tuple[str, str]] | None = None,
        endpoint: str | None = None,
        workspace: WorkspaceArg = None,
        progress: bool | None = None,
        errors: Errors = "raise",
    ) -> Any:
        """One label per row (`ai_classify`); `examples` (text, label) pairs train a classifier on embeddings."""
        texts = self._column(column)
        return self._series(
            "ai_classify",
            endpoint,
            workspace,
            lambda model, embedder: classify(
                texts,
                labels,
                model,
                instructions=instructions,
                progress=progress,
                embedder=embedder,
                examples=examples,
            ),
            errors,
            f"{column}_label",
        )

    def filter(
        self,
        predicate: str,
        *,
        endpoint: str | None = None,
        workspace: WorkspaceArg = None,
        progress: bool | None = None,
        errors: Errors = "raise",
    ) -> Any:
        """The rows for which the predicate holds (`ai_filter`); `{column}` in the predicate names a column."""
        columns = [name for _, name, _, _ in string.Formatter().parse(predicate) if name]
        if not columns:
            raise InvalidRequestError(
                "the predicate names no column. Fix: write it as a template, e.g. 'the reviewer liked it: {review}'"
            )
        texts = _render(predicate, self._rows(columns))
        keep = self._values(
            "ai_filter",
            endpoint,
            workspace,
            lambda model, _embedder: filter_("the statement is true", texts, model, progress=progress),
            errors,
        )
        mask = [bool(k) for k in keep]
        if _is_polars(self._frame):
            import polars as pl

            return self._frame.filter(pl.Series(mask))
        return self._frame[mask]

    def extract(
        self,
        column: str,
        fields: Sequence[str] | Mapping[str, Any],
        *,
        instructions: str | None = None,
        endpoint: str | None = None,
        workspace: WorkspaceArg = None,
        progress: bool | None = None,
        errors: Errors = "raise",
    ) -> Any:
        """A data frame with one column per field (`ai_extract`), in row order."""
        texts = self._column(column)
        values = self._values(
            "ai_extract",
            endpoint,
            workspace,
            lambda model, _embedder: extract(texts, fields, model, instructions=instructions, progress=progress),
            errors,
        )
        names = list(fields) if not isinstance(fields, Mapping) else list(fields.keys())
        records = [{name: (v or {}).get(name) for name in names} for v in values]
        return _frame_like(self._frame, records, names)

    def query(
        self,
        prompt: str,
        *,
        endpoint: str | None = None,
        workspace: WorkspaceArg = None,
        progress: bool | None = None,
        errors: Errors = "raise",
    ) -> Any:
        """The answer to a prompt template per row (`ai_query`); `{column}` names a column."""
        columns = [name for _, name, _, _ in string.Formatter().parse(prompt) if name]
        prompts = _render(prompt, self._rows(columns)) if columns else [prompt] * self._len()
        return self._series(
            "ai_query",
            endpoint,
            workspace,
            lambda model, _embedder: query(prompts, model, progress=progress),
            errors,
            "answer",
        )

    def embed(
        self, column: str, *, endpoint: str | None = None, workspace: WorkspaceArg = None, errors: Errors = "raise"
    ) -> Any:
        """One vector per row (`ai_embed`)."""
        texts = self._column(column)
        return self._series(
            "ai_embed", endpoint, workspace, lambda model, _embedder: embed(texts, model), errors, "embedding"
        )

    # -- plumbing ------------------------------------------------------------------------------------
    def _len(self) -> int:
        return int(self._frame.shape[0])

    def _column(self, column: str) -> list[Any]:
        if column not in self._frame.columns:
            raise InvalidRequestError(f"no column `{column}` (columns: {', '.join(map(str, self._frame.columns))})")
        values = self._frame[column]
        return list(values.to_list() if hasattr(values, "to_list") else values)

    def _rows(self, columns: list[str]) -> list[dict[str, Any]]:
        data = {c: self._column(c) for c in dict.fromkeys(columns)}
        return [{c: data[c][i] for c in data} for i in range(self._len())]

    def _values(
        self,
        function: str,
        endpoint: str | None,
        workspace: WorkspaceArg,
        run: Callable[[Model, Model], Awaitable[Outcome[Any]]],
        errors: Errors,
    ) -> list[Any]:
        outcome = _run(function, endpoint, workspace, run)
        failed = outcome.first_error()
        if failed is not None and errors == "raise":
            index, message = failed
            raise AIFunctionError(f"{message} (row {index + 1}). Fix: correct the input, or pass errors='null'")
        return list(outcome.values)

    def _series(
        self,
        function: str,
        endpoint: str | None,
        workspace: WorkspaceArg,
        run: Callable[[Model, Model], Awaitable[Outcome[Any]]],
        errors: Errors,
        name: str,
    ) -> Any:
        values = self._values(function, endpoint, workspace, run, errors)
        if _is_polars(self._frame):
            import polars as pl

            return pl.Series(name, values, strict=False)
        import pandas as pd

        return pd.Series(values, index=self._frame.index, name=name, dtype=object)


def _run(
    function: str, endpoint: str | None, workspace: WorkspaceArg, run: Callable[[Model, Model], Awaitable[Outcome[Any]]]
) -> Outcome[Any]:
    """Resolve the endpoint in the workspace and run the function on its own event loop (notebooks have one)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    settings = ws.settings
    embedding = function == "ai_embed"
    name = (
        endpoint
        or settings.functions.get(function)
        or (settings.defaults.embedding if embedding else settings.defaults.chat)
    )

    async def go() -> Outcome[Any]:
        try:
            embedder = ws.registry.resolve(settings.defaults.embedding).model
            return await run(ws.registry.resolve(name).model, embedder)
        finally:
            if not isinstance(workspace, Workspace):
                await ws.aclose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(go())
    from brickyard.sql._loop_thread import LoopThread  # inside a running loop (Jupyter): a thread's loop

    loop = LoopThread()
    try:
        return loop.run(go())
    finally:
        loop.close()


def _render(template: str, rows: list[dict[str, Any]]) -> list[str | None]:
    """The template per row; a row with a NULL in a named column gives None (NULL in, NULL out: no call)."""
    return [None if any(_is_null(v) for v in row.values()) else template.format_map(row) for row in rows]


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _is_polars(frame: Any) -> bool:
    return type(frame).__module__.startswith("polars")


def _frame_like(frame: Any, records: list[dict[str, Any]], names: list[str]) -> Any:
    if _is_polars(frame):
        import polars as pl

        return pl.DataFrame(records, schema=names, strict=False) if records else pl.DataFrame(schema=names)
    import pandas as pd

    return pd.DataFrame(records, columns=names, index=frame.index)


def register() -> None:
    """Register `ai` on pandas and Polars data frames (done when this module is imported)."""
    try:
        import pandas as pd

        if "ai" not in getattr(pd.DataFrame, "_accessors", set()):
            pd.api.extensions.register_dataframe_accessor("ai")(AIFrame)
    except ImportError:
        pass
    try:
        import polars as pl

        if not hasattr(pl.DataFrame, "ai"):
            pl.api.register_dataframe_namespace("ai")(AIFrame)
    except ImportError:
        pass


register()
