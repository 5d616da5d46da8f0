"""The one retry rule (hooks/retry.py), status by status, against the emulator over real HTTP: for a
POST /v1/batches, whether the hook retried, whether the submission reads it as "surely not
created", and the error raised; for GET status and output (both hooks), retried or failed at once;
and the wait's trigger, which stops on what the rule does not retry. docs/limits-and-retries.md
holds the same table, and a test here keeps the two in step."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.hooks.batch_api import BatchApiAsyncHook, BatchApiHook
from airflow_batch_provider.hooks.errors import (
    BatchApiAuthError,
    BatchApiBadRequestError,
    BatchApiConflictError,
    BatchApiError,
    BatchApiRateLimitedError,
    BatchApiRedirectError,
    BatchApiUpstreamError,
    BatchNotFoundError,
    BatchRouterUnavailableError,
    SubmitOutcomeUnknownError,
)
from airflow_batch_provider.hooks.retry import RULES, rule_for
from airflow_batch_provider.job.submission import surely_not_created
from airflow_batch_provider.protocol import LineEncoder, Summarize

ATTEMPTS = 3
ROUTER = "503 router"  # the API's own 503: EmulatorConfig(router=False) answers it, as the spec words it

# status: (a POST so answered surely made no batch, POST attempts, error of the POST, attempts of an
# idempotent POST (retry_ambiguous_submits), attempts of a GET, error of the GET, final for Airflow too)
R, N = ATTEMPTS, 1
EXPECTED = {
    "301": (False, N, BatchApiRedirectError, N, N, BatchApiRedirectError, True),
    "302": (False, N, BatchApiRedirectError, N, N, BatchApiRedirectError, True),
    "303": (False, N, BatchApiRedirectError, N, N, BatchApiRedirectError, True),
    "307": (True, N, BatchApiRedirectError, N, N, BatchApiRedirectError, True),
    "308": (True, N, BatchApiRedirectError, N, N, BatchApiRedirectError, True),
    "400": (True, N, BatchApiBadRequestError, N, N, BatchApiBadRequestError, True),
    "401": (True, N, BatchApiAuthError, N, N, BatchApiAuthError, True),
    "403": (True, N, BatchApiAuthError, N, N, BatchApiAuthError, True),
    "404": (True, N, BatchNotFoundError, N, N, BatchNotFoundError, False),
    "409": (False, N, SubmitOutcomeUnknownError, R, R, BatchApiConflictError, False),
    "413": (True, N, BatchApiBadRequestError, N, N, BatchApiBadRequestError, True),
    "422": (True, N, BatchApiBadRequestError, N, N, BatchApiBadRequestError, True),
    "429": (True, R, BatchApiRateLimitedError, R, R, BatchApiRateLimitedError, False),
    "500": (False, N, SubmitOutcomeUnknownError, R, R, BatchApiUpstreamError, False),
    "502": (False, N, SubmitOutcomeUnknownError, R, R, BatchApiUpstreamError, False),
    "503": (False, N, SubmitOutcomeUnknownError, R, R, BatchApiUpstreamError, False),  # a proxy's
    "504": (False, N, SubmitOutcomeUnknownError, R, R, BatchApiUpstreamError, False),
    ROUTER: (True, N, BatchRouterUnavailableError, N, N, BatchRouterUnavailableError, False),
}


def _server(make_emulator, monkeypatch, status: str, route: str, **extra):
    server = make_emulator(router=status != ROUTER)
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(
        server, retry_max_attempts=ATTEMPTS, retry_initial_wait=0.01, retry_max_wait=0.02, **extra))
    if status != ROUTER:
        server.set_faults(rate=1.0, kinds=[status], routes=[route], retry_after=0)
    return server


def _line() -> bytes:
    return LineEncoder(Summarize()).encode("r0", "Row 0 says something. It is fine.")


def test_the_table_covers_every_status_the_rule_knows():
    assert set(EXPECTED) - {ROUTER} == {str(status) for status in RULES}


@pytest.mark.parametrize("status", list(EXPECTED))
def test_a_submit(make_emulator, monkeypatch, status):
    not_created, attempts, error, _, _, _, final = EXPECTED[status]
    server = _server(make_emulator, monkeypatch, status, "submit")
    with pytest.raises(BatchApiError) as info:
        BatchApiHook().submit_batch([_line()], idempotency_key="job-1:0")
    assert type(info.value) is error
    assert server.stats()["requests"]["submit"] == attempts
    assert surely_not_created(info.value) is not_created
    assert isinstance(info.value, AirflowFailException) is final
    assert server.stats()["batches"] == 0  # every answer here came before anything was made


@pytest.mark.parametrize("status", list(EXPECTED))
def test_an_idempotent_submit(make_emulator, monkeypatch, status):
    _, _, _, attempts, _, error, _ = EXPECTED[status]
    server = _server(make_emulator, monkeypatch, status, "submit", retry_ambiguous_submits=True)
    with pytest.raises(BatchApiError) as info:
        BatchApiHook().submit_batch([_line()], idempotency_key="job-1:0")
    assert type(info.value) is error  # nothing ambiguous left: the hook says what the server said
    assert server.stats()["requests"]["submit"] == attempts


@pytest.mark.parametrize("route", ["status", "output"])
@pytest.mark.parametrize("status", list(EXPECTED))
def test_a_read(make_emulator, monkeypatch, status, route):
    _, _, _, _, attempts, error, final = EXPECTED[status]
    server = _server(make_emulator, monkeypatch, status, route)
    hook = BatchApiHook()
    with pytest.raises(BatchApiError) as info:
        hook.get_batch("batch-x") if route == "status" else list(hook.iter_output("batch-x"))
    assert type(info.value) is error
    assert server.stats()["requests"][route] == attempts
    assert isinstance(info.value, AirflowFailException) is final


@pytest.mark.parametrize("status", list(EXPECTED))
def test_a_read_by_the_async_hook(make_emulator, monkeypatch, status):
    _, _, _, _, attempts, error, _ = EXPECTED[status]
    server = _server(make_emulator, monkeypatch, status, "status")

    async def poll():
        async with BatchApiAsyncHook() as hook:
            await hook.get_batch("batch-x")

    with pytest.raises(BatchApiError) as info:
        asyncio.run(poll())
    assert type(info.value) is error
    assert server.stats()["requests"]["status"] == attempts


def test_the_apis_own_503_names_what_to_fix(make_emulator, monkeypatch):
    _server(make_emulator, monkeypatch, ROUTER, "submit")
    with pytest.raises(BatchRouterUnavailableError, match="batch router is not configured.*Check that the "
                                                          "connection's host is the batch API"):
        BatchApiHook().submit_batch([_line()])


@pytest.mark.parametrize(("body", "router"), [
    ('{"detail": "batch router is not configured"}', True),
    ('{"error": {"code": "unavailable", "message": "Batch router is not configured."}}', True),
    ('{"detail": "injected fault: HTTP 503"}', False),
    ("<html><h1>503 Service Unavailable</h1>batch router is not configured</html>", False),  # not the API's JSON
    ("", False),
    ("no healthy upstream", False),
])
def test_who_sent_a_503(body, router):
    assert (rule_for(503, body).error is BatchRouterUnavailableError) is router
    assert rule_for(503, body).not_created is router


@pytest.mark.parametrize(("status", "like"), [(300, 301), (305, 301), (405, 400), (418, 400), (501, 500), (520, 500)])
def test_a_status_without_a_rule_of_its_own_takes_its_class(status, like):
    assert rule_for(status) == RULES[like]


def test_the_docs_table_is_the_rule():
    text = (Path(__file__).parents[2] / "docs" / "limits-and-retries.md").read_text()
    rows = re.findall(r"^\| (\d{3}[^|]*) \| (yes|no) \| (yes|no|idempotent)\b[^|]* \| (yes|no)\b[^|]* \| `(\w+)`",
                      text, re.M)
    documented = {ROUTER if "router" in cell else cell[:3]: row for cell, *row in rows}
    assert len(documented) == len(rows)  # one row per status
    expected = {str(status): rule for status, rule in RULES.items()} | {ROUTER: rule_for(503, '{"detail": '
                                                                        '"batch router is not configured"}')}
    assert set(documented) == set(expected)
    for status, rule in expected.items():
        created, retry, final, error = documented[status]
        assert created == ("no" if rule.not_created else "yes"), status
        assert retry == ("yes" if rule.retry and rule.not_created else "idempotent" if rule.retry else "no"), status
        assert (final == "yes") is rule.fail_fast, status
        assert error == rule.error.__name__, status


# -- the wait: the trigger stops on what the rule does not retry, and counts the rest ----------------------

def _job(make_emulator, monkeypatch, tmp_path):
    from tests.integration.test_trigger_and_sensor import submit

    server = make_emulator()
    return server, submit(server, monkeypatch, tmp_path, rows=20, per_batch=20, retry_max_attempts=1,
                          retry_total_timeout=1)


@pytest.mark.parametrize(("status", "fails_fast"), [("401", True), ("404", False), (ROUTER, False)])
def test_a_wait_that_cannot_recover_fails_without_airflows_retries_unless_a_later_try_may(
        make_emulator, monkeypatch, tmp_path, status, fails_fast):
    """A refused key fails every try alike. A batch just submitted that the API does not know yet (an
    API may take a moment to show it) and the API's batch router being unconfigured (a deployment's
    state) may be found otherwise by a later try."""
    from airflow_batch_provider.job.waiting import BatchPollingError
    from airflow_batch_provider.triggers.batch import BatchTrigger, check_event
    from tests.integration.test_trigger_and_sensor import events

    server, job = _job(make_emulator, monkeypatch, tmp_path)
    if status == ROUTER:
        server = make_emulator(router=False)
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server, retry_max_attempts=1))
    else:
        server.set_faults(rate=1.0, kinds=[status], routes=["status"], retry_after=0)
    [event] = events(BatchTrigger(job=job, poll_interval=0.01, deadline=time.time() + 60, max_concurrency=1))
    with pytest.raises(BatchPollingError, match="will not recover") as failed:
        check_event(event)
    assert isinstance(failed.value, AirflowFailException) is fails_fast


@pytest.mark.parametrize(("status", "gives_up_at_once"), [("400", True), ("401", True), (ROUTER, True),
                                                          ("503", False), ("409", False)])
def test_the_trigger_stops_on_what_the_rule_does_not_retry(make_emulator, monkeypatch, tmp_path, status,
                                                           gives_up_at_once):
    from airflow_batch_provider.triggers.batch import BatchTrigger
    from tests.integration.test_trigger_and_sensor import events

    server, job = _job(make_emulator, monkeypatch, tmp_path)
    if status == ROUTER:  # the same connection now names a deployment without a batch router
        server = make_emulator(router=False)
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server, retry_max_attempts=1))
    else:
        server.set_faults(rate=1.0, kinds=[status], routes=["status"], retry_after=0)
    before = server.stats()["requests"].get("status", 0)
    [event] = events(BatchTrigger(job=job, poll_interval=0.01, max_poll_interval=0.05, deadline=time.time() + 60,
                                  max_concurrency=1))
    polls = server.stats()["requests"]["status"] - before
    assert event["status"] == "error"
    if gives_up_at_once:
        assert polls == 1 and "will not recover" in event["message"]
    else:  # asked again until the connection's retry_total_timeout (1 s) had passed without an answer
        assert polls > 3 and "no request of the job has succeeded for" in event["message"]
