"""Scenario 7: after all the others, the API key is nowhere but in the connection — not in task
logs, XCom, trigger rows, rendered templates, or files the jobs wrote. Runs last (file order)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.conftest import load_dag
from tests.reliability.conftest import API_KEY, CLUSTERS, manifest_root, query, record


def files_with_key(root: Path, key: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if key in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def metadata_rows_with_key(db: Path, fernet_key: str | None) -> list[str]:
    found = []
    with sqlite3.connect(db) as conn:
        for table in ("xcom", "rendered_task_instance_fields", "task_instance", "dag_run", "trigger", "log"):
            for row in conn.execute(f"SELECT * FROM {table}"):
                for value in row:
                    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    if API_KEY in text:
                        found.append(f"{db.name}:{table}")
        if fernet_key:
            for (kwargs,) in conn.execute("SELECT kwargs FROM trigger"):
                plain = kwargs if kwargs.startswith("{") else Fernet(fernet_key.encode()).decrypt(kwargs.encode()).decode()
                if API_KEY in plain:
                    found.append(f"{db.name}:trigger.kwargs")
    return found


class _Redirecting(BaseHTTPRequestHandler):
    """An API host that answers every request with a redirect to another origin, which records
    what reaches it."""

    target = ""
    reached: list[dict] = []

    def _redirect(self):
        self.send_response(307)
        self.send_header("Location", self.target + self.path)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = _redirect

    def log_message(self, *args):
        pass


class _Elsewhere(_Redirecting):
    reached: list[dict] = []

    def _record(self):
        type(self).reached.append(dict(self.headers))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = _record


def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.usefixtures("airflow_db")
def test_7_the_key_leaks_nowhere(tmp_path, pipeline_env, monkeypatch, capfd):
    key = API_KEY.encode()
    emulator = pipeline_env
    # A key pasted with surrounding whitespace still works, and appears nowhere.
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
        "conn_type": "batch_api", "host": emulator.url, "password": f"  {API_KEY}\n",
        "extra": {"retry_initial_wait": 0.05, "retry_max_wait": 0.5}}))
    query("DROP TABLE IF EXISTS rel_secret")
    run = load_dag("reliable_pipeline").test(run_conf={"rows": 100, "table": "rel_secret"})
    assert run.state == "success"
    # A host that redirects elsewhere: the run fails, and the other host never sees the key.
    elsewhere = _serve(_Elsewhere)
    _Redirecting.target = f"http://127.0.0.1:{elsewhere.server_port}"
    redirecting = _serve(_Redirecting)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
            "conn_type": "batch_api", "host": f"http://127.0.0.1:{redirecting.server_port}", "password": API_KEY}))
        run = load_dag("reliable_pipeline").test(run_conf={"rows": 100, "table": "rel_secret"})
        assert run.state == "failed"
    finally:
        redirecting.shutdown()
        elsewhere.shutdown()
    assert _Elsewhere.reached == []
    printed = "".join(capfd.readouterr())
    assert "redirects are not followed" in printed and API_KEY not in printed
    in_process_home = Path(os.environ["AIRFLOW_HOME"])
    homes = [in_process_home, *(cluster.home for cluster in CLUSTERS)]
    assert CLUSTERS, "run the whole suite: the real-process scenarios must have run first"

    # The scan must be able to find the key, or it proves nothing.
    canary = in_process_home / "canary.txt"
    canary.write_bytes(b"..." + key + b"...")
    assert files_with_key(in_process_home, key) == [str(canary)]
    canary.unlink()

    leaks = []
    for home in homes:
        leaks += files_with_key(home, key)  # logs, manifests, spools, rows files, emulator files
        db = home / "airflow.db"
        fernet = next((c.fernet_key for c in CLUSTERS if c.home == home), None)
        leaks += metadata_rows_with_key(db, fernet)
    leaks += files_with_key(manifest_root(), key)
    assert leaks == []
    logs = sum(1 for home in homes for _ in (home / "logs").rglob("*") if _.is_file()) if homes else 0
    record(7, "Secrets", "a distinctive API key used by every scenario above, once pasted with surrounding "
           "whitespace, and an API host that redirects to another origin",
           f"found in 0 places: {logs} log files, the runs' output, XCom, trigger rows (decrypted), rendered "
           "fields, manifests and every other file under the Airflow homes; the redirect was refused and "
           "the other origin received no request")
