"""Both hooks against the emulator over real HTTP: no HTTP mocking anywhere."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.hooks.batch_api import BatchApiAsyncHook, BatchApiHook
from airflow_batch_provider.hooks.errors import (
    BatchApiAuthError,
    BatchApiBadRequestError,
    BatchApiConnectionError,
    BatchApiRateLimitedError,
    BatchApiUpstreamError,
    BatchNotFoundError,
    SubmitOutcomeUnknownError,
)
from airflow_batch_provider.hooks.retry import TransportSetupError
from airflow_batch_provider.hooks.settings import MissingApiKeyError
from airflow_batch_provider.protocol import Classify, Extract, InvalidRequestError, Label, LineEncoder, Summarize

FAST_RETRIES = {"retry_initial_wait": 0.01, "retry_max_wait": 0.05, "retry_max_attempts": 5}
POS = Label("Positive", "Does this text express satisfaction, praise, or approval?")
NEG = Label("Negative", "Does this text express dissatisfaction, complaints, or criticism?")


def lines(n=3, prefix="r"):
    encoder = LineEncoder(Summarize(instructions="Use bullet points."))
    return [encoder.encode(f"{prefix}{i}", f"Row {i} says something. It is fine.") for i in range(n)]


def use(monkeypatch, server, conn_id="batch_api_default", **extra):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(server, **{**FAST_RETRIES, **extra}))


def wait_done(hook, batch_id):
    deadline = time.monotonic() + 30
    while not (status := hook.get_batch(batch_id)).terminal:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return status


@pytest.mark.parametrize("api_version", [1, 2])
def test_submit_poll_and_stream_output(make_emulator, monkeypatch, api_version):
    server = make_emulator(api_version=api_version)
    use(monkeypatch, server)
    hook = BatchApiHook()
    submitted = hook.submit_batch(iter(lines(3)))  # a one-shot generator is fine
    assert submitted.total == 3 and submitted.api_version == api_version and not submitted.terminal
    status = wait_done(hook, submitted.batch_id)
    assert (status.raw_status, status.completed) == ("completed", 3)
    output = list(hook.iter_output(status.batch_id, expected_model="summarize"))
    assert [line.custom_id for line in output] == ["r0", "r1", "r2"]
    assert all(line.ok and line.result.summary.startswith("• ") for line in output)
    assert hook.session is hook.session  # one pooled session for the hook's life


def test_batch_limits_are_enforced_before_anything_is_sent(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server, max_items_per_batch=2)
    with pytest.raises(BatchApiBadRequestError, match="3 requests .* at most 2 requests"):
        BatchApiHook().submit_batch(lines(3))
    use(monkeypatch, server, max_bytes_per_batch=100)
    with pytest.raises(BatchApiBadRequestError, match="max_bytes_per_batch"):
        BatchApiHook().submit_batch(lines(1))
    with pytest.raises(BatchApiBadRequestError, match="no request lines"):
        BatchApiHook().submit_batch([])
    assert server.stats()["requests"].get("submit", 0) == 0


def test_a_server_400_is_typed_and_not_retried(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server)
    with pytest.raises(BatchApiBadRequestError, match="HTTP 400 .*invalid model 'translate'"):
        BatchApiHook().submit_batch([b'{"custom_id":"x","body":{"model":"translate","text":"t"}}'])
    assert server.stats()["requests"]["submit"] == 1


def test_401_fails_at_once_without_retries(make_emulator, monkeypatch):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": server.url, "password": "wrong-key", "extra": FAST_RETRIES}))
    hook = BatchApiHook()
    with pytest.raises(BatchApiAuthError) as info:
        hook.get_batch("batch-x")
    assert info.value.status_code == 401 and "wrong-key" not in str(info.value)
    with pytest.raises(BatchApiAuthError):
        hook.submit_batch(lines(1))
    assert server.stats()["requests"] == {"status": 1, "submit": 1}


def test_404_is_typed(make_emulator, monkeypatch):
    use(monkeypatch, make_emulator())
    with pytest.raises(BatchNotFoundError):
        BatchApiHook().get_batch("batch-unknown")


def test_faults_within_the_retry_budget_are_survived(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server, retry_max_attempts=30, retry_ambiguous_submits=True)
    server.set_faults(rate=0.5, kinds=["429", "500", "502", "503", "504", "reset"], retry_after=0, seed=7)
    hook = BatchApiHook()
    submitted = [hook.submit_batch(lines(20, prefix=f"b{k}-"), idempotency_key=f"job:{k}") for k in range(5)]
    outputs = []
    for batch in submitted:
        wait_done(hook, batch.batch_id)
        outputs += [line.custom_id for line in hook.iter_output(batch.batch_id)]
    stats = server.stats()
    assert sum(stats["faults_injected"].values()) >= 5
    assert stats["batches"] == 5  # no extra batch, though submits were retried
    assert sorted(outputs) == sorted(f"b{k}-{i}" for k in range(5) for i in range(20))


def test_retry_after_is_honoured(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server, retry_initial_wait=0.01, retry_max_wait=5)
    hook = BatchApiHook()
    batch = hook.submit_batch(lines(1))
    server.set_faults(rate=1.0, kinds=["429"], retry_after=1, routes=["status"], max_faults=2)
    started = time.monotonic()
    assert hook.get_batch(batch.batch_id).batch_id == batch.batch_id
    assert time.monotonic() - started >= 1.9  # waited Retry-After (1 s) for each of the two 429s, not 0.01 s
    assert server.stats()["faults_injected"] == {"status:429": 2}


def test_a_hook_of_one_attempt_leaves_the_retry_to_its_caller_and_tells_every_throttle_once(make_emulator,
                                                                                            monkeypatch):
    """The job's threads (submit, wait, load) retry by time: their hooks try once, so a failed request
    frees its thread at once instead of sleeping through backoffs. The budget still hears of every
    429, the last one too, and once each."""
    server = make_emulator()
    use(monkeypatch, server, retry_initial_wait=0.01, retry_max_wait=2, retry_ambiguous_submits=True)
    hook = BatchApiHook()
    batch = hook.submit_batch(lines(1))
    told: list[float] = []
    hook.on_throttled = told.append
    server.set_faults(rate=1.0, kinds=["429"], retry_after=1, routes=["status"], max_faults=2)
    assert hook.get_batch(batch.batch_id).batch_id == batch.batch_id  # retried by the hook: 2 429s, then read
    assert told == [1.0, 1.0] and hook.throttled == 2

    hook.one_attempt, told[:], hook.throttled = True, [], 0
    server.set_faults(rate=1.0, kinds=["429"], retry_after=1, routes=["status"], max_faults=1)
    started = time.monotonic()
    with pytest.raises(BatchApiRateLimitedError):
        hook.get_batch(batch.batch_id)
    assert time.monotonic() - started < 1.0  # not the Retry-After: the caller waits its turn again
    assert told == [1.0] and hook.throttled == 1  # the one not retried here is told too
    server.set_faults(rate=1.0, kinds=["502"], routes=["output", "submit"], max_faults=2)
    with pytest.raises(BatchApiUpstreamError):
        list(hook.iter_output(batch.batch_id))
    with pytest.raises(BatchApiUpstreamError):  # retry_ambiguous_submits: the caller may send it again
        hook.submit_batch(lines(1), idempotency_key="k")
    assert server.stats()["faults_injected"] == {"status:429": 3, "output:502": 1, "submit:502": 1}


def test_a_hook_of_one_attempt_still_refuses_to_resend_an_ambiguous_submit(make_emulator, monkeypatch):
    """Without retry_ambiguous_submits, one POST that may have created a batch is not for the caller
    to resend either: the error says the outcome is unknown."""
    server = make_emulator()
    use(monkeypatch, server)
    hook = BatchApiHook()
    hook.one_attempt = True
    server.set_faults(rate=1.0, kinds=["502"], routes=["submit"], max_faults=1)
    with pytest.raises(SubmitOutcomeUnknownError):
        hook.submit_batch(lines(1), idempotency_key="k")
    assert server.stats()["requests"]["submit"] == 1


def test_output_stream_cut_mid_way_is_resumed_without_duplicates(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server)
    hook = BatchApiHook()
    batch = hook.submit_batch(lines(40))
    wait_done(hook, batch.batch_id)
    server.set_faults(rate=0.5, kinds=["reset", "503"], routes=["output"], seed=3)
    ids = [line.custom_id for line in hook.iter_output(batch.batch_id)]
    assert ids == [f"r{i}" for i in range(40)]
    assert server.stats()["faults_injected"]


# A 503 without the API's "router not configured" body is a proxy's: transient, so it is retried.
@pytest.mark.parametrize(("kind", "error"), [("503", BatchApiUpstreamError), ("502", BatchApiUpstreamError),
                                             ("429", BatchApiRateLimitedError), ("reset", BatchApiConnectionError)])
def test_past_the_retry_budget_a_typed_error_surfaces(make_emulator, monkeypatch, kind, error):
    server = make_emulator()
    use(monkeypatch, server, retry_max_attempts=3)
    server.set_faults(rate=1.0, kinds=[kind], routes=["status"], retry_after=0)
    with pytest.raises(error):
        BatchApiHook().get_batch("batch-x")
    assert server.stats()["requests"]["status"] == 3


def test_an_ambiguous_submit_failure_is_not_resubmitted_by_default(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server)
    server.set_faults(rate=1.0, kinds=["reset_after"], routes=["submit"])
    with pytest.raises(SubmitOutcomeUnknownError, match="a batch may have been created"):
        BatchApiHook().submit_batch(lines(2), idempotency_key="job-1:0")
    assert server.stats()["requests"]["submit"] == 1 and server.stats()["batches"] == 1
    server.set_faults(rate=1.0, kinds=["500"], routes=["submit"])
    with pytest.raises(SubmitOutcomeUnknownError):
        BatchApiHook().submit_batch(lines(2))
    assert server.stats()["requests"]["submit"] == 2


def test_an_ambiguous_submit_is_retried_with_the_same_idempotency_key_when_allowed(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server, retry_ambiguous_submits="true")  # as a URI connection would give it
    server.set_faults(rate=1.0, kinds=["reset_after"], routes=["submit"])
    hook = BatchApiHook()
    import threading
    threading.Timer(0.3, lambda: server.set_faults(rate=0.0)).start()
    use(monkeypatch, server, retry_ambiguous_submits="true", retry_initial_wait=0.2, retry_max_wait=0.5,
        retry_max_attempts=10)
    status = hook.submit_batch(lines(2), idempotency_key="job-9:0")
    stats = server.stats()
    assert stats["requests"]["submit"] >= 2 and stats["batches"] == 1
    assert wait_done(hook, status.batch_id).completed == 2


def test_safe_submit_failures_are_retried_by_default(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server, retry_max_attempts=20)
    # 429 only: a proxy's 503 may come after forwarding, so a submit does not repeat it by default.
    server.set_faults(rate=0.6, kinds=["429"], routes=["submit"], retry_after=0, seed=1)
    BatchApiHook().submit_batch(lines(2))
    assert server.stats()["batches"] == 1 and server.stats()["requests"]["submit"] > 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": f"http://127.0.0.1:{_free_port()}", "password": "k",
         "extra": {**FAST_RETRIES, "retry_max_attempts": 2}}))
    hook = BatchApiHook()
    with pytest.raises(BatchApiConnectionError):
        hook.submit_batch(lines(1))  # never sent: safe to retry, then a typed error
    ok, message = hook.test_connection()
    assert not ok and message.startswith("Cannot reach http://127.0.0.1:")


def test_connection_test_tells_the_failures_apart(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server)
    assert BatchApiHook().test_connection() == (True, f"Connected to {server.url}; the API key was accepted.")
    monkeypatch.setenv("AIRFLOW_CONN_WRONG", json.dumps({"conn_type": "batch_api", "host": server.url,
                                                          "password": "nope"}))
    ok, message = BatchApiHook("wrong").test_connection()
    assert not ok and message.startswith("Wrong API key")
    use(monkeypatch, make_emulator(router=False), conn_id="norouter")
    ok, message = BatchApiHook("norouter").test_connection()
    assert not ok and "batch router is not configured" in message


def test_the_key_falls_back_to_the_environment_or_says_how_to_set_it(make_emulator, monkeypatch):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({"conn_type": "batch_api", "host": server.url}))
    with pytest.raises(MissingApiKeyError, match="set the password .* or the environment variable SCALEDOWN_API_KEY"):
        BatchApiHook().get_batch("x")
    monkeypatch.setenv("SCALEDOWN_API_KEY", server.api_key)
    assert BatchApiHook().test_connection()[0]


def test_the_key_never_appears_in_repr_errors_or_logs(make_emulator, monkeypatch, caplog, capfd):
    server = make_emulator()
    use(monkeypatch, server, retry_max_attempts=2)
    caplog.set_level(logging.DEBUG)
    hook = BatchApiHook()
    server.set_faults(rate=1.0, kinds=["503"])
    with pytest.raises(BatchApiUpstreamError) as info:
        hook.get_batch("x")
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err  # Airflow's structlog writes to the stream
    texts = [repr(hook), str(info.value), repr(info.value), repr(hook.settings), logs]
    assert "retrying" in logs
    assert not [text for text in texts if server.api_key in text]


@pytest.mark.parametrize("host", ["http://[::1", "http://exa mple.com", "http://127.0.0.1:99999"])
def test_a_host_that_is_not_a_usable_url_fails_without_airflows_retries(monkeypatch, host):
    monkeypatch.setenv("AIRFLOW_CONN_BAD_HOST", json.dumps({"conn_type": "batch_api", "host": host,
                                                             "password": "secret-key", "extra": FAST_RETRIES}))
    with pytest.raises(TransportSetupError) as failed:
        BatchApiHook("bad_host").get_batch("b")
    assert isinstance(failed.value, AirflowFailException) and "secret-key" not in str(failed.value)


@pytest.mark.parametrize("legacy", [False, True], ids=["todays-paths", "legacy-paths"])
def test_realtime_endpoints(make_emulator, monkeypatch, caplog, capfd, legacy):
    server = make_emulator()
    use(monkeypatch, server, legacy_realtime_paths=legacy)
    hook = BatchApiHook()
    paths_asked: list[str] = []
    send = hook._json

    def noting_path(method, endpoint, **kwargs):  # a spy: the request still goes to the emulator
        paths_asked.append(endpoint)
        return send(method, endpoint, **kwargs)

    monkeypatch.setattr(hook, "_json", noting_path)
    text = "Apple Inc. reported Q1 revenue of $94.8B. CEO Tim Cook made the announcement on Feb 1st."
    assert [e.text for e in hook.extract(text, {"ceo": "Name of the CEO"}).entities] == ["Tim Cook"]
    assert hook.summarize(text, max_tokens=200).summary.startswith("Apple Inc.")
    classified = hook.classify("I love it, great quality!", [POS, NEG], system_prompt="Product reviews.")
    logs = caplog.text + "".join(capfd.readouterr())  # Airflow's structlog may write to the stream
    assert ("has no system prompt, so it is not sent" in logs) is not legacy
    assert classified.top_label == "Positive"
    assert [label.label for label in classified.labels] == ["Positive", "Negative"]
    assert sum(classified.scores.values()) == pytest.approx(1.0)
    with pytest.raises(InvalidRequestError, match="entities must be a non-empty mapping"):
        hook.extract(text, {})
    assert server.stats()["requests"]["realtime"] == 3  # the refused extracts were never sent
    expected = (["/extract", "/summarization/abstractive", "/classify"] if legacy
                else ["/v1/chat/completions", "/v1/chat/completions", "/v1/scaledown"])
    assert paths_asked == expected
    with pytest.raises(InvalidRequestError, match="cannot be sent as JSON"):  # refused here, not retried
        hook.extract(text, {"ceo": "Name of the CEO"}, threshold=float("nan"))
    assert server.stats()["requests"]["realtime"] == 3


def test_async_hook_polls_with_one_session_and_survives_a_503_burst(make_emulator, monkeypatch):
    server = make_emulator(api_version=2)
    use(monkeypatch, server, retry_max_attempts=10)
    batch = BatchApiHook().submit_batch(lines(2))

    async def poll():
        async with BatchApiAsyncHook() as hook:
            first_client = await hook.client()
            server.set_faults(rate=0.7, kinds=["503", "reset", "500"], routes=["status"], seed=5)
            statuses = [await hook.get_batch(batch.batch_id) for _ in range(5)]
            assert await hook.client() is first_client
            return statuses

    statuses = asyncio.run(poll())
    assert {s.batch_id for s in statuses} == {batch.batch_id} and statuses[0].api_version == 2
    assert server.stats()["faults_injected"]


def test_async_hook_typed_errors(make_emulator, monkeypatch):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BAD", json.dumps({"conn_type": "batch_api", "host": server.url,
                                                        "password": "nope", "extra": FAST_RETRIES}))
    use(monkeypatch, server, retry_max_attempts=2)

    async def run():
        async with BatchApiAsyncHook("bad") as bad:
            with pytest.raises(BatchApiAuthError):
                await bad.get_batch("x")
        async with BatchApiAsyncHook() as hook:
            with pytest.raises(BatchNotFoundError):
                await hook.get_batch("x")
            server.set_faults(rate=1.0, kinds=["502"], routes=["status"])
            with pytest.raises(BatchApiUpstreamError):
                await hook.get_batch("x")

    asyncio.run(run())
    assert server.stats()["requests"]["status"] == 1 + 1 + 2


def test_extract_and_classify_requests_build_from_the_same_types(make_emulator, monkeypatch):
    server = make_emulator()
    use(monkeypatch, server)
    hook = BatchApiHook()
    body = [LineEncoder(Extract({"ceo": "Name of the CEO"})).encode("e", "CEO Tim Cook spoke."),
            LineEncoder(Classify([POS, NEG])).encode("c", "Awful, it broke.")]
    batch = wait_done(hook, hook.submit_batch(body).batch_id)
    results = {line.custom_id: line.result for line in hook.iter_output(batch.batch_id)}
    assert results["e"].entities[0].text == "Tim Cook" and results["c"].top_label == "Negative"


def test_the_session_is_httphooks_without_settings_or_transport_extras_as_headers(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
        "conn_type": "batch_api", "host": "api.example.test", "password": "sk-test",
        "extra": {"verify": False, "trust_env": False, "retry_max_attempts": 3, "read_timeout": 5}}))
    hook = BatchApiHook()
    session = hook.session
    assert session.headers["x-api-key"] == "sk-test" and session.auth is None
    assert not {"retry_max_attempts", "read_timeout", "verify", "trust_env"} & set(session.headers)
    # Transport extras are resolved once (hooks/transport.py) and given per request; the session does
    # not read the environment again.
    assert session.trust_env is False and hook.settings.transport.verify is False
    assert hook.url_from_endpoint("/v1/batches/x") == "https://api.example.test/v1/batches/x"  # https by default
    assert hook.settings.retry_max_attempts == 3 and hook.settings.read_timeout == 5
