"""Benchmark 7: gateway overhead of `brickyard serve` (1 and 2 workers) vs the upstream alone and LiteLLM's proxy.

Everything runs on 127.0.0.1, each piece in its own process: a fast fake OpenAI-compatible upstream
(bench/peers/upstream.py), the gateway under test, and `wrk` as the load generator (bench/peers/chat.lua
posts a distinct chat completion per request, so no cache can answer, and prints p50/p95/p99).

For each target: a short warm-up, then `wrk` for `duration_s` at 1 connection (latency percentiles) and at
`connections` connections (sustained requests/s). brickyard runs with a real scoped API key, usage recording
and payload logs at their defaults and the endpoint's cache off; after a graceful shutdown the ledger's usage
rows are compared with the calls the upstream served. LiteLLM (its own venv, `.venv-litellm`, one worker,
master key, no database) gets the same upstream and load.

Then the same brickyard rows with the PostgreSQL store (`[store] url`: usage ledger, budgets and keys in a
PostgreSQL server this module starts on 127.0.0.1 and stops), a key with a USD budget (every request reserves
and settles against its process's budget lease, which is reserved and settled in the store) on each store, and a
py-spy profile of where a keyed, budgeted request's time goes (bench/gateway_profile.py, written to
bench/results/gateway_profile.json).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import gateway_profile
from bench.common import free_port, fresh_workspace, save
from bench.pg import postgres_server

ROOT = Path(__file__).parent.parent
PEERS = Path(__file__).parent / "peers"
LITELLM_VENV = ROOT / ".venv-litellm"
MODEL = "fake"
CHAT_PATH = "/v1/chat/completions"
LITELLM_KEY = "sk-bench-litellm-master"


@dataclass
class Target:
    """A server to load: where to POST chat completions, with which model name and key."""

    name: str
    base: str
    key: str | None = None


@dataclass
class Load:
    """How hard and how long: `wrk` runs of `duration_s` at 1 and at `connections` connections."""

    duration_s: float = 10.0
    connections: int = 64
    warmup_s: float = 2.0


# ---------------------------------------------------------------- processes


@contextlib.contextmanager
def _process(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[Any]:
    """Start `cmd` in its own session with output to `log`; stop it gracefully (SIGTERM, then kill) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 90.0) -> float:
    """Poll `url` until it answers 200; return the seconds it took. Fail with the log's tail if the process dies."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{url.split('/')[2]} exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            _get_json(url, timeout=2.0)
            return time.perf_counter() - started
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- load


def wrk(target: Target, connections: int, duration_s: float) -> dict[str, Any]:
    """One `wrk` run against `target`; requests/s, latency percentiles (ms) and error counts."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(PEERS / "chat.lua"),
        target.base + CHAT_PATH,
    ]
    env = {**os.environ, "WRK_MODEL": MODEL, "WRK_KEY": target.key or ""}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("WRK_RESULT "))
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    ok = raw["requests"] - raw["status"]
    return {
        "connections": connections,
        "seconds": raw["duration_us"] / 1e6,
        "requests": raw["requests"],
        "ok": ok,
        "rps": ok / (raw["duration_us"] / 1e6),
        "non_2xx": raw["status"],
        "socket_errors": socket_errors,
        **{f"{p}_ms": raw[f"{p}_us"] / 1000 for p in ("p50", "p90", "p95", "p99", "max")},
        "mean_ms": raw["mean_us"] / 1000,
    }


def measure(target: Target, load: Load, upstream: str, pid: int) -> dict[str, Any]:
    """Warm up, then latency at 1 connection and throughput at `load.connections` (and the server's CPU for it)."""
    warm = wrk(target, load.connections, load.warmup_s)
    _drain(upstream)  # requests still in flight when wrk stopped must not queue ahead of the latency run
    single = wrk(target, 1, load.duration_s)
    cpu_before = _tree_cpu_s(pid)
    many = wrk(target, load.connections, load.duration_s)
    cpu_s = _tree_cpu_s(pid) - cpu_before
    return {
        "rps": many["rps"],
        "connections": load.connections,
        "server_cpu_ms_per_request": cpu_s / max(many["ok"], 1) * 1000,
        "p50_ms": single["p50_ms"],
        "p95_ms": single["p95_ms"],
        "p99_ms": single["p99_ms"],
        "errors": single["non_2xx"] + single["socket_errors"] + many["non_2xx"] + many["socket_errors"],
        "ok_responses": warm["ok"] + single["ok"] + many["ok"],
        "one_connection": single,
        "many_connections": many,
        "warmup": warm,
    }


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its children (server workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(stat.parent.name) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _upstream_calls(upstream: str) -> int:
    return int(_get_json(upstream + "/stats")["requests"])


def _drain(upstream: str, quiet_s: float = 0.5, timeout_s: float = 15.0) -> None:
    """Wait until the upstream has served no new call for `quiet_s`."""
    deadline = time.perf_counter() + timeout_s
    last = _upstream_calls(upstream)
    while time.perf_counter() < deadline:
        time.sleep(quiet_s)
        now = _upstream_calls(upstream)
        if now == last:
            return
        last = now


# ---------------------------------------------------------------- brickyard


def _brickyard_bin() -> str:
    exe = Path(sys.executable).parent / "brickyard"
    return str(exe) if exe.exists() else "brickyard"


def _create_key(workspace: Path, name: str = "bench", budget: str | None = None) -> str:
    """`brickyard keys create` scoped to the benchmark endpoint; the secret is printed once, alone on stdout."""
    extra = ["--budget-usd", budget] if budget else []
    done = subprocess.run(
        [
            _brickyard_bin(),
            "keys",
            "create",
            "--name",
            name,
            "--endpoints",
            MODEL,
            "--workspace",
            str(workspace),
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    if len(lines) != 1 or len(lines[0].split()) != 1:
        raise RuntimeError(f"expected the key alone on stdout from `brickyard keys create`, got:\n{done.stdout}")
    return lines[0]


def _usage_rows(workspace: Path) -> int:
    with contextlib.closing(sqlite3.connect(workspace / "ledger.sqlite", timeout=30)) as db:
        return int(
            db.execute("SELECT count(*) FROM usage WHERE endpoint = ? AND status = 'ok'", (MODEL,)).fetchone()[0]
        )


def _pg_usage_rows(url: str) -> Callable[[Path], int]:
    """Like `_usage_rows`, for a workspace whose ledger is the PostgreSQL store at `url`."""

    def count(workspace: Path) -> int:
        import psycopg

        with psycopg.connect(url) as db:
            row = db.execute(
                "SELECT count(*) FROM brickyard_usage WHERE endpoint = %s AND status = 'ok'", (MODEL,)
            ).fetchone()
            return int(row[0]) if row else 0

    return count


def _payload_records(workspace: Path) -> int:
    """Lines in the payload logs (`<workspace>/payloads/*.jsonl`, one per call)."""
    return sum(len(path.read_bytes().splitlines()) for path in (workspace / "payloads").glob("*.jsonl"))


def run_brickyard(
    workspace: Path,
    key: str,
    upstream: str,
    workers: int,
    logs: Path,
    load: Load,
    *,
    usage_rows: Callable[[Path], int] = _usage_rows,
    label: str = "",
) -> dict[str, Any]:
    """Serve `workspace` with `workers` processes, load it, shut it down and check the ledger."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = logs / f"brickyard{label}-{workers}.log"
    before = _upstream_calls(upstream), usage_rows(workspace), _payload_records(workspace)
    cmd = [_brickyard_bin(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with _process([*cmd, "--workspace", str(workspace)], log) as proc:
        startup_s = _wait_ready(proc, base + "/readyz", log)
        figures = measure(Target(f"brickyard-{workers}", base, key), load, upstream, proc.pid)
        _stop(proc)
        figures["shutdown_exit_code"] = proc.returncode
    calls = _upstream_calls(upstream) - before[0]
    rows = usage_rows(workspace) - before[1]
    # wrk stops its runs with requests in flight: those reach the upstream and the ledger, uncounted by wrk
    in_flight_max = 2 * load.connections + 1
    figures |= {
        "workers": workers,
        "startup_s": startup_s,
        "upstream_calls": calls,
        "usage_records": rows,
        "payload_records": _payload_records(workspace) - before[2],
        "usage_records_match_upstream_calls": rows == calls,
        "usage_records_cover_ok_responses": figures["ok_responses"] <= rows <= figures["ok_responses"] + in_flight_max,
    }
    return figures


# ---------------------------------------------------------------- litellm


def litellm_version() -> str | None:
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        return None
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def run_litellm(upstream: str, logs: Path, load: Load) -> dict[str, Any]:
    """LiteLLM's proxy, one worker, master key, no database, same upstream and load."""
    port = free_port()
    config = logs / "litellm.yaml"
    template = (PEERS / "litellm.yaml").read_text()
    config.write_text(template.replace("{api_base}", upstream + "/v1").replace("{master_key}", LITELLM_KEY))
    log = logs / "litellm.log"
    cmd = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    # no network: use the bundled cost map instead of fetching it; quiet logs
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    with _process([*cmd, "--num_workers", "1"], log, env=env, cwd=logs) as proc:
        startup_s = _wait_ready(proc, f"http://127.0.0.1:{port}/health/liveliness", log)
        figures = measure(Target("litellm", f"http://127.0.0.1:{port}", LITELLM_KEY), load, upstream, proc.pid)
    return figures | {"workers": 1, "startup_s": startup_s}


# ---------------------------------------------------------------- run


BRICKYARD_ROWS = (
    "brickyard_1w",
    "brickyard_2w",
    "brickyard_budget_1w",
    "brickyard_pg_1w",
    "brickyard_pg_2w",
    "brickyard_pg_budget_1w",
)
BUDGET = "1000000/day"
"""The budgeted key's budget: never reached, so every request reserves and settles (through the process's lease)
but none is refused."""


ROUNDS = 3
"""Each target is measured once per round; a row is the median of its rounds."""
SUMMED = ("upstream_calls", "usage_records", "payload_records", "ok_responses")
"""Counts a row adds up over its rounds (the ledger check covers every request of every round)."""


def _with_load(row: dict[str, Any], load_before: tuple[float, float, float]) -> dict[str, Any]:
    return row | {"load_average_before": load_before}


def _by_round(row: dict[str, Any], lite: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Per round, side by side: requests/s per worker over LiteLLM's and added p50 (minus the upstream's)."""
    mine, theirs, up = row.get("rounds", []), lite.get("rounds", []), base.get("rounds", [])
    if not mine or len(mine) != len(theirs) or len(mine) != len(up):
        return {}
    return {
        "rps_per_worker_by_round": [m["rps"] / row["workers"] / t["rps"] for m, t in zip(mine, theirs, strict=True)],
        "added_p50_ms_by_round": [m["p50_ms"] - u["p50_ms"] for m, u in zip(mine, up, strict=True)],
    }


def median_row(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a target's rounds: each figure's median, counts summed, checks true only if true in every
    round; the rounds' requests/s and p50 are kept beside it (`rounds`)."""
    row = dict(rounds[0])
    for name, value in rounds[0].items():
        values = [r[name] for r in rounds if name in r]
        if isinstance(value, bool):
            row[name] = all(values)
        elif name in SUMMED:
            row[name] = sum(values)
        elif isinstance(value, int | float):
            row[name] = statistics.median(values)
        elif name == "load_average_before":
            row[name] = [statistics.median(v[i] for v in values) for i in range(3)]
    row["rounds"] = [{"rps": r.get("rps"), "p50_ms": r.get("p50_ms")} for r in rounds]
    return row


def run_postgres(figures: dict[str, Any], endpoint: str, upstream: str, logs: Path, load: Load) -> dict[str, Any]:
    """The brickyard rows again with `[store] url` on a PostgreSQL server started here; the py-spy profiles."""
    profiles: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        try:
            pg = stack.enter_context(postgres_server())
        except (RuntimeError, OSError) as exc:
            for name in ("brickyard_pg_1w", "brickyard_pg_2w", "brickyard_pg_budget_1w"):
                figures[name] = {"skipped": f"no PostgreSQL server: {exc}"[:200]}
            return profiles
        url = pg.database("gateway")
        figures["postgres"] = pg.version
        ws = fresh_workspace(endpoint + f'\n[store]\nurl = "{url}"\n')
        key, budgeted = _create_key(ws.path), _create_key(ws.path, "bench-budget", BUDGET)
        figures["workspace_pg"] = str(ws.path)
        count = _pg_usage_rows(url)
        rounds: dict[str, list[dict[str, Any]]] = {}
        for _ in range(ROUNDS):
            for name, workers, which in (("pg_1w", 1, key), ("pg_2w", 2, key), ("pg_budget_1w", 1, budgeted)):
                load_before = os.getloadavg()
                row = run_brickyard(ws.path, which, upstream, workers, logs, load, usage_rows=count, label="-pg")
                rounds.setdefault(f"brickyard_{name}", []).append(_with_load(row, load_before))
        figures |= {name: median_row(measured) for name, measured in rounds.items()}
        profiles["postgresql"] = _profile(ws.path, budgeted, logs, "postgresql")
    return profiles


def _profile(workspace: Path, key: str, logs: Path, label: str) -> dict[str, Any]:
    load_before = os.getloadavg()
    try:
        return gateway_profile.profile(workspace, key, logs, label=label) | {"load_average_before": load_before}
    except (FileNotFoundError, RuntimeError) as exc:
        return {"skipped": str(exc)[:300]}


def run(duration_s: float = 10.0, connections: int = 64, warmup_s: float = 2.0) -> dict[str, Any]:
    """Measure upstream alone, brickyard with 1 and 2 workers, and LiteLLM; then brickyard with a budgeted key and
    with the PostgreSQL store, and profile it; write bench/results/gateway.json and gateway_profile.json."""
    if shutil.which("wrk") is None:
        raise RuntimeError("`wrk` is not installed: run `make bench` or `apt-get install -y wrk`")
    load = Load(duration_s, connections, warmup_s)
    logs = Path(tempfile.mkdtemp(prefix="brickyard-bench-gateway-"))
    figures: dict[str, Any] = {
        "duration_s": duration_s,
        "connections": connections,
        "cores": os.cpu_count(),
        "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(" [")[0],
        "load_average_before": os.getloadavg(),
        "logs": str(logs),
    }
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    up_cmd = [sys.executable, str(PEERS / "upstream.py"), "--port", str(up_port)]
    with _process(up_cmd, logs / "upstream.log") as up_proc:
        _wait_ready(up_proc, upstream + "/stats", logs / "upstream.log")
        endpoint = (
            f'[endpoints.{MODEL}]\nmodel = "openai:fake"\nbase_url = "{upstream}/v1"\ncache = false\n'
            "price_input_per_1m = 0.15\nprice_output_per_1m = 0.6\n"
        )
        ws = fresh_workspace(endpoint)
        key, budgeted = _create_key(ws.path), _create_key(ws.path, "bench-budget", BUDGET)
        figures["workspace"] = str(ws.path)
        version = litellm_version()
        if version is None:
            figures["litellm"] = {"skipped": f"no LiteLLM venv at {LITELLM_VENV} (run `make bench`)"}
        # every target once per round, the rounds one after another: a slow spell of the machine lands on
        # every target of a round, and the median of the rounds leaves it out
        rounds: dict[str, list[dict[str, Any]]] = {}

        def add(name: str, measured: Callable[[], dict[str, Any]]) -> None:
            load_before = os.getloadavg()
            rounds.setdefault(name, []).append(_with_load(measured(), load_before))

        for _ in range(ROUNDS):
            add("upstream", lambda: measure(Target("upstream", upstream), load, upstream, up_proc.pid))
            for workers in (1, 2):
                add(f"brickyard_{workers}w", lambda w=workers: run_brickyard(ws.path, key, upstream, w, logs, load))
            add("brickyard_budget_1w", lambda: run_brickyard(ws.path, budgeted, upstream, 1, logs, load, label="-b"))
            if version is not None:
                add("litellm", lambda: run_litellm(upstream, logs, load) | {"version": version})
        figures |= {name: median_row(measured) for name, measured in rounds.items()}
        profiles = {"sqlite": _profile(ws.path, budgeted, logs, "sqlite")}
        profiles |= run_postgres(figures, endpoint, upstream, logs, load)
    figures["load_average_after"] = os.getloadavg()

    base = figures["upstream"]
    for name in (*BRICKYARD_ROWS, "litellm"):
        row = figures[name]
        if "p50_ms" in row:
            row["added_p50_ms"] = row["p50_ms"] - base["p50_ms"]
            row["added_p95_ms"] = row["p95_ms"] - base["p95_ms"]
            row["added_p99_ms"] = row["p99_ms"] - base["p99_ms"]
    lite = figures["litellm"]
    measured = [name for name in BRICKYARD_ROWS if "rps" in figures[name]]
    if "rps" in lite:
        figures["ratios_vs_litellm"] = {
            name: {
                "rps": figures[name]["rps"] / lite["rps"],
                "rps_per_worker": figures[name]["rps"] / figures[name]["workers"] / lite["rps"],
                "p50": figures[name]["p50_ms"] / lite["p50_ms"],
                "added_p50": figures[name]["added_p50_ms"] / lite["added_p50_ms"],
                **_by_round(figures[name], lite, base),
            }
            for name in measured
        }
    # issue 10: >= 10x LiteLLM's proxy per worker, <= 1 ms added p50 at one connection
    figures["targets"] = {"rps_per_worker_vs_litellm": ">= 10", "added_p50_ms_one_connection": "<= 1"}
    if "ratios_vs_litellm" in figures:
        figures["targets_met"] = {
            name: {
                "rps_per_worker_vs_litellm": figures["ratios_vs_litellm"][name]["rps_per_worker"] >= 10,
                "added_p50_ms_one_connection": figures[name]["added_p50_ms"] <= 1,
            }
            for name in measured
        }
    save("gateway", figures)
    save(
        "gateway_profile",
        {
            "what": "py-spy samples of `brickyard serve` (1 worker) under wrk load: key with a USD budget, usage and "
            "payload logs on, endpoint cache off",
            "budget": BUDGET,
            "postgres": figures.get("postgres"),
            "profiles": profiles,
        },
    )
    return figures
