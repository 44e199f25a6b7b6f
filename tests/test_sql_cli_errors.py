"""`brickyard sql` fails the way a user can act on: one line, no traceback; an estimate fails as the run would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from brickyard import Workspace

BRICKYARD = str(Path(sys.executable).parent / "brickyard")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run([BRICKYARD, *args], capture_output=True, text=True, timeout=120, env=env)


def test_a_missing_sql_file_is_one_clear_line(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    done = run("sql", "-f", str(tmp_path / "missing.sql"), "--workspace", str(ws.path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "missing.sql" in done.stderr and "Fix:" in done.stderr


def test_an_estimate_fails_like_the_run_when_the_key_is_unset(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    with ws.config_path.open("a", encoding="utf-8") as toml:
        toml.write('\n[endpoints.remote]\nmodel = "openai:gpt-5-mini"\nprice_input_per_1m = 0.25\n')
    estimate = run("sql", "--estimate", "SELECT ai_query('remote', 'hello')", "--workspace", str(ws.path))
    real = run("sql", "SELECT ai_query('remote', 'hello')", "--workspace", str(ws.path))
    assert estimate.returncode == real.returncode == 1
    assert "OPENAI_API_KEY" in estimate.stderr and "OPENAI_API_KEY" in real.stderr
    assert "0 model calls" not in estimate.stdout and "Traceback" not in estimate.stderr
