"""A real Spark standalone cluster on 127.0.0.1 (a master and N workers), for tests and benchmarks.

    with LocalSparkCluster(workers=2, log_dir=tmp) as cluster:
        spark = cluster.session("my-app")   # a SparkSession whose executors run in the workers' JVMs
        ...
        spark.stop()

The master and workers are the JVM daemons pyspark ships (`spark-class ...deploy.master.Master` / `Worker`),
each its own process group, stopped (then killed) on exit; their logs go to `log_dir`. Executors run in
separate JVMs with their own Python workers, so the session passes them the driver's interpreter and the
folder brickyard was imported from (`spark.executorEnv.PYTHONPATH`), as a real cluster would need.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from brickyard._errors import MissingExtraError, UserError

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spark_home() -> Path:
    """pyspark's own folder: it holds `bin/spark-class` and the jars."""
    try:
        import pyspark
    except ImportError as exc:
        raise MissingExtraError("pyspark", "spark") from exc
    return Path(pyspark.__file__).resolve().parent


def java_missing() -> str | None:
    """Why Java cannot run (a one-line reason with the fix), or None when it can."""
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home) / "bin" / "java" if java_home else None
    if java is not None and java.exists():
        return None
    if shutil.which("java"):
        return None
    return (
        "Java is not installed (no `java` on PATH and no JAVA_HOME). "
        "Fix: install Java 17 (apt-get install openjdk-17-jre-headless)"
    )


def executor_python_path() -> str:
    """The folder this brickyard was imported from, first, then the executor's inherited PYTHONPATH."""
    import brickyard

    here = str(Path(brickyard.__file__).resolve().parent.parent)
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([here, *[p for p in inherited.split(os.pathsep) if p and p != here]])


class LocalSparkCluster:
    """A standalone master and `workers` workers on 127.0.0.1, each worker `cores` cores and `memory`."""

    def __init__(
        self,
        *,
        workers: int = 2,
        cores: int = 1,
        memory: str = "1g",
        log_dir: str | Path | None = None,
        timeout_s: float = 90.0,
        daemon_memory: str = "256m",
    ) -> None:
        if workers < 1 or cores < 1:
            raise UserError(f"a cluster needs at least one worker with one core (got workers={workers}, cores={cores})")
        self.workers, self.cores, self.memory = workers, cores, memory
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="brickyard-spark-"))
        self.timeout_s, self.daemon_memory = timeout_s, daemon_memory
        self.port = _free_port()
        self.ui_port = _free_port()
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> LocalSparkCluster:
        reason = java_missing()
        if reason:
            raise UserError(reason)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            master = ["--host", "127.0.0.1", "--port", str(self.port), "--webui-port", str(self.ui_port)]
            self._spawn("master", MASTER_CLASS, *master)
            self._wait(lambda state: state.get("status") == "ALIVE", "the master")
            for i in range(self.workers):
                work = self.log_dir / f"worker-{i}"
                work.mkdir(exist_ok=True)
                worker = ["--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory]
                worker += ["--webui-port", str(_free_port()), "--work-dir", str(work), self.master_url]
                self._spawn(f"worker-{i}", WORKER_CLASS, *worker)
            self._wait(lambda state: state.get("aliveworkers", 0) >= self.workers, f"{self.workers} workers")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM every daemon's process group (executors included), then SIGKILL what is left after 15 s."""
        for process in reversed(self._processes):
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in reversed(self._processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
        self._processes.clear()

    def __enter__(self) -> LocalSparkCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- state ---------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The master's JSON status (workers, apps, cores in use)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as response:
            return dict(json.loads(response.read()))

    def session(self, app_name: str = "brickyard", **conf: str) -> Any:
        """A SparkSession on this cluster, once every worker's executor has registered: all their cores,
        512 MiB per executor, this interpreter and this brickyard on the executors."""
        from pyspark.sql import SparkSession

        os.environ["PYSPARK_PYTHON"] = sys.executable  # read when the context starts
        builder = (
            SparkSession.builder.master(self.master_url)
            .appName(app_name)
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.executor.memory", "512m")
            .config("spark.executor.cores", str(self.cores))
            .config("spark.cores.max", str(self.cores * self.workers))
            .config("spark.pyspark.python", sys.executable)
            .config("spark.executorEnv.PYTHONPATH", executor_python_path())
            .config("spark.sql.shuffle.partitions", str(self.workers))
            .config("spark.locality.wait", "0")  # model calls dominate: any free executor takes the next task
        )
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        deadline = time.monotonic() + self.timeout_s
        while self.executors(session) < self.workers:  # else the first stage runs on whichever came first
            if time.monotonic() > deadline:
                session.stop()
                raise UserError(
                    f"{self.workers} executors did not register within {self.timeout_s:.0f} s; see {self.log_dir}"
                )
            time.sleep(0.2)
        return session

    @staticmethod
    def executors(session: Any) -> int:
        """How many executors have registered with this session's driver (the driver itself not counted)."""
        return int(session.sparkContext._jsc.sc().getExecutorMemoryStatus().size()) - 1

    def daemon_pids(self) -> list[int]:
        """The master's process id, then each worker's (their executors are the workers' children)."""
        return [p.pid for p in self._processes]

    def log_text(self) -> str:
        """Every daemon and executor log under `log_dir`, concatenated (for asserting what was never logged)."""
        parts = []
        for path in sorted(self.log_dir.rglob("*")):
            if path.is_file():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    # -- internals -------------------------------------------------------------------------------------------
    def _spawn(self, name: str, main_class: str, *args: str) -> None:
        home = spark_home()
        env = {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": self.daemon_memory,
            "SPARK_LOG_DIR": str(self.log_dir),
            "SPARK_NO_DAEMONIZE": "1",
            # no REST submission server (a fixed port, 6066, that two clusters would fight over)
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
            # the daemons only schedule: start fast and small (the executors keep the JVM's defaults)
            "SPARK_DAEMON_JAVA_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
            "PYSPARK_PYTHON": sys.executable,
        }
        log = (self.log_dir / f"{name}.log").open("wb")
        try:
            process = subprocess.Popen(
                [str(home / "bin" / "spark-class"), main_class, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.log_dir,
                start_new_session=True,
            )
        finally:
            log.close()
        self._processes.append(process)

    def _wait(self, ready: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            dead = [p for p in self._processes if p.poll() is not None]
            if dead:
                raise UserError(
                    f"a Spark daemon exited with status {dead[0].returncode} while waiting for {what}; "
                    f"see the logs in {self.log_dir}"
                )
            try:
                if ready(self.state()):
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        raise UserError(
            f"{what} did not come up within {self.timeout_s:.0f} s ({last or 'not registered'}); "
            f"see the logs in {self.log_dir}"
        )


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the daemon's own group (start_new_session): its executors too
