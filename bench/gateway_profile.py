"""Where `brickyard serve`'s time goes per request: py-spy samples the real server process under `wrk` load.

The server (one worker) serves a key with a USD budget (every request reserves and settles against a budget lease),
usage recording and payload logs at their defaults, and the endpoint's cache off, against the benchmark's fast
fake upstream. After a warm-up, `py-spy record --nonblocking` samples every thread of the process while `wrk`
keeps `connections` connections busy. Idle samples are not recorded, so a share is a share of the time the
process was busy (py-spy's idle detection). Reported: the share of samples by component (from the file of the
innermost frame), the functions with the most self time, each sample charged to its innermost brickyard function
(what brickyard code the time is spent under), and brickyard's functions by inclusive time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import free_port

PY_SPY_RATE = 250
"""Samples per second."""

COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("brickyard: routes, auth, app", ("brickyard/server/",)),
    ("brickyard: model stack (budget, limits, metering, payloads, retry)", ("brickyard/models/",)),
    ("brickyard: store (usage ledger, budgets, payload files)", ("brickyard/store/",)),
    ("SQLite / PostgreSQL drivers", ("sqlite3/", "psycopg/", "psycopg_pool/", "psycopg_binary/")),
    (
        "upstream client (openai SDK, httpx, aiohttp)",
        ("openai/", "httpx", "httpcore/", "aiohttp/", "yarl/", "multidict/"),
    ),
    ("HTTP server (uvicorn, httptools)", ("uvicorn/", "httptools/")),
    ("web framework (FastAPI, Starlette)", ("fastapi/", "starlette/")),
    ("validation (pydantic)", ("pydantic/", "pydantic_core/")),
    ("JSON", ("json/",)),
    ("event loop, threads, queues", ("asyncio/", "threading.py", "concurrent/", "selectors.py", "queue.py")),
]
ATTRIBUTION: list[tuple[str, tuple[str, ...]]] = [
    ("budget reservations (reserve, settle in the store)", ("Budgets", ".reserve", ".settle")),
    ("usage ledger writes (write-behind thread)", ("Store._write", "Store._wake")),
    ("payload logs", ("PayloadLog",)),
    ("the upstream call (openai SDK client)", ("OpenAIModel",)),
    ("routes, auth, request parsing", ("brickyard/server/",)),
]
"""What a sample is charged to, by its innermost brickyard frame (name or file); the rest is the model stack."""
_NO_FRAME = "(no brickyard frame: event loop, HTTP server, threads)"
_ENTRY = {"brickyard/cli.py", "brickyard/server/cli.py", "brickyard/server/runner.py"}
"""The process's entry frames (on every main-thread stack): left out of the per-function shares."""
_LINE = re.compile(r":\d+\)$")


def _frame(raw: str) -> tuple[str, str]:
    """`func (path/file.py:123)` -> (`func`, `path/file.py`)."""
    name, _, where = raw.rpartition(" (")
    return (name or raw), _LINE.sub("", where).rstrip(")")


def component(path: str) -> str:
    for label, markers in COMPONENTS:
        if any(m in path for m in markers):
            return label
    return "other (uuid, logging, stdlib)"


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Shares from py-spy's raw (collapsed) output: one `frame;frame;... count` line per distinct stack."""
    total = 0
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    components: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    background = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.strip() or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        if frames[0][0].startswith("Thread._bootstrap"):
            background += n
        name, path = frames[-1]
        leaf[f"{name} ({path})"] += n
        components[component(path)] += n
        for f in {f"{name} ({path})" for name, path in frames if "brickyard/" in path and path not in _ENTRY}:
            inclusive[f] += n
        own = [f"{name} ({path})" for name, path in frames if "brickyard/" in path and path not in _ENTRY]
        innermost[own[-1] if own else _NO_FRAME] += n

    charged: Counter[str] = Counter()
    for frame, n in innermost.items():
        label = next((lbl for lbl, marks in ATTRIBUTION if any(m in frame for m in marks)), None)
        if label is None:
            label = (
                "outside brickyard (event loop, HTTP server, threads)" if frame == _NO_FRAME else "rest of brickyard"
            )
        charged[label] += n

    def shares(counter: Counter[str], k: int | None = None) -> list[dict[str, Any]]:
        return [{"name": name, "share": n / total} for name, n in counter.most_common(k)] if total else []

    return {
        "samples": total,
        "background_threads_share": background / total if total else 0.0,
        "components": shares(components),
        "self_top": shares(leaf, top),
        "charged_to": shares(charged),
        "brickyard_innermost_top": shares(innermost, top),
        "brickyard_inclusive_top": shares(inclusive, top),
    }


def record(pid: int, seconds: float, out: Path) -> tuple[str, str]:
    """`py-spy record` of process `pid` for `seconds`; returns (raw collapsed stacks, py-spy's own output)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise FileNotFoundError("py-spy is not installed: run `make bench` (pip install py-spy)")
    cmd = [spy, "record", "--pid", str(pid), "--rate", str(PY_SPY_RATE), "--format", "raw", "--nonblocking"]
    done = subprocess.run(
        [*cmd, "--duration", f"{seconds:g}", "--output", str(out)], capture_output=True, text=True, timeout=seconds + 60
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stdout}{done.stderr}")
    return out.read_text(), (done.stdout + done.stderr).strip()


def profile(
    workspace: Path, key: str, logs: Path, *, label: str, seconds: float = 8.0, connections: int = 64
) -> dict[str, Any]:
    """Serve `workspace` with one worker, load it with `wrk` and sample it with py-spy meanwhile."""
    from bench.gateway import Target, _brickyard_bin, _process, _stop, _wait_ready, wrk

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = logs / f"profile-{label}.log"
    cmd = [_brickyard_bin(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with _process([*cmd, "--workspace", str(workspace)], log) as proc:
        _wait_ready(proc, base + "/readyz", log)
        target = Target(f"profile-{label}", base, key)
        wrk(target, connections, 2.0)  # warm-up: first-use imports and client setup stay out of the profile
        load: dict[str, Any] = {}
        loader = threading.Thread(target=lambda: load.update(wrk(target, connections, seconds + 1.0)))
        loader.start()
        raw, said = record(proc.pid, seconds, logs / f"profile-{label}.txt")
        loader.join()
        _stop(proc)
    errors = re.search(r"Errors: (\d+)", said)
    return summarize(raw) | {
        "seconds": seconds,
        "connections": connections,
        "rate_hz": PY_SPY_RATE,
        "py_spy_errors": int(errors.group(1)) if errors else None,
        "rps_while_sampled": load.get("rps"),
        "raw": str(logs / f"profile-{label}.txt"),
    }
