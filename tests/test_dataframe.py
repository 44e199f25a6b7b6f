"""`df.ai.*` on pandas and Polars: the same functions as SQL, results in row order, no row dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

import brickyard.dataframe  # noqa: F401 - registers `df.ai`
from brickyard import AIFunctionError, FunctionModel, Workspace
from brickyard.config import EndpointConfig
from brickyard.models._types import ChatRequest


def judge(request: ChatRequest) -> Any:
    """Answers by content: `fresh` for texts that say 'great', the extraction fields it can find."""
    text = str(request.messages[-1]["content"])
    if request.json_schema and "label" in str(request.json_schema):
        if "broken" in text:
            raise ValueError("cannot judge this one")
        liked = "great" in text
        if "true" in request.json_schema["properties"]["label"]["enum"]:  # ai_filter
            return {"label": "true" if liked else "false"}
        return {"label": "fresh" if liked else "rotten"}
    if request.json_schema:
        return {"person": "Ada" if "Ada" in text else None}
    return "fresh" if "great" in text else "rotten"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    ws.registry.register("judge", FunctionModel(judge), EndpointConfig(model="x:j", cache=False))
    return ws


@pytest.mark.parametrize("lib", ["pandas", "polars"])
def test_classify_filter_and_extract_on_frames(ws: Workspace, lib: str) -> None:
    data = {"review": ["a great film", "dull", None, "great fun"], "id": [1, 2, 3, 4]}
    df = pd.DataFrame(data) if lib == "pandas" else pl.DataFrame(data)
    labels = df.ai.classify("review", ["fresh", "rotten"], endpoint="judge", workspace=ws)
    assert list(labels) == ["fresh", "rotten", None, "fresh"]  # NULL in, NULL out; order kept
    kept = df.ai.filter("the reviewer liked it: {review}", endpoint="judge", workspace=ws)
    assert list(kept["id"]) == [1, 4] and set(kept.columns) == {"review", "id"}
    people = df.ai.extract("review", ["person"], endpoint="judge", workspace=ws)
    assert people.shape == (4, 1) and list(people.columns) == ["person"]


def test_a_failing_row_raises_or_is_null_never_dropped(ws: Workspace) -> None:
    df = pd.DataFrame({"review": ["great", "broken input", "bad"]})
    with pytest.raises(AIFunctionError, match="row 2"):
        df.ai.classify("review", ["fresh", "rotten"], endpoint="judge", workspace=ws)
    labels = df.ai.classify("review", ["fresh", "rotten"], endpoint="judge", workspace=ws, errors="null")
    assert list(labels) == ["fresh", None, "rotten"] and labels.index.equals(df.index)


def test_a_missing_column_or_template_is_a_clear_error(ws: Workspace) -> None:
    df = pd.DataFrame({"review": ["x"]})
    with pytest.raises(Exception, match="no column `text`"):
        df.ai.classify("text", ["a", "b"], endpoint="judge", workspace=ws)
    with pytest.raises(Exception, match="names no column"):
        df.ai.filter("is it good?", endpoint="judge", workspace=ws)
