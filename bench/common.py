"""Shared helpers: machine facts, result files, a throwaway workspace."""

from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from brickyard.models import catalog
from brickyard.workspace import Workspace

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    return {
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2) + "\n")
    return path


def fresh_workspace(config: str = "") -> Workspace:
    """An empty workspace (no cache, no ledger) using the shared pulled weights."""
    path = Path(tempfile.mkdtemp(prefix="brickyard-bench-"))
    models_dir = catalog.default_models_dir()
    (path / "brickyard.toml").write_text(f'[local]\nmodels_dir = "{models_dir}"\n{config}')
    return Workspace(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
