"""Hostile inputs and hostile networks: each test here failed before its fix.

SQL identifiers from template fields, API keys in messages and across redirects, malformed output,
Retry-After edge cases, TLS and proxy failures, errors that retrying cannot fix.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import psycopg2
import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import given, settings, strategies as st

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.hooks.batch_api_async import BatchApiAsyncHook
from airflow_batch_provider.hooks.errors import BatchApiAuthError, BatchApiConnectionError, BatchApiRedirectError
from airflow_batch_provider.hooks.retry import parse_retry_after
from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator, InvalidInputError
from airflow_batch_provider.protocol import Summarize
from airflow_batch_provider.protocol.output import OutputReader
from tests.conftest import POSTGRES_DSN
from tests.state_store import DictStateStore

KEY = "sk-hostile-0123456789"


# -- 1. SQL in the incremental lookup ------------------------------------------------------------------

@pytest.fixture
def pg(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server, retry_initial_wait=0.01))
    monkeypatch.setenv("AIRFLOW_CONN_WH", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute('DROP TABLE IF EXISTS pwned; DROP TABLE IF EXISTS "Hostile_Labels"')
    return server


def submit(tmp_path, frame, **kwargs):
    return DataFrameToBatchOperator(task_id="s", dataframe=frame, id_column="review_id", text_column="body",
                                    request=Summarize(), manifest_dir=str(tmp_path), skip_landed_conn_id="wh",
                                    **kwargs).execute({"task_state_store": DictStateStore()})


def reviews(n):
    return pd.DataFrame({"review_id": range(n), "body": [f"Review {i} is fine." for i in range(n)]})


def test_a_table_name_cannot_run_sql(pg, tmp_path):
    hostile = ("(SELECT 'x' AS \"review_id\", 'y' AS request_fingerprint) t; CREATE TABLE pwned(x int); "
               "COMMIT; SELECT 'x','y' --")
    try:
        submit(tmp_path, reviews(3), skip_landed_table=hostile)
    except InvalidInputError:
        pass
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('pwned')")
        assert cur.fetchone() == (None,)


def test_a_mixed_case_table_the_load_created_is_found(pg, tmp_path):
    from tests.integration.test_load_operators import submit as submit_and_wait

    job = submit_and_wait(tmp_path, reviews(20), request=Summarize())
    BatchOutputToTableOperator(task_id="l", job=job, conn_id="wh", table="Hostile_Labels", mode="upsert").execute({})
    before = pg.stats()["items"]
    again = submit(tmp_path, reviews(20), skip_landed_table="Hostile_Labels", allow_empty=True)
    assert again["skipped_rows"] == 20 and pg.stats()["items"] == before  # nothing paid for again
    with pytest.raises(InvalidInputError, match="'hostile_labels' does not exist, but 'Hostile_Labels' does"):
        submit(tmp_path, reviews(20), skip_landed_table="hostile_labels")
    with pytest.raises(InvalidInputError, match="has no column 'ticket_id'"):
        DataFrameToBatchOperator(task_id="s", dataframe=reviews(3).rename(columns={"review_id": "ticket_id"}),
                                 id_column="ticket_id", text_column="body", request=Summarize(),
                                 manifest_dir=str(tmp_path), skip_landed_conn_id="wh",
                                 skip_landed_table="Hostile_Labels").execute({"task_state_store": DictStateStore()})
    assert pg.stats()["items"] == before


# -- 2. and 3. the API key: redirects, whitespace, messages ---------------------------------------------

class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict] = []
    redirect_to: str | None = None

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).seen.append(dict(self.headers))
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"batch_id": "b1", "status": "completed", "total_count": 0}')

    def log_message(self, *args):
        pass


def _serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_key_never_follows_a_redirect_to_another_host(monkeypatch):
    other = type("Other", (_Recorder,), {"seen": [], "redirect_to": None})
    redirecting = type("Redirecting", (_Recorder,), {"seen": []})
    elsewhere, api = _serve(other), None
    try:
        redirecting.redirect_to = f"http://127.0.0.1:{elsewhere.server_port}"
        api = _serve(redirecting)
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
            "conn_type": "batch_api", "host": f"http://127.0.0.1:{api.server_port}", "password": KEY}))
        with pytest.raises(BatchApiRedirectError, match="redirects are not followed"):
            BatchApiHook().get_batch("b1")

        async def poll():
            async with BatchApiAsyncHook() as hook:
                return await hook.get_batch("b1")

        with pytest.raises(BatchApiRedirectError):
            asyncio.run(poll())
        assert len(redirecting.seen) == 2 and other.seen == []  # asked twice, never followed
    finally:
        for server in (elsewhere, api):
            if server:
                server.shutdown()


def test_a_key_with_surrounding_whitespace_is_stripped_and_never_echoed(make_emulator, monkeypatch):
    server = make_emulator(api_key=KEY)
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": server.url, "password": f"  {KEY}\n"}))
    assert BatchApiHook().test_connection()[0] is True
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": server.url, "password": f"{KEY[:5]}\n{KEY[5:]}"}))
    ok, message = BatchApiHook().test_connection()
    assert not ok and "cannot carry" in message and KEY[5:] not in message and KEY[:5] not in message
    with pytest.raises(AirflowFailException) as refused:
        BatchApiHook().get_batch("x")
    assert KEY[5:] not in str(refused.value)


def test_a_key_from_the_environment_is_masked_in_logs(make_emulator, monkeypatch):
    from airflow.sdk._shared.secrets_masker import redact

    key = "sk-env-only-9f8e7d6c5b4a"
    server = make_emulator(api_key=key)
    monkeypatch.setenv("SCALEDOWN_API_KEY", key)
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({"conn_type": "batch_api", "host": server.url}))
    assert BatchApiHook().test_connection()[0] is True
    assert key not in str(redact(f"the key is {key}"))


def test_a_refused_key_names_the_connection(make_emulator, monkeypatch):
    server = make_emulator(api_key=KEY)
    monkeypatch.setenv("AIRFLOW_CONN_MY_API", json.dumps({"conn_type": "batch_api", "host": server.url,
                                                          "password": "wrong"}))
    with pytest.raises(BatchApiAuthError, match="connection 'my_api'"):
        BatchApiHook("my_api").get_batch("x")


# -- 4. output lines that cannot be parsed ------------------------------------------------------------

@pytest.mark.parametrize("raw", [b'{"custom_id": "a", "x": "\xff\xfe"}', b"[" * 100_000, b'{"custom_id": ' + b"[" * 5000,
                                 b"\xc3\x28", b"null", b'"just a string"'])
def test_an_unparseable_output_line_is_counted_never_raised(raw):
    reader = OutputReader("summarize")
    lines = reader.feed(raw + b"\n" + b'{"custom_id": "ok-1", "error": {"code": "x", "message": "y"}}\n')
    assert [line.custom_id for line in lines] == ["", "ok-1"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_fuzz_the_output_reader_never_raises_and_accounts_for_every_line(data, chunk_size):
    reader = OutputReader("classify")
    lines = []
    for start in range(0, len(data), chunk_size):
        lines += reader.feed(data[start:start + chunk_size])
    lines += reader.close()
    non_blank = [raw for raw in data.split(b"\n") if raw.strip()]
    assert len(lines) == len(non_blank)  # every line is parsed or counted as unattributable
    assert all(isinstance(line.custom_id, str) for line in lines)


def test_a_resumed_stream_in_another_order_yields_each_line_once():
    first = [json.dumps({"custom_id": f"r{i}", "error": {"code": "c", "message": "m"}}).encode() for i in range(4)]
    reader = OutputReader()
    got = [line.custom_id for line in reader.feed(b"\n".join(first[:2]) + b"\n")]
    reader.restart()
    got += [line.custom_id for line in reader.feed(b"\n".join(reversed(first)) + b"\n")]
    assert sorted(got) == ["r0", "r1", "r2", "r3"]


# -- 6. Retry-After ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [("²", None), ("3", 3.0), (" 7 ", 7.0), ("-1", None), ("1e3", None),
                                                ("soon", None)])
def test_retry_after_forms(value, seconds):
    assert parse_retry_after(value) == seconds


def test_retry_after_on_503_is_honoured_and_capped(make_emulator, monkeypatch, capfd):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(
        server, retry_initial_wait=0.01, retry_max_wait=0.3, retry_max_attempts=2))
    server.set_faults(rate=1.0, kinds=["503"], retry_after=30, routes=["status"])
    import time

    started = time.monotonic()
    with pytest.raises(Exception, match="503"):
        BatchApiHook().get_batch("x")
    assert time.monotonic() - started < 5  # 30 s asked, 0.3 s waited
    assert "waiting retry_max_wait=0 s instead" in "".join(capfd.readouterr())


def test_retry_after_beyond_the_budget_gives_up_at_once(make_emulator, monkeypatch, capfd):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(
        server, retry_initial_wait=0.01, retry_total_timeout=10, retry_max_attempts=5))
    server.set_faults(rate=1.0, kinds=["429"], retry_after=60, routes=["status"])
    with pytest.raises(Exception, match="429"):
        BatchApiHook().get_batch("x")
    assert "more than the 10 s left of retry_total_timeout; giving up now" in "".join(capfd.readouterr())
    assert server.stats()["requests"]["status"] == 1


# -- 7. TLS and proxy failures: not sent, not transient --------------------------------------------------

def test_a_tls_failure_is_not_retried_and_names_the_host(monkeypatch):
    plain = _serve(_Recorder)  # speaks HTTP; the hook speaks TLS to it
    try:
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
            "conn_type": "batch_api", "host": f"https://127.0.0.1:{plain.server_port}", "password": KEY,
            "extra": {"retry_total_timeout": 600}}))
        import time

        started = time.monotonic()
        with pytest.raises(BatchApiConnectionError, match=rf"cannot reach https://127.0.0.1:{plain.server_port}: "
                                                         "the TLS handshake failed"):
            BatchApiHook().get_batch("x")
        with pytest.raises(BatchApiConnectionError, match="the TLS handshake failed"):
            BatchApiHook().submit_batch([b'{"custom_id": "a"}'])  # not "a batch may have been created"

        async def poll():
            async with BatchApiAsyncHook() as hook:
                return await hook.get_batch("x")

        with pytest.raises(BatchApiConnectionError, match="the TLS handshake failed"):
            asyncio.run(poll())
        assert time.monotonic() - started < 10
    finally:
        plain.shutdown()


def test_a_proxy_that_cannot_be_reached_is_named_and_retried_like_a_host(monkeypatch, caplog):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
        "conn_type": "batch_api", "host": "https://api.example.invalid", "password": KEY,
        "extra": {"retry_max_attempts": 2, "retry_initial_wait": 0.01, "retry_max_wait": 0.01}}))
    with pytest.raises(BatchApiConnectionError, match="the proxy for https://api.example.invalid failed: it could "
                                                      "not be reached") as raised:
        BatchApiHook().get_batch("x")
    assert not isinstance(raised.value, AirflowFailException)  # a proxy restarting comes back: the task retries


# -- 8. errors retrying cannot fix fail without retries --------------------------------------------------

def test_errors_retrying_cannot_fix_are_fail_exceptions(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({"conn_type": "batch_api", "host": server.url}))
    monkeypatch.delenv("SCALEDOWN_API_KEY", raising=False)
    with pytest.raises(AirflowFailException, match="no API key"):
        BatchApiHook().get_batch("x")
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    with pytest.raises(AirflowFailException, match="dataframe must be a pandas DataFrame"):
        DataFrameToBatchOperator(task_id="s", dataframe=[1, 2], id_column="a", text_column="b",
                                 request=Summarize(), manifest_dir=str(tmp_path)).execute({})
    from airflow_batch_provider.destinations.table import TableSchemaError

    assert issubclass(TableSchemaError, AirflowFailException)


# -- 9. what the UI shows of a DataFrame ------------------------------------------------------------------

def test_a_rendered_dataframe_shows_its_shape_not_its_rows():
    from airflow.serialization.helpers import serialize_template_field

    operator = DataFrameToBatchOperator(task_id="s", dataframe=pd.DataFrame({"id": [1], "body": ["Jane Doe, 12 Elm St"]}),
                                        id_column="id", text_column="body", request=Summarize())
    operator.render_template_fields({})
    shown = serialize_template_field(operator.dataframe, "dataframe")
    assert shown == "DataFrame: 1 rows × 2 columns (id, body)" and "Jane" not in json.dumps(shown)
    assert next(operator.iter_record_batches()).num_rows == 1



# -- 4. and 5. the emulator as a server under hostile input ------------------------------------------------

def _post(server, path, body, **headers):
    import requests

    return requests.post(server.url + path, data=body, timeout=60,
                         headers={"x-api-key": server.api_key, "content-type": "application/jsonl", **headers})


LINE = b'{"custom_id": "%s", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "summarize", "text": "Fine."}}\n'


@pytest.mark.parametrize(("body", "words"), [
    (LINE % b"a" + b'{"custom_id": "b", "x": "\xff\xfe"}\n', "line 2: malformed JSON"),
    (LINE % b"a" + b"[" * 50_000 + b"\n", "line 2: malformed JSON"),
    (LINE % b"a" + LINE % b"a", "line 2: custom_id 'a' appears twice"),
])
def test_the_emulator_refuses_bad_submissions_with_400_naming_the_line(make_emulator, body, words):
    server = make_emulator()
    response = _post(server, "/v1/batches", body)
    assert response.status_code == 400 and words in response.json()["detail"]
    assert server.stats()["batches"] == 0


def test_the_emulator_caps_request_bodies(make_emulator):
    server = make_emulator(max_body_bytes=1000)
    assert _post(server, "/v1/batches", LINE % b"a" * 1).status_code == 200
    big = b"".join(LINE % str(i).encode() for i in range(50))
    assert _post(server, "/v1/batches", big).status_code == 413
    assert _post(server, "/summarization/abstractive", json.dumps({"text": "x" * 5000})).status_code == 413


def test_an_idempotency_key_reused_with_another_body_is_422(make_emulator):
    server = make_emulator()
    first = _post(server, "/v1/batches", LINE % b"a", **{"Idempotency-Key": "k1"})
    again = _post(server, "/v1/batches", LINE % b"a", **{"Idempotency-Key": "k1"})
    other = _post(server, "/v1/batches", LINE % b"b", **{"Idempotency-Key": "k1"})
    assert first.json() == again.json() and other.status_code == 422 and "different body" in other.json()["detail"]


def test_a_wrong_key_is_refused_before_any_fault_is_drawn(make_emulator):
    import requests

    server = make_emulator()
    server.set_faults(rate=1.0, kinds=["500"], routes=["status"])
    response = requests.get(server.url + "/v1/batches/x", headers={"x-api-key": "wrong"}, timeout=10)
    assert response.status_code == 401 and server.stats()["faults_injected"] == {}


@pytest.mark.parametrize(("path", "settings_"), [
    ("/_emulator/faults", {"rate": "high"}), ("/_emulator/faults", {"kinds": "500"}),
    ("/_emulator/faults", {"skip_first": 1.5}), ("/_emulator/capacity", {"items_per_second": "fast"}),
    ("/_emulator/capacity", {"start_delay": -1}),
])
def test_control_routes_check_types(make_emulator, path, settings_):
    import requests

    server = make_emulator()
    response = requests.put(server.url + path, json=settings_, headers={"x-api-key": server.api_key}, timeout=10)
    assert response.status_code == 422
    assert requests.get(server.url + "/_emulator/stats", headers={"x-api-key": server.api_key}, timeout=10).ok


def test_the_extract_engine_is_linear_in_the_text():
    """24 KB of "Aa Aa …" took 4.4 s (a quadratic regex and a quadratic overlap check). Measured as a
    ratio, not a time: four times the text must cost well under sixteen times as much."""
    import time

    from airflow_batch_provider.emulator import engines

    def cost(n):
        started = time.perf_counter()
        engines.run({"model": "extract", "text": "Aa " * n, "entities": {"org": "o", "product": "p", "person": "x"}})
        return time.perf_counter() - started

    cost(1000)
    small, large = min(cost(4000) for _ in range(3)), min(cost(16000) for _ in range(3))
    assert large / small < 8, (small, large)


def test_realtime_work_does_not_stall_other_requests(make_emulator):
    """While one /extract computes for a second or more, other requests are answered at once."""
    import time

    import requests

    server = make_emulator()
    text = "The Acme Corp. sold 3 iPhone 15 Pro to Dr. Jane Smith in London on May 3rd for $1,200. " * 40_000
    entities = {"org": "o", "product": "p", "person": "x", "place": "l", "money": "m", "date": "d"}
    finished = {}

    def slow():
        started = time.monotonic()
        requests.post(server.url + "/extract", json={"text": text, "entities": entities},
                      headers={"x-api-key": server.api_key}, timeout=120).raise_for_status()
        finished["took"] = time.monotonic() - started

    worker = threading.Thread(target=slow)
    worker.start()
    waits = []
    while worker.is_alive():
        started = time.monotonic()
        requests.get(server.url + "/_emulator/stats", headers={"x-api-key": server.api_key}, timeout=120)
        waits.append(time.monotonic() - started)
        time.sleep(0.05)
    worker.join()
    assert len(waits) >= 3 and max(waits) < finished["took"] / 2, (waits, finished)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_the_emulators_jsonl_decoder_only_accepts_or_refuses_with_400(data):
    from airflow_batch_provider.emulator.batch_routes import _check_line
    from airflow_batch_provider.emulator.state import ApiError
    from airflow_batch_provider.protocol import LineDecoder, LineSplitter

    decoder, custom_ids, splitter = LineDecoder(), set(), LineSplitter()
    for raw in splitter.feed(data) + splitter.close():
        try:
            kept = _check_line(decoder, raw, custom_ids)
        except ApiError as exc:
            assert exc.status == 400 and exc.detail.startswith("line ")
            break
        assert kept is None or isinstance(kept, bytes)
