"""Paid for once, whatever fails: the submission ledger against the emulator over HTTP.

Most tests run against an emulator that *ignores* Idempotency-Key, so every POST that reaches it
creates a batch: its batch count is exactly what a user would be billed.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.hooks.errors import (
    BatchApiBadRequestError,
    BatchApiUpstreamError,
    SubmitOutcomeUnknownError,
)
from airflow_batch_provider.hooks.settings import MissingApiKeyError
from airflow_batch_provider.job.ledger import JOB_KEY
from airflow_batch_provider.job.manifest import read_manifest
from airflow_batch_provider.job.submission import SubmitGaveUpError
from airflow_batch_provider.operators.submit import (
    AmbiguousSubmissionError,
    DataFrameToBatchOperator,
    InputChangedError,
    InvalidInputError,
)
from airflow_batch_provider.protocol import BatchStatus, Classify, Label
from tests.state_store import DictStateStore

CLASSIFY = Classify([Label("positive", "Does the review praise the product?")])


def reviews(n):
    return pd.DataFrame({"review_id": range(n), "body": [f"Review {i}: the kettle is great." for i in range(n)]})


class CountingStore(DictStateStore):
    """The task_state_store interface, counting calls; ``crash_at`` makes the n-th write (1-based)
    die before it lands, like a worker killed at that moment."""

    def __init__(self, crash_at: int | None = None):
        super().__init__()
        self.gets = self.sets = 0
        self.crash_at = crash_at

    def get(self, key, default=None):
        self.gets += 1
        return super().get(key, default)

    def set(self, key, value, **kwargs):
        self.sets += 1
        if self.crash_at is not None and self.sets == self.crash_at:
            raise Crash(f"killed at write {self.sets}")
        super().set(key, value, **kwargs)


class Crash(BaseException):
    """Not an Exception: nothing in the provider may catch it, as nothing catches SIGKILL."""


class FakeTI:
    dag_id, task_id, run_id, map_index = "dag", "submit", "manual__1", -1


@pytest.fixture
def billing(make_emulator, monkeypatch):
    """An emulator that bills every submission (ignores Idempotency-Key); default connection, with
    quick retries: a chunk refused again and again is given up on after a second (retry_total_timeout)."""
    server = make_emulator(ignore_idempotency_key=True)
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(
        server, retry_initial_wait=0.01, retry_max_wait=0.05, retry_total_timeout=1))
    return server


@pytest.fixture
def honouring(make_emulator, monkeypatch):
    """An emulator that honours Idempotency-Key, and a connection that says so."""
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(
        server, retry_initial_wait=0.01, retry_max_wait=0.05, retry_total_timeout=1, retry_ambiguous_submits=True))
    return server


def op(tmp_path, n=1000, **kwargs):
    kwargs.setdefault("max_items_per_batch", 50)
    return DataFrameToBatchOperator(task_id="submit", dataframe=reviews(n), id_column="review_id", text_column="body",
                                    request=CLASSIFY, manifest_dir=str(tmp_path / "jobs"), **kwargs)


def run(operator, store):
    return operator.execute({"task_state_store": store, "ti": FakeTI()})


def test_accepted_siblings_are_recorded_when_one_chunk_fails(billing, tmp_path, monkeypatch):
    """Issue reproduction 1: chunk 0 fails ambiguously while chunks 1-3 are accepted."""
    real_submit = BatchApiHook.submit_batch
    siblings_sent, first_failed = threading.Semaphore(0), threading.Event()

    def submit(self, lines, *, idempotency_key, **kwargs) -> BatchStatus:
        if idempotency_key.endswith(":0"):  # fails once its three siblings are on the wire
            assert all(siblings_sent.acquire(timeout=30) for _ in range(3))
            first_failed.set()
            raise SubmitOutcomeUnknownError("the answer was lost", endpoint="POST /v1/batches")
        siblings_sent.release()
        assert first_failed.wait(timeout=30)  # ... and they are answered only after it failed
        return real_submit(self, lines, idempotency_key=idempotency_key, **kwargs)

    monkeypatch.setattr(BatchApiHook, "submit_batch", submit)
    store = DictStateStore()
    with pytest.raises(AmbiguousSubmissionError, match=r"chunk 0 \(Idempotency-Key job-\w+:0: 50 rows, ids '0' to '49'\)"):
        run(op(tmp_path, 200, max_concurrent_submits=4), store)
    window = store["scaledown:window:0"]
    assert window["in_flight"] == [0]
    assert sorted(window["accepted"]) == ["1", "2", "3"] and billing.stats()["batches"] == 3


def test_an_ambiguous_chunk_is_not_resent_by_a_retry_unless_the_user_says_so(billing, tmp_path):
    """Issue reproduction 2, on a server that ignores keys: the default never pays twice."""
    billing.set_faults(rate=1.0, kinds=["reset_after"], routes=["submit"], skip_first=3)
    store = DictStateStore()
    with pytest.raises(AmbiguousSubmissionError, match="chunk 3 "):
        run(op(tmp_path, max_concurrent_submits=1), store)
    billing.set_faults(rate=0.0)
    assert billing.stats()["batches"] == 4  # chunk 3 was created, its answer lost
    before = billing.stats()["requests"]["submit"]
    with pytest.raises(AmbiguousSubmissionError, match="an earlier try ended while they were in flight"):
        run(op(tmp_path, max_concurrent_submits=1), store)
    assert billing.stats()["requests"]["submit"] == before  # nothing sent at all
    reference = run(op(tmp_path, max_concurrent_submits=1, on_ambiguous="resubmit"), store)
    assert billing.stats()["batches"] == 21  # the user chose to pay for chunk 3 again
    assert len({b.batch_id for b in read_manifest(reference)[0].batches}) == 20


def test_with_the_flag_a_retry_resends_with_the_same_key_and_pays_once(honouring, tmp_path):
    honouring.set_faults(rate=1.0, kinds=["reset_after"], routes=["submit"], skip_first=3)
    store = DictStateStore()
    with pytest.raises(SubmitGaveUpError, match=r"chunk \d+ \(ids '\d+' to '\d+'\) of job job-\w+ was not accepted"):
        run(op(tmp_path, max_concurrent_submits=1), store)
    honouring.set_faults(rate=0.0)
    reference = run(op(tmp_path, max_concurrent_submits=1), store)
    stats = honouring.stats()
    assert stats["batches"] == 20 and stats["items"] == 1000
    assert len({b.batch_id for b in read_manifest(reference)[0].batches}) == 20


def test_keys_do_not_depend_on_the_store(honouring, tmp_path):
    """Two tries of one task instance without any task_state_store send the same keys (the first
    one's manifest removed, as if it had died before writing it)."""
    first = run(op(tmp_path, 200), None)
    shutil.rmtree(tmp_path / "jobs")
    second = run(op(tmp_path, 200), None)
    assert first["job_id"] == second["job_id"]
    assert honouring.stats()["batches"] == 4 and honouring.stats()["requests"]["submit"] == 8


def test_a_job_whose_manifest_is_written_is_not_sent_again(billing, tmp_path):
    """Once the manifest is written the ledger keeps only a header naming it (the store's default
    retention): a later run of the task (cleared by hand) pays nothing — with the header, with its
    manifest_dir changed, or with the store emptied ([state_store] clear_on_success)."""
    store = CountingStore()
    first = run(op(tmp_path, 200), store)
    assert list(store) == [JOB_KEY] and store[JOB_KEY]["complete"] == first["manifest"]
    assert run(op(tmp_path, 200), store) == first
    moved = op(tmp_path, 200)
    moved.manifest_dir = str(tmp_path / "elsewhere")
    assert read_manifest(run(moved, store))[0].batches == read_manifest(first)[0].batches
    with pytest.raises(InputChangedError, match="its 4 accepted batches are paid for"):
        run(op(tmp_path, 201), store)
    store.clear()
    assert run(op(tmp_path, 200), store) == first
    assert billing.stats()["batches"] == 4 and billing.stats()["requests"]["submit"] == 4


def test_other_runs_and_map_indexes_are_other_jobs(honouring, tmp_path):
    class OtherRun(FakeTI):
        run_id = "manual__2"

    class OtherIndex(FakeTI):
        map_index = 3

    ids = {op(tmp_path, 100).execute({"task_state_store": DictStateStore(), "ti": ti()})["job_id"]
           for ti in (FakeTI, OtherRun, OtherIndex)}
    assert len(ids) == 3 and honouring.stats()["batches"] == 6


def test_a_retry_with_other_batch_limits_follows_on_input_change(billing, tmp_path):
    """Issue reproduction 3: the retry must not re-attach to batches cut another way."""
    billing.set_faults(rate=1.0, kinds=["429"], routes=["submit"], skip_first=2, retry_after=0)
    store = DictStateStore()
    with pytest.raises(SubmitGaveUpError, match=r"chunk \d+ \(ids '\d+' to '\d+'\) of job job-\w+ was not accepted"):
        run(op(tmp_path, 8, max_items_per_batch=2, max_concurrent_submits=1), store)
    billing.set_faults(rate=0.0)
    assert billing.stats()["batches"] == 2
    with pytest.raises(InputChangedError, match="batch limits"):
        run(op(tmp_path, 8, max_items_per_batch=4), store)
    reference = run(op(tmp_path, 8, max_items_per_batch=4, on_input_change="restart"), store)
    manifest, _ = read_manifest(reference)
    assert [b.rows for b in manifest.batches] == [4, 4] and billing.stats()["items"] == 4 + 8


def test_a_refused_chunk_is_cleared_and_sent_by_the_retry(billing, tmp_path):
    """429 past the budget: nothing was created, so the retry sends it without asking."""
    billing.set_faults(rate=1.0, kinds=["429"], routes=["submit"], skip_first=5, retry_after=0)
    store = DictStateStore()
    with pytest.raises(Exception, match="429"):
        run(op(tmp_path, max_concurrent_submits=1), store)
    assert store["scaledown:window:0"]["in_flight"] == []
    billing.set_faults(rate=0.0)
    run(op(tmp_path, max_concurrent_submits=1), store)
    assert billing.stats()["batches"] == 20


@pytest.mark.parametrize("crash_at", range(2, 6))
def test_a_crash_at_any_write_never_pays_twice(billing, tmp_path, crash_at):
    """Kill the try at each ledger write (130 chunks: header + three windows): the retry either
    finishes with one batch per chunk or stops naming what may be paid, never sending it again."""
    store = CountingStore(crash_at=crash_at)
    with pytest.raises(Crash):
        run(op(tmp_path, 130 * 50, max_concurrent_submits=4), store)
    store.crash_at = None
    try:
        reference = run(op(tmp_path, 130 * 50, max_concurrent_submits=4), store)
    except AmbiguousSubmissionError as exc:
        in_flight = set(exc.chunks)
        assert billing.stats()["batches"] <= 130
        reference = run(op(tmp_path, 130 * 50, max_concurrent_submits=4, on_ambiguous="resubmit"), store)
        assert billing.stats()["batches"] <= 130 + len(in_flight)
    else:
        assert billing.stats()["batches"] == 130
    assert len(read_manifest(reference)[0].batches) == 130


def test_bookkeeping_is_grouped_and_read_once(billing, tmp_path):
    """One write marks the next chunks and records what came back: at most one write per
    max_concurrent_submits chunks (each touching at most two windows), not one per chunk."""
    store = CountingStore()
    run(op(tmp_path, 130 * 50, max_concurrent_submits=8), store)
    assert store.gets == 1  # a fresh submit asks once
    header, final, closing = 1, 1, 1
    assert store.sets <= header + 2 * -(-130 // 8) + final + closing
    assert billing.stats()["batches"] == 130


class ShowingStore(CountingStore):
    """Keeps the largest number of chunks any write left in flight in the ledger."""

    most_in_flight = 0

    def set(self, key, value, **kwargs):
        super().set(key, value, **kwargs)
        shown = sum(len(v["in_flight"]) for k, v in self.items() if k.startswith("scaledown:window:"))
        self.most_in_flight = max(self.most_in_flight, shown)


@pytest.mark.parametrize("concurrency", [1, 3, 8])
def test_the_ledger_never_shows_more_than_four_calls_per_concurrent_slot_in_flight(billing, tmp_path, concurrency):
    """A try killed at any moment leaves at most 4 x max_concurrent_submits chunks ambiguous: the
    state after every write is what a SIGKILL right after it would leave (70 chunks: the old design marked a window of 64 at once)."""
    store = ShowingStore()
    run(op(tmp_path, 70 * 50, max_concurrent_submits=concurrency), store)
    assert 0 < store.most_in_flight <= 4 * concurrency
    assert billing.stats()["batches"] == 70


def test_max_rows_refuses_before_any_call(billing, tmp_path):
    with pytest.raises(InvalidInputError, match="holds 1000 rows to send, more than max_rows=999"):
        run(op(tmp_path, max_rows=999), DictStateStore())
    assert billing.stats()["requests"] == {}
    assert run(op(tmp_path, 100, max_rows=100), DictStateStore())["rows"] == 100


def test_dry_run_reports_and_pays_nothing(billing, tmp_path):
    store = CountingStore()
    report = run(op(tmp_path, 1000, dry_run=True), store)
    assert report["dry_run"] is True and (report["rows"], report["batches"]) == (1000, 20)
    assert report["bytes"] > 1000 * 50 and report["skipped_rows"] == 0 and report["invalid_rows"] == 0
    assert billing.stats()["requests"] == {} and store.sets == 0 and JOB_KEY not in store
    assert not (tmp_path / "jobs").exists()


def test_concurrent_windows_keep_every_call_bounded(billing, tmp_path, monkeypatch):
    """Windows follow each other without a pause, and never more than max_concurrent_submits calls run."""
    real_submit = BatchApiHook.submit_batch
    lock, running, peak = threading.Lock(), [0], [0]

    def submit(self, lines, **kwargs):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real_submit(self, lines, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(BatchApiHook, "submit_batch", submit)
    run(op(tmp_path, 200 * 10, max_items_per_batch=10, max_concurrent_submits=3), DictStateStore())
    assert peak[0] == 3 and billing.stats()["batches"] == 200


def test_a_retry_without_a_ledger_sends_nothing_unless_resending_is_safe(billing, tmp_path):
    class SecondTry(FakeTI):
        try_number = 2

    with pytest.raises(AmbiguousSubmissionError, match="this is a retry and there is no task_state_store"):
        op(tmp_path, 100).execute({"ti": SecondTry()})
    assert billing.stats()["requests"] == {}
    assert op(tmp_path, 100, on_ambiguous="resubmit").execute({"ti": SecondTry()})["batches"] == 2


def test_a_try_stopped_mid_send_still_records_what_was_accepted(billing, tmp_path, monkeypatch):
    """A task timeout (a BaseException raised in the main thread) while calls are under way."""
    from airflow_batch_provider.job import send_tracker  # where the send waits for its calls

    real_wait, calls = send_tracker.wait, [0]

    def wait_then_time_out(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 10:
            raise Crash("execution_timeout")
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(send_tracker, "wait", wait_then_time_out)
    store = DictStateStore()
    with pytest.raises(Crash):
        run(op(tmp_path, 100 * 50, max_concurrent_submits=4), store)
    monkeypatch.setattr(send_tracker, "wait", real_wait)
    window = store["scaledown:window:0"]
    assert len(window["accepted"]) == billing.stats()["batches"] and window["in_flight"] == []
    run(op(tmp_path, 100 * 50, max_concurrent_submits=4), store)  # the default retry: nothing ambiguous
    assert billing.stats()["batches"] == 100


def test_an_inherited_in_flight_chunk_stays_in_flight_until_accepted(billing, tmp_path):
    store = DictStateStore()
    billing.set_faults(rate=1.0, kinds=["reset_after"], routes=["submit"], skip_first=0)
    with pytest.raises(AmbiguousSubmissionError):
        run(op(tmp_path, 100, max_concurrent_submits=1), store)
    assert store["scaledown:window:0"]["in_flight"] == [0]
    billing.set_faults(rate=1.0, kinds=["429"], routes=["submit"], retry_after=0)  # refused this time
    with pytest.raises(Exception, match="429"):
        run(op(tmp_path, 100, max_concurrent_submits=1, on_ambiguous="resubmit"), store)
    assert store["scaledown:window:0"]["in_flight"] == [0]  # the first try's POST may still have made it


def test_a_failure_before_the_post_leaves_the_chunk_unsent(billing, tmp_path, monkeypatch):
    from airflow_batch_provider.job.spool import RequestSpool

    real_read = RequestSpool.read_chunk

    def read(self, chunk):
        if chunk.first_row == 100:
            raise OSError("disk read failed")
        return real_read(self, chunk)

    monkeypatch.setattr(RequestSpool, "read_chunk", read)
    store = DictStateStore()
    with pytest.raises(Exception, match="chunk 2 was not sent: disk read failed"):
        run(op(tmp_path, 200, max_concurrent_submits=1), store)
    assert store["scaledown:window:0"]["in_flight"] == []
    monkeypatch.setattr(RequestSpool, "read_chunk", real_read)
    run(op(tmp_path, 200, max_concurrent_submits=1), store)
    assert billing.stats()["batches"] == 4


@pytest.mark.parametrize(("status", "created"), [(303, "maybe"), (302, "maybe"), (409, "maybe"), (307, "no"),
                                                 (429, "no"), (400, "no"), (500, "maybe")])
def test_which_answers_to_a_post_mean_nothing_was_created(status, created):
    from airflow_batch_provider.hooks.errors import error_for_status
    from airflow_batch_provider.job.submission import surely_not_created

    exc = error_for_status(status, "x", body="", endpoint="POST /v1/batches", location="https://u:p@h/x?sig=s")
    assert surely_not_created(exc) is (created == "no")
    assert "sig=s" not in str(exc) and "u:p" not in str(exc)


class RetentionStore(DictStateStore):
    retentions: list

    def set(self, key, value, **kwargs):
        self.retentions = [*getattr(self, "retentions", []), kwargs.get("retention")]
        super().set(key, value, **kwargs)


def test_ledger_keys_never_expire_while_the_job_is_unfinished(billing, tmp_path):
    from airflow.sdk.execution_time.context import NEVER_EXPIRE

    store = RetentionStore()
    billing.set_faults(rate=1.0, kinds=["429"], routes=["submit"], skip_first=5, retry_after=0)
    with pytest.raises(Exception, match="429"):
        run(op(tmp_path, max_concurrent_submits=1), store)
    assert store.retentions and set(store.retentions) == {NEVER_EXPIRE}
    assert JOB_KEY in store


@pytest.mark.parametrize("server", ["billing", "honouring"])
def test_a_retry_that_finds_the_ledger_gone_follows_the_ambiguity_rule(server, request, tmp_path):
    """The ledger's keys deleted (as an expiry or a hand-cleared store would) after a try paid for
    some chunks: the retry must not take the job for a fresh one."""
    emulator = request.getfixturevalue(server)
    emulator.set_faults(rate=1.0, kinds=["429"], routes=["submit"], skip_first=4, retry_after=0)
    store = DictStateStore()
    with pytest.raises(Exception, match="429"):
        run(op(tmp_path, 500, max_concurrent_submits=1), store)
    emulator.set_faults(rate=0.0)
    assert emulator.stats()["batches"] == 4
    store.clear()
    if server == "billing":
        with pytest.raises(AmbiguousSubmissionError, match="10 chunk"):
            run(op(tmp_path, 500, max_concurrent_submits=1), store)
        assert emulator.stats()["batches"] == 4
    else:  # the server dedupes by Idempotency-Key: resent, paid once
        reference = run(op(tmp_path, 500, max_concurrent_submits=1), store)
        assert emulator.stats()["batches"] == 10 and reference["batches"] == 10


def test_abandoned_ambiguous_chunks_are_never_resent_and_land_as_missing(billing, tmp_path, monkeypatch):
    """on_ambiguous='abandon' on a server that ignores keys: the bill never exceeds the chunks, the
    wait does not ask for the abandoned chunk, and its rows land 'missing', named as such."""
    import json
    import sqlite3

    from airflow_batch_provider.operators.load import BatchOutputToTableOperator
    from airflow_batch_provider.sensors.batch import BatchSensor
    from tests.emulator_helpers import wait_for_job

    billing.set_faults(rate=1.0, kinds=["reset_after"], routes=["submit"], skip_first=3, max_faults=1)
    store = DictStateStore()
    with pytest.raises(AmbiguousSubmissionError, match="chunk 3 "):
        run(op(tmp_path, max_concurrent_submits=1), store)
    billing.set_faults(rate=0.0)
    reference = run(op(tmp_path, max_concurrent_submits=1, on_ambiguous="abandon"), store)
    assert billing.stats()["batches"] == 20  # chunk 3 was created once, its answer lost; never resent
    manifest, _ = read_manifest(reference)
    assert [b.abandoned for b in manifest.batches].count(True) == 1 and manifest.batches[3].abandoned
    wait_for_job(reference)
    BatchSensor(task_id="wait", job=reference, deferrable=False).execute({})
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite",
                                                             "host": str(tmp_path / "w.db")}))
    summary = BatchOutputToTableOperator(task_id="load", job=reference, conn_id="warehouse", table="t",
                                         max_failed_ratio=0.1).execute({})
    assert (summary["ok"], summary["missing"]) == (950, 50)
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("SELECT MIN(review_id), MAX(review_id), COUNT(*) FROM t WHERE status = 'missing' "
                            "AND error_code = 'submit_outcome_unknown'").fetchall() == [(150, 199, 50)]


class FailingStore(DictStateStore):
    """A store whose write of window 0's last outcomes fails once (an ordinary error: the try goes
    on to record what it knows), while the calls under way are all in window 1."""

    failed = False

    def set(self, key, value, **kwargs):
        if not self.failed and key == "scaledown:window:0" and len(value["accepted"]) == 256:
            self.failed = True
            raise OSError("store unavailable")
        super().set(key, value, **kwargs)


def test_a_failed_ledger_write_loses_no_acceptance(billing, tmp_path):
    """600 chunks over three ledger windows: the write that records window 0's last acceptances
    (and marks chunks of window 1) fails mid-submit, and the try stops. Every batch the server made
    is still recorded as accepted."""
    store = FailingStore()
    with pytest.raises(OSError, match="store unavailable"):
        run(op(tmp_path, 600 * 10, max_items_per_batch=10), store)
    assert store.failed
    accepted = {chunk for key, window in store.items() if key.startswith("scaledown:window:")
                for chunk in window["accepted"]}
    assert len(accepted) == billing.stats()["batches"]


def test_a_chunk_refused_more_times_than_the_hooks_attempts_is_sent_again_later(billing, tmp_path):
    """Issue 24: a chunk answered 429 eight times in a row (the hook tries six) used to fail the
    submit; it now goes back in the queue while the others are sent, and the job is paid for once."""
    billing.set_faults(rate=1.0, kinds=["429"], routes=["submit"], max_faults=8, retry_after=0)
    reference = run(op(tmp_path, 200, max_concurrent_submits=1), DictStateStore())
    stats = billing.stats()
    assert stats["faults_injected"] == {"submit:429": 8}
    assert stats["batches"] == 4 and stats["items"] == 200  # 200 rows / 50: nothing twice
    assert len({b.batch_id for b in read_manifest(reference)[0].batches}) == 4


def test_a_chunk_that_may_exist_stays_in_flight_when_the_try_stops_before_resending_it(honouring, tmp_path,
                                                                                        monkeypatch):
    """Chunk 0 is made but its answer is lost (a 502 after the server acted), so it is queued to be
    sent again with its key; chunk 1 is refused first and stops the try, taking the queue back. The ledger must still show chunk
    0 in flight: it may be billed, whatever the next try's connection says."""
    real_submit = BatchApiHook.submit_batch

    def submit(self, lines, *, idempotency_key, **kwargs) -> BatchStatus:
        chunk = idempotency_key.rsplit(":", 1)[1]
        if chunk == "0":
            real_submit(self, lines, idempotency_key=idempotency_key, **kwargs)
            raise BatchApiUpstreamError("the answer was lost", status_code=502, endpoint="POST /v1/batches")
        if chunk == "1":  # refused once chunk 0 is marked again and queued behind it
            time.sleep(1)
            raise BatchApiBadRequestError("refused", status_code=422, endpoint="POST /v1/batches")
        return real_submit(self, lines, idempotency_key=idempotency_key, **kwargs)

    monkeypatch.setattr(BatchApiHook, "submit_batch", submit)
    store = DictStateStore()
    with pytest.raises(BatchApiBadRequestError):
        run(op(tmp_path, 200, max_concurrent_submits=1), store)
    window = store["scaledown:window:0"]
    assert 0 in window["in_flight"] and "0" not in window["accepted"]
    assert honouring.stats()["batches"] >= 1  # chunk 0 was made


def test_a_setting_met_on_the_way_to_the_first_post_fails_without_airflows_retries(billing, tmp_path, monkeypatch):
    """With both batch limits given, the connection is first read by the threads that send: a key it
    lost there (or an unusable extra) is the same fail-fast error as anywhere else, and nothing is sent."""
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({"conn_type": "batch_api", "host": billing.url}))
    monkeypatch.delenv("SCALEDOWN_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError) as failed:
        run(op(tmp_path, 100, max_bytes_per_batch=1 << 20), DictStateStore())
    assert isinstance(failed.value, AirflowFailException)
    assert billing.stats()["batches"] == 0
