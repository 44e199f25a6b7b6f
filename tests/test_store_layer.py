"""Storage as a layer: the workspace owns every file and connection; no feature opens a SQLite file of its own."""

from __future__ import annotations

import ast
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DETERMINISTIC_CONFIG, write_config

import brickyard
from brickyard import Workspace
from brickyard.agents import AgentModel, Agents
from brickyard.agents.runner import NAMESPACE
from brickyard.agents.spec import parse_spec
from brickyard.evals import Case, EvalDatasets
from brickyard.store import AgentStore, EvalStore

PACKAGE = Path(brickyard.__file__).parent
STORE = PACKAGE / "store"


def sqlite_connects(source: str) -> list[int]:
    """Lines calling `sqlite3.connect` (however sqlite3 or connect was imported or renamed)."""
    tree = ast.parse(source)
    modules, functions = {"sqlite3"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.asname or alias.name for alias in node.names if alias.name == "sqlite3"}
        elif isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
            functions |= {alias.asname or alias.name for alias in node.names if alias.name == "connect"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        via_module = (
            isinstance(func, ast.Attribute)
            and func.attr == "connect"
            and isinstance(func.value, ast.Name)
            and func.value.id in modules
        )
        if via_module or (isinstance(func, ast.Name) and func.id in functions):
            lines.append(node.lineno)
    return lines


def test_the_scan_finds_connect_calls() -> None:
    assert sqlite_connects("import sqlite3\nsqlite3.connect('x')") == [2]
    assert sqlite_connects("import sqlite3 as lite\nlite.connect('x')") == [2]
    assert sqlite_connects("from sqlite3 import connect as c\nc('x')") == [2]
    assert sqlite_connects("import duckdb\nduckdb.connect('x')") == []
    assert sqlite_connects((STORE / "_sqlite.py").read_text(encoding="utf-8"))  # the store's own helper


def test_no_module_outside_the_store_opens_a_sqlite_file() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if STORE not in path.parents
        for line in sqlite_connects(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "open SQLite files through brickyard.store (the workspace's stores), not sqlite3.connect"


def test_store_modules_import_on_their_own() -> None:
    """No import cycle, whichever module a program imports first."""
    for statement in (
        "import brickyard.store.agents",
        "import brickyard.store.evals",
        "from brickyard.store import AgentStore, EvalStore",
        "import brickyard.agents.store",
        "import brickyard.evals.datasets",
        "from brickyard.workspace import Workspace; Workspace('.').__class__",
    ):
        subprocess.run([sys.executable, "-c", statement], check=True, cwd=PACKAGE.parent)


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    return write_config(workspace, DETERMINISTIC_CONFIG)


async def test_features_share_the_workspace_stores_and_aclose_closes_them(ws: Workspace) -> None:
    assert ws.agents_path == ws.path / "agents.sqlite" and ws.evals_path == ws.path / "evals.sqlite"
    assert ws.warehouse_path == ws.path / "warehouse.duckdb" and ws.ledger_path == ws.path / "ledger.sqlite"

    first, second = Agents(ws), Agents(ws)
    agent_store = ws.agent_store
    assert isinstance(agent_store, AgentStore)
    assert first.store is agent_store and second.store is agent_store
    first.create(parse_spec({"name": "sentiment", "kind": "classify", "labels": ["pos", "neg"]}))
    first.close()  # an `Agents` does not own the store: the others keep using it
    assert second.store.names() == ["sentiment"]
    model = NAMESPACE.create("sentiment", ws)  # `agent:NAME` in the registry: its own `Agents`, the same store
    assert isinstance(model, AgentModel) and model._agents.store is agent_store
    await model.aclose()  # closes the `Agents` it owns, not the workspace's store
    assert NAMESPACE.names(ws) == ["sentiment"]

    eval_store = ws.eval_store
    assert isinstance(eval_store, EvalStore)
    one, two = EvalDatasets(ws), EvalDatasets(ws)
    assert one.store is eval_store and two.store is eval_store
    one.create("reviews", [Case(id=str(i), input=f"text {i}", expected="pos") for i in range(4)], source="test")
    one.close()  # the workspace's store stays open
    assert two.get("reviews").version == 1

    await ws.aclose()
    for closed in (lambda: agent_store.names(), lambda: eval_store.names()):
        with pytest.raises(sqlite3.ProgrammingError):  # closed once, by the workspace
            closed()
    # used again, the workspace reopens its stores (new objects, same files)
    assert ws.agent_store is not agent_store and Agents(ws).store is ws.agent_store
    assert second.store is ws.agent_store and second.store.names() == ["sentiment"]
    assert ws.eval_store is not eval_store and EvalDatasets(ws).names() == ["reviews"]
    await ws.aclose()


def test_eval_datasets_from_a_folder_owns_its_store(ws: Workspace) -> None:
    """Older callers pass the workspace folder: that `EvalDatasets` opens the same file and closes its store."""
    cases = [Case(id=str(i), input=f"text {i}", expected=i) for i in range(10)]
    made = EvalDatasets(ws).create("numbers", cases, source="test", dev_fraction=0.3, seed=3)
    legacy = EvalDatasets(ws.path)
    assert legacy.store is not ws.eval_store
    again = legacy.get("numbers")
    assert (again.dev, again.test, again.created) == (made.dev, made.test, made.created)
    legacy.save_run("r1", "agent", "numbers", 1, {"chosen": "x"})
    legacy.close()
    with pytest.raises(sqlite3.ProgrammingError):
        legacy.store.names()
    assert EvalDatasets(ws).runs("agent") == [{"chosen": "x"}]
