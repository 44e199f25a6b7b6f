"""The command line, run as a user would: the installed `brickyard` entry point in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DETERMINISTIC_CONFIG

BIN = Path(sys.executable).parent / "brickyard"

CONFIG = """
[endpoints.echo]
model = "fake:echo"
price_input_per_1m = 1.0
price_output_per_1m = 2.0
options = { answers = ["hello from the fake"] }

[endpoints.paid]
model = "openai:gpt-5-mini"
api_key_env = "BRICKYARD_TEST_NO_SUCH_KEY"

[aliases]
quick = "echo"
"""


def run(
    *args: str, home: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env = {**base, "BRICKYARD_HOME": str(home), **(env or {})}
    proc = subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"brickyard {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "ws"
    run("init", home=home)
    (home / "brickyard.toml").write_text(CONFIG)
    return home


def test_init_writes_a_commented_config(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    proc = run("init", home=home)
    assert str(home) in proc.stdout
    text = (home / "brickyard.toml").read_text()
    assert text.count("#") > 20 and "[defaults]" in text


def test_models_list_shows_price_and_readiness(home: Path) -> None:
    out = run("models", "list", home=home).stdout
    lines = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "echo" in lines and "yes" in lines["echo"]
    assert "no key ($BRICKYARD_TEST_NO_SUCH_KEY)" in lines["paid"]
    assert "smollm2" in lines and "e5-small" in lines
    assert "alias of echo" in out
    wide = run("models", "list", home=home, env={"COLUMNS": "250"}).stdout
    smollm2 = _row(wide, "smollm2")
    assert "classify/filter: embedding" in smollm2 and "knowledge: extractive" in smollm2
    assert "2 examples shown" in smollm2 and "compact JSON" not in smollm2
    gemma3 = _row(wide, "gemma3")  # the pre-trained Gemma 3 learns from more examples, written compactly
    assert "8 examples shown, compact JSON" in gemma3


def _row(table: str, endpoint: str) -> str:
    """The text of each cell of `endpoint`'s row of a rich table, its wrapped lines joined."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"│ {endpoint} "))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("│") or line.split("│")[1].strip():
            break
        block.append(line)
    columns = zip(*(line.split("│")[1:-1] for line in block), strict=True)
    return " │ ".join(" ".join(part.strip() for part in column if part.strip()) for column in columns)


def test_ask_streams_the_answer_and_usage_records_it(home: Path) -> None:
    assert run("ask", "-m", "quick", "hi there", "--tag", "cli", home=home).stdout.strip() == "hello from the fake"
    rows = json.loads(run("usage", "--by", "endpoint,tag", "--json", home=home).stdout)
    assert rows == [
        {
            "endpoint": "echo",
            "tag": "cli",
            "calls": 1,
            "errors": 0,
            "cache_hits": 0,
            "input_tokens": rows[0]["input_tokens"],
            "output_tokens": rows[0]["output_tokens"],
            "cost_usd": rows[0]["cost_usd"],
            "latency_s_avg": rows[0]["latency_s_avg"],
        }
    ]
    expected = (rows[0]["input_tokens"] * 1.0 + rows[0]["output_tokens"] * 2.0) / 1e6
    assert rows[0]["cost_usd"] == pytest.approx(expected)


def test_errors_are_one_clear_line(home: Path) -> None:
    proc = run("ask", "-m", "ecko", "hi", home=home, check=False)
    assert proc.returncode == 1
    assert "unknown endpoint `ecko`" in proc.stderr and "did you mean echo" in proc.stderr
    assert "[endpoints.ecko]" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("ask", "-m", "paid", "hi", home=home, check=False)
    assert proc.returncode == 1 and "$BRICKYARD_TEST_NO_SUCH_KEY" in proc.stderr


def test_invalid_config_names_file_key_and_fix(home: Path) -> None:
    (home / "brickyard.toml").write_text('[endpoints.x]\nmodel = "fake:x"\nrpm = "fast"\n')
    proc = run("models", "list", home=home, check=False)
    assert proc.returncode == 1
    assert str(home / "brickyard.toml") in proc.stderr and "endpoints.x.rpm" in proc.stderr and "Fix:" in proc.stderr


def test_workspace_option_overrides_home(tmp_path: Path, home: Path) -> None:
    other = tmp_path / "other"
    run("--help", home=home)
    proc = run("init", "--workspace", str(other), home=home)
    assert (other / "brickyard.toml").exists() and str(other) in proc.stdout


@pytest.mark.local_model
def test_ping_a_local_model(home: Path, smollm2_path: Path) -> None:
    (home / "brickyard.toml").write_text(f'[local]\nmodels_dir = "{smollm2_path.parent}"\nparallel = 1\n')
    out = run("models", "ping", "smollm2", home=home).stdout
    assert out.startswith("smollm2: ok in") and "local:smollm2-135m" in out


SQL_CONFIG = DETERMINISTIC_CONFIG


@pytest.fixture
def sql_home(tmp_path: Path) -> Path:
    home = tmp_path / "sqlws"
    run("init", home=home)
    (home / "brickyard.toml").write_text(SQL_CONFIG)
    csv = tmp_path / "reviews.csv"
    csv.write_text("id,txt\n1,A great Film by Bob\n2,Awful movie; truly\n3,\n4,A great Film by Bob\n")
    assert "loaded 4 rows into reviews" in run("load", str(csv), "reviews", home=home).stdout
    return home


def test_sql_prints_a_table_and_writes_files(sql_home: Path, tmp_path: Path) -> None:
    out = run(
        "sql", "SELECT id, ai_classify(txt, ARRAY['fresh', 'rotten']) AS label FROM reviews ORDER BY id", home=sql_home
    ).stdout
    assert "label" in out and ("fresh" in out or "rotten" in out) and "NULL" in out
    query = tmp_path / "q.sql"
    query.write_text("SELECT 'a;b' AS x; SELECT id, ai_summarize(txt, max_words => 2) AS s FROM reviews ORDER BY id;")
    assert "echo: A" in run("sql", "-f", str(query), home=sql_home).stdout
    target = tmp_path / "out.csv"
    run("sql", "SELECT id, ai_gen(txt) AS g FROM reviews ORDER BY id", "--output", str(target), home=sql_home)
    lines = target.read_text().splitlines()
    assert lines[0] == "id,g" and len(lines) == 5  # header and every row, NULL included


def test_sql_estimate_runs_nothing(sql_home: Path) -> None:
    out = run("sql", "--estimate", "SELECT ai_summarize(txt) FROM reviews", home=sql_home).stdout
    assert "estimated: 2 model calls" in out
    usage = json.loads(run("usage", "--json", home=sql_home).stdout)
    assert usage == []  # no call was made


def test_sql_max_cost_and_bad_sql_are_one_clear_line(sql_home: Path) -> None:
    proc = run("sql", "--max-cost", "0.0000001", "SELECT ai_gen(txt) FROM reviews", home=sql_home, check=False)
    assert proc.returncode == 1 and "cost cap" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("sql", "SELECT ai_classify(txt, ARRAY['one']) FROM reviews", home=sql_home, check=False)
    assert proc.returncode == 1 and "ai_classify: at least two labels" in proc.stderr
    proc = run("load", "/nonexistent.csv", "t", home=sql_home, check=False)
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_index_and_vector_search(sql_home: Path) -> None:
    out = run("index", "reviews_idx", "--table", "reviews", "--column", "txt", "--key", "id", home=sql_home).stdout
    assert "indexed 3 rows" in out
    out = run("sql", "SELECT key FROM vector_search('reviews_idx', 'Awful movie; truly', k => 1)", home=sql_home).stdout
    assert "2" in out


def test_agent_lifecycle_from_the_command_line(sql_home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "people.yaml"
    spec.write_text("name: people\nkind: extract\nexample_output: {person: Ada}\ninstructions: Find the person.\n")
    assert "saved as version 1" in run("agent", "create", "-f", str(spec), home=sql_home).stdout
    assert "saved as version 2" in run("agent", "create", "-f", str(spec), home=sql_home).stdout
    listing = run("agent", "list", home=sql_home).stdout
    assert "people" in listing and "extract" in listing and "CREATED" in listing
    proc = run("agent", "run", "people", "the program by Ada Lovelace", home=sql_home)
    assert json.loads(proc.stdout) == {"person": "Ada"}
    run_id = proc.stderr.split("run ")[1].split(":")[0]
    trace = run("agent", "trace", run_id, home=sql_home).stdout
    assert f"run {run_id} of people v2" in trace and "model" in trace
    out = run("agent", "run", "people", "--table", "reviews", "--column", "txt", "--into", "people_out", home=sql_home)
    assert "4 rows into people_out (0 failed" in out.stdout
    rows = run(
        "sql", "SELECT count(*) AS n, count(output) AS outputs, max(result.person) AS p FROM people_out", home=sql_home
    ).stdout
    assert "4" in rows and "3" in rows and "Film" in rows  # every row kept, typed result column; NULL → NULL
    docs = tmp_path / "letters"
    docs.mkdir()
    (docs / "a.md").write_text("# Note\n\nA letter from Grace Hopper.\n")
    (docs / "b.pdf").write_bytes(b"broken")
    out = run("agent", "run", "people", "--folder", str(docs), "--into", "letters_out", home=sql_home)
    assert "2 rows into letters_out (1 failed" in out.stdout
    rows = run(
        "sql", "SELECT parse_filename(source) AS f, result.person AS p FROM letters_out ORDER BY f", home=sql_home
    ).stdout
    assert "a.md" in rows and "b.pdf" in rows
    assert "deleted people" in run("agent", "delete", "people", home=sql_home).stdout
    proc = run("agent", "run", "people", "x", home=sql_home, check=False)
    assert proc.returncode == 1 and "no agent `people`" in proc.stderr


def test_kb_ingest_and_search(sql_home: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nParental leave is sixteen weeks.\n\n# Travel\n\nBook trains early.\n")
    (docs / "broken.pdf").write_bytes(b"not a pdf")
    out = run("kb", "ingest", "handbook", str(docs), home=sql_home).stdout
    assert "1 added" in out and "1 failed" in out
    again = run("kb", "ingest", "handbook", str(docs), home=sql_home).stdout
    assert "1 unchanged" in again
    hits = run("kb", "search", "handbook", "parental leave", "--k", "1", home=sql_home).stdout
    assert "leave.md" in hits
