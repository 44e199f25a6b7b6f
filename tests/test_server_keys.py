"""API keys (hash-only storage, scopes, CLI); key budgets and rates are attacked in test_budget_integrity.py."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brickyard import UserError, Workspace
from brickyard.cli import app
from brickyard.config import Window
from brickyard.models.budget import window_end
from brickyard.server.keys import KEYS_NAME, ApiKey, KeyStore, hash_secret, parse_budget, parse_scopes


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / KEYS_NAME)


def test_only_a_hash_is_stored_and_the_secret_finds_the_key(store: KeyStore) -> None:
    key, secret = store.create("team-a", ("gpt-5", "agent:kb"), rpm=60, tpm=100_000, budget=(50.0, Window.month))
    assert secret.startswith("bky-") and len(secret) > 40
    assert store.by_hash(hash_secret(secret)) == key
    assert key.hint == f"{secret[:8]}…{secret[-4:]}" and key.describe_limits() == "rpm 60, tpm 100,000, $50/month"
    store.close()
    raw = b"".join(p.read_bytes() for p in store.path.parent.glob(KEYS_NAME + "*"))
    assert secret.encode() not in raw and secret[8:-4].encode() not in raw
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT hash FROM keys").fetchone() == (hash_secret(secret),)


def test_names_are_checked_and_never_reused(store: KeyStore) -> None:
    with pytest.raises(UserError, match="letters, digits"):
        store.create("team a", ("*",))
    with pytest.raises(UserError, match="--rpm must be a positive"):
        store.create("x", ("*",), rpm=0)
    store.create("team-a", ("*",))
    store.revoke("team-a")
    with pytest.raises(UserError, match=r"exists \(revoked\).*team-a-2"):
        store.create("team-a", ("*",))
    with pytest.raises(UserError, match=r"no key named nobody .*team-a"):
        store.revoke("nobody")
    assert [(k.name, k.active) for k in store.listing()] == [("team-a", False)] and store.count() == 1


def test_budget_and_scope_parsing() -> None:
    assert parse_budget("50/month") == (50.0, Window.month)
    assert parse_budget("2.5 / day") == (2.5, Window.day)
    assert parse_budget("7") == (7.0, Window.month)
    for bad in ("-1/day", "50/week", "lots"):
        with pytest.raises(UserError, match=r"e\.g\. 50/month"):
            parse_budget(bad)
    assert parse_scopes(" gpt-5, agent:kb ,gpt-5") == ("gpt-5", "agent:kb")
    with pytest.raises(UserError, match="at least one endpoint"):
        parse_scopes(" , ")


def test_scope_semantics() -> None:
    star = ApiKey("a", "h", ("*",))
    assert star.allows("gpt-5") and not star.allows("agent:kb")  # agents are named, or `agent:*`
    agents = ApiKey("b", "h", ("agent:*", "fast"))
    assert agents.allows("agent:kb") and agents.allows("fast") and not agents.allows("gpt-5")
    assert agents.allows("quick", canonical="fast")  # an alias whose target is in scope
    assert ApiKey("c", "h", ("x",), admin=True).allows("agent:anything")


def test_window_end() -> None:
    december = datetime(2025, 12, 31, 23, 0, tzinfo=UTC).timestamp()
    assert window_end(Window.month, december) == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert window_end(Window.day, december) == datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_keys_cli_create_list_revoke(server_workspace: Workspace) -> None:
    runner = CliRunner()
    where = ["--workspace", str(server_workspace.path)]
    made = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--name",
            "team-a",
            "--endpoints",
            "det,fast",
            "--rpm",
            "60",
            "--budget-usd",
            "5/day",
            *where,
        ],
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("bky-") and len(secret.split()) == 1  # alone on stdout, for scripts
    assert "shown once" in made.stderr
    listed = runner.invoke(app, ["keys", "list", *where])
    assert "team-a" in listed.stdout and secret not in listed.stdout and "active" in listed.stdout
    assert "rpm 60" in listed.stdout and "$5/day" in listed.stdout
    assert runner.invoke(app, ["keys", "revoke", "team-a", *where]).exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list", *where]).stdout
    unknown = runner.invoke(app, ["keys", "create", "--name", "b", "--endpoints", "gtp-5", *where])
    assert isinstance(unknown.exception, UserError) and "not an endpoint or alias" in str(unknown.exception)
    no_agent = runner.invoke(app, ["keys", "create", "--name", "c", "--endpoints", "agent:kb", *where])
    assert isinstance(no_agent.exception, UserError) and "no agent `kb`" in str(no_agent.exception)
