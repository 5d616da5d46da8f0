"""Scenario 7: after all the others, the API key is nowhere but in the connection — not in task
logs, XCom, trigger rows, rendered templates, or files the jobs wrote. Runs last (file order).

Then, on their own: no credential the connection holds (userinfo or a query token in the host, the
key, secret-named extras) reaches a message, an exception's chain or a log line of either hook or
of the connection test."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import string
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings, strategies as st

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


# -- Credentials in the connection itself: host userinfo, a query token, the key, secret-named extras --------

KEY = "sd-live-Kq7Wv3Xr"
CREDENTIALS = ("hunter2", "sekrit", KEY, "xtok-Pp41Zm")


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again on leaving: connections are refused


def _connection(port: int, password: str = "hunter2", token: str = "sekrit", key: str = KEY,
                extra_token: str = "xtok-Pp41Zm") -> str:
    return json.dumps({
        "conn_type": "batch_api", "host": f"http://user:{password}@127.0.0.1:{port}/?token={token}",
        "password": key,
        "extra": {"retry_max_attempts": 2, "retry_initial_wait": 0.01, "retry_max_wait": 0.02,
                  "X-Auth-Token": extra_token}})


def _texts(exc: BaseException) -> list[str]:
    """Everything an exception can show: str, repr and args of it and of every exception chained to
    it (``__cause__`` and ``__context__``, suppressed or not), and the rendered traceback."""
    import traceback

    texts, seen, todo = ["".join(traceback.format_exception(exc))], set(), [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), *map(repr, current.args)]
        todo += [current.__cause__, current.__context__]
    return texts


def _leaks(texts: list[str], credentials=CREDENTIALS) -> list[tuple[str, str]]:
    return [(secret, text[:300]) for text in texts for secret in credentials if secret in text]


def _logs(caplog, capfd) -> list[str]:
    """What was logged: this package's and Airflow's lines as written (they must hold no credential
    themselves), and every other library's (urllib3 logs each request line at DEBUG, the host's query
    in it) after Airflow's secrets masker, as a task's log handler writes them."""
    from airflow.sdk.log import redact

    captured = capfd.readouterr()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("airflow", "tenacity"))]
    others = [redact(r.getMessage()) for r in caplog.records if not r.name.startswith(("airflow", "tenacity"))]
    return ["\n".join(ours) + captured.out + captured.err, "\n".join(others)]


def _fail_every_way(conn_id: str = "batch_api_default") -> list[str]:
    """Drive the sync hook (status, submit, output), the async hook and the connection test to
    failure; every text they produced."""
    import asyncio

    from airflow_batch_provider.hooks.batch_api import BatchApiAsyncHook, BatchApiHook
    from airflow_batch_provider.protocol import LineEncoder, Summarize

    texts = []
    hook = BatchApiHook(conn_id)
    line = LineEncoder(Summarize()).encode("r0", "Some text.")
    for call in (lambda: hook.get_batch("batch-x"), lambda: hook.submit_batch([line]),
                 lambda: list(hook.iter_output("batch-x"))):
        with pytest.raises(Exception) as info:
            call()
        texts += _texts(info.value)

    async def poll():
        async with BatchApiAsyncHook(conn_id) as async_hook:
            await async_hook.get_batch("batch-x")

    with pytest.raises(Exception) as info:
        asyncio.run(poll())
    texts += _texts(info.value)
    ok, message = hook.test_connection()
    assert not ok
    return [*texts, message, repr(hook), repr(hook.settings)]


def test_connection_credentials_appear_in_no_message_chain_or_log(monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", _connection(_closed_port()))
    texts = _fail_every_way()
    logs = _logs(caplog, capfd)
    assert "retrying" in logs[0] and any(t.startswith("Cannot reach http://") for t in texts)  # they did run
    assert _leaks([*texts, *logs]) == []


class _Echo(BaseHTTPRequestHandler):
    """A proxy's error page that quotes the request: its path (the host's query rides there) and
    its headers (the key, the extras HttpHook sends as headers)."""

    status = 503

    def _echo(self):
        body = f"<html>{self.status} for {self.path}; headers: {dict(self.headers)}</html>".encode()
        self.send_response(self.status)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _echo

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status", [400, 503])
def test_an_answer_that_quotes_the_request_is_redacted(monkeypatch, caplog, capfd, status):
    caplog.set_level(logging.DEBUG)
    echo = _serve(type("Echo", (_Echo,), {"status": status}))
    try:
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", _connection(echo.server_port))
        texts = _fail_every_way()
    finally:
        echo.shutdown()
    logs = _logs(caplog, capfd)
    assert any(f"HTTP {status}" in t and "headers:" in t for t in texts)  # the bodies were quoted, redacted
    assert _leaks([*texts, *logs]) == []


def test_the_connections_credentials_are_registered_with_airflows_masker(monkeypatch):
    from airflow.sdk.log import redact

    from airflow_batch_provider.hooks.batch_api import BatchApiHook

    own = ("hunter3-Masked", "sekrit-Masked", "sd-key-Masked1", "xtok-Masked")
    monkeypatch.setenv("AIRFLOW_CONN_MASKED", _connection(_closed_port(), *own))
    assert BatchApiHook("masked").settings.api_key == own[2]
    line = redact("a log line quoting " + " and ".join(own))
    assert [secret for secret in own if secret in line] == []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-._~", min_size=6, max_size=24),
                min_size=4, max_size=4, unique=True))
def test_generated_credentials_appear_in_no_message(capfd, values):
    # A prefix no message or log line holds by chance (a timestamp's digits, a word).
    password, token, key, extra = (f"Qz{kind}{value}" for kind, value in zip("ptke", values, strict=True))
    with mock.patch.dict(os.environ, {"AIRFLOW_CONN_GENERATED": _connection(_closed_port(), password, token,
                                                                            key, extra)}):
        texts = _fail_every_way("generated")
    captured = capfd.readouterr()
    assert _leaks([*texts, captured.out, captured.err], (password, token, key, extra)) == []


@given(st.lists(st.text(alphabet=string.ascii_letters + string.digits, min_size=5, max_size=20), min_size=1,
                max_size=3), st.text(max_size=200), st.text(alphabet=string.ascii_letters + string.digits + "-._~",
                                                           min_size=1, max_size=20))
def test_redact_leaves_no_secret_and_no_userinfo_or_query(secrets, around, hidden):
    from airflow_batch_provider.hooks.errors import redact, safe_url

    hidden = f"Qz{hidden}"  # a prefix no other part of the text holds by chance

    text = f"{around}{' '.join(secrets)}{around} at https://u:{hidden}@host:1/p?token={hidden}#{hidden} {around}"
    shown = redact(text, secrets)
    assert [s for s in secrets if s in shown] == []
    assert f":{hidden}@" not in shown and f"token={hidden}" not in shown
    assert hidden not in safe_url(f"https://u:{hidden}@h.example:1/p?token={hidden}#{hidden}")
