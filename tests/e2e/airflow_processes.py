"""Real Airflow components, each in its own OS process group, on a throwaway AIRFLOW_HOME.

api-server, scheduler, dag-processor and triggerer are started separately (not `airflow standalone`,
which is hard to stop cleanly), all bound to loopback; Celery workers are started the same way, each
with its own working directory, temporary directory and hostname. Stopping sends SIGTERM to each
group and SIGKILL after a grace period, so nothing outlives a test.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests
from cryptography.fernet import Fernet

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AirflowProcesses:
    def __init__(self, home: Path, dags_folder: Path, extra_env: dict[str, str],
                 metadata_database: str | None = None) -> None:
        self.home = home
        self.metadata_database = metadata_database or f"sqlite:///{home}/airflow.db"
        self.port = free_port()
        self.fernet_key = Fernet.generate_key().decode()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_database,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            **extra_env,
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def migrate(self) -> None:
        subprocess.run([AIRFLOW, "db", "migrate"], env=self.env, check=True, capture_output=True, timeout=300)

    def start(self, name: str, args: list[str] | None = None, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        args = [a.format(port=self.port) for a in (args or COMPONENTS[name])]
        log = self.home / f"{name}-{len([k for k in self.logs if k.startswith(name)])}.log"
        self.logs[f"{name}:{log.name}"] = log
        self.processes[name] = subprocess.Popen(
            [AIRFLOW, *args], env={**self.env, **(env or {})}, cwd=cwd, stdout=open(log, "wb"),
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self.processes[name]

    def start_celery_worker(self, name: str, root: Path, queue: str, concurrency: int = 2) -> subprocess.Popen:
        """A Celery worker as if on its own host: its own working directory, TMPDIR, task log
        folder, log-server port and the hostname its task instances record (``worker_hostname``)."""
        cwd = root / name
        (cwd / "tmp").mkdir(parents=True)
        return self.start(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--queues", queue,
                                  "--concurrency", str(concurrency), "--without-mingle", "--without-gossip"],
                          env={"TMPDIR": str(cwd / "tmp"), "SCALEDOWN_E2E_HOSTNAME": name,
                               "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e.worker_hostname.from_environment",
                               "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(cwd / "logs"),
                               "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                               "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                          cwd=cwd)

    def start_all(self, timeout: float = 180) -> None:
        self.migrate()
        for name in COMPONENTS:
            self.start(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=3).json()
                if all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "triggerer")):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError(f"Airflow did not become healthy:\n{self.tail_logs()}")

    def wait_for_log(self, names: tuple[str, ...], text: str, timeout: float = 120) -> None:
        """Until the log of each named process holds ``text`` (e.g. a Celery worker's "ready.")."""
        deadline = time.monotonic() + timeout
        logs = [path for key, path in self.logs.items() if key.split(":")[0] in names]
        while not all(path.exists() and text in path.read_text(errors="replace") for path in logs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{', '.join(names)} did not log {text!r}:\n{self.tail_logs()}")
            time.sleep(0.5)

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group: the component gets no chance to clean up."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.processes.clear()

    def api(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, f"{self.url}/api/v2{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else {}

    def trigger_dag(self, dag_id: str, timeout: float = 90, conf: dict | None = None) -> str:
        deadline = time.monotonic() + timeout
        while True:  # the dag-processor must have parsed the file first
            try:
                self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
                break
            except requests.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})["dag_run_id"]

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}").get("state")

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def triggers(self) -> list[dict]:
        """Rows of the metadata database's trigger table, kwargs decrypted."""
        with sqlite3.connect(self.home / "airflow.db") as conn:
            rows = conn.execute("SELECT id, classpath, kwargs, triggerer_id FROM trigger").fetchall()
        fernet = Fernet(self.fernet_key.encode())
        decoded = []
        for trigger_id, classpath, kwargs, triggerer_id in rows:
            raw = kwargs if kwargs.startswith("{") else fernet.decrypt(kwargs.encode()).decode()
            decoded.append({"id": trigger_id, "classpath": classpath, "kwargs_json": raw,
                            "triggerer_id": triggerer_id})
        return decoded

    def tail_logs(self, lines: int = 30) -> str:
        out = []
        for name, path in self.logs.items():
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


def find_value(serialized: str, key: str):
    """A value by key anywhere in Airflow's serialized-kwargs JSON (which wraps values)."""
    def walk(node):
        if isinstance(node, dict):
            if key in node:
                value = node[key]
                return value.get("__var", value) if isinstance(value, dict) else value
            for child in node.values():
                found = walk(child)
                if found is not None:
                    return found
        elif isinstance(node, list):
            for child in node:
                found = walk(child)
                if found is not None:
                    return found
        return None
    return walk(json.loads(serialized))
