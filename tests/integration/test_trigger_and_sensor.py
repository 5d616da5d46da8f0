"""BatchTrigger and BatchSensor against the emulator over HTTP."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import threading
import time

import pandas as pd
import pytest
import requests
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.job.manifest import read_manifest
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
from airflow_batch_provider.sensors.batch import (
    BatchJobFailedError,
    BatchJobTimeoutError,
    BatchPollingError,
    BatchSensor,
)
from airflow_batch_provider.triggers.batch import BatchTrigger, check_event
from tests.emulator_helpers import wait_for_job
from tests.state_store import DictStateStore


def submit(server, monkeypatch, tmp_path, rows=100, per_batch=20, **extra):
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(
        server, retry_initial_wait=0.01, retry_max_wait=0.05, **extra))
    frame = pd.DataFrame({"id": range(rows), "text": [f"Row {i}. It is fine." for i in range(rows)]})
    op = DataFrameToBatchOperator(task_id="submit", dataframe=frame, id_column="id", text_column="text",
                                  request=Summarize(), max_items_per_batch=per_batch,
                                  # a folder per server: the same input's manifest would be reused
                                  manifest_dir=str(tmp_path / "jobs" / str(id(server))))
    return op.execute({"task_state_store": DictStateStore()})


def events(trigger):
    async def collect():
        return [event.payload async for event in trigger.run()]
    return asyncio.run(collect())


def test_finishes_on_completion_with_counts_and_exactly_one_event(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path)
    [event] = events(BatchTrigger(job=job, poll_interval=0.05, deadline=time.time() + 60))
    assert event["status"] == "success" and event["job"] == job
    assert (event["batches_total"], event["batches_done"], event["items_total"], event["items_completed"]) == (5, 5, 100, 100)


def test_keeps_polling_while_running_and_polls_only_running_batches(make_emulator, monkeypatch, tmp_path):
    server = make_emulator(items_per_second=100, start_delay=0.2)
    job = submit(server, monkeypatch, tmp_path, rows=100, per_batch=20)
    before = server.stats()["requests"].get("status", 0)
    [event] = events(BatchTrigger(job=job, poll_interval=0.1, max_poll_interval=0.2, deadline=time.time() + 60))
    polls = server.stats()["requests"]["status"] - before
    assert event["status"] == "success" and event["items_completed"] == 100
    assert polls > 5  # it had to look more than once
    assert polls < 5 * 40  # but never re-polled finished batches every cycle


def test_survives_a_burst_of_503s(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path, retry_max_attempts=1)
    server.set_faults(rate=0.6, kinds=["503"], routes=["status"], seed=11)
    [event] = events(BatchTrigger(job=job, poll_interval=0.02, deadline=time.time() + 60))
    assert event["status"] == "success" and server.stats()["faults_injected"]["status:503"] > 0


def test_gives_up_once_nothing_has_answered_for_the_retry_budget(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path, retry_max_attempts=1, retry_total_timeout=1.5)
    server.set_faults(rate=1.0, kinds=["502"], routes=["status"])
    started = time.monotonic()
    [event] = events(BatchTrigger(job=job, poll_interval=0.02, max_poll_interval=0.1, deadline=time.time() + 60,
                                  max_concurrency=1))
    assert time.monotonic() - started >= 1.5  # by time, not by count of failures
    assert event["status"] == "error"
    assert re.search(r"gave up polling batch batch-\w+ of job job-\w+: no request of the job has succeeded for "
                     r"\d+ s, longer than retry_total_timeout=1.5 s: the API or the way to it is down; the last "
                     r"error: HTTP 502", event["message"]), event["message"]
    assert server.stats()["requests"]["status"] > 3  # asked again and again meanwhile
    with pytest.raises(BatchPollingError, match="gave up polling"):
        check_event(event)


def test_times_out_on_its_absolute_deadline(make_emulator, monkeypatch, tmp_path):
    server = make_emulator(start_delay=300)
    job = submit(server, monkeypatch, tmp_path)
    deadline = time.time() + 1.0
    started = time.monotonic()
    [event] = events(BatchTrigger(job=job, poll_interval=120, deadline=deadline))
    assert event["status"] == "timeout" and "keep running on the server" in event["message"]
    assert 0.8 < time.monotonic() - started < 60  # slept until the deadline, not a whole interval (120 s)
    # a trigger rebuilt after the deadline (a restarted triggerer) does not start the clock again
    [again] = events(BatchTrigger(job=job, poll_interval=5, deadline=deadline))
    assert again["status"] == "timeout"


def test_a_failed_batch_fails_the_job(make_emulator, monkeypatch, tmp_path):
    server = make_emulator(batch_failure_rate=1.0)
    job = submit(server, monkeypatch, tmp_path)
    [event] = events(BatchTrigger(job=job, poll_interval=0.05))
    assert event["status"] == "failed" and event["failed_batches"]  # fails fast, on the first one seen
    with pytest.raises(BatchJobFailedError, match="their rows will not come back") as failed:
        check_event(event)
    assert isinstance(failed.value, AirflowFailException)  # a retry of the wait finds them failed again


def test_a_refused_key_is_an_error_at_once(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": server.url, "password": "revoked"}))
    [event] = events(BatchTrigger(job=job, poll_interval=0.05))
    assert event["status"] == "error" and "will not recover" in event["message"]


def test_request_budget_bounds_polling(make_emulator, monkeypatch, tmp_path):
    server = make_emulator(start_delay=300)
    job = submit(server, monkeypatch, tmp_path, rows=400, per_batch=10)  # 40 batches, none will finish
    before = server.stats()["requests"].get("status", 0)
    started = time.monotonic()
    [event] = events(BatchTrigger(job=job, poll_interval=0.5, max_poll_interval=0.5, requests_per_minute=120,
                                  deadline=time.time() + 2))
    polls, seconds = server.stats()["requests"]["status"] - before, time.monotonic() - started
    assert event["status"] == "timeout" and polls >= 1
    # 120/min: one request per 0.5 s cycle, however long the cycles took; unbounded, the trigger
    # would have asked about up to 8 of the 40 running batches each cycle.
    assert polls <= seconds * 120 / 60 + 1, (polls, seconds)


def test_serialises_and_round_trips_without_secrets(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path)
    trigger = BatchTrigger(job=job, deadline=1_900_000_000.5, poll_interval=3, max_concurrency=2, end_with="counts")
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert server.api_key not in json.dumps(kwargs) and len(json.dumps(kwargs)) < 2000


class RecordingXCom:
    """Stands for the configured XCom backend on the triggerer (its supervisor is not here)."""

    written: list[tuple] = []
    fail = False

    @classmethod
    async def aset(cls, key, value, **where):
        if cls.fail:
            raise ConnectionError("the API server is unreachable")
        cls.written.append((key, value, where))


@pytest.fixture
def triggerer_ti(monkeypatch):
    """The trigger as the triggerer runs it: with its task instance, and the XCom backend recorded."""
    from types import SimpleNamespace

    import airflow.sdk.execution_time.xcom as xcom

    RecordingXCom.written, RecordingXCom.fail = [], False
    monkeypatch.setattr(xcom, "resolve_xcom_backend", lambda: RecordingXCom)
    return SimpleNamespace(dag_id="d", task_id="wait", run_id="r1", map_index=3, try_number=1)


@pytest.mark.parametrize("end_with", ["counts", "job"])
def test_success_ends_the_task_with_what_execute_complete_returns(make_emulator, monkeypatch, tmp_path,
                                                                  triggerer_ti, end_with):
    from airflow.triggers.base import TaskSuccessEvent

    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path)
    wait_for_job(job)
    [resumed] = events(BatchTrigger(job=job, poll_interval=0.01, end_with=end_with))  # no task instance: dags test
    trigger = BatchTrigger(job=job, poll_interval=0.01, end_with=end_with)
    trigger.task_instance = triggerer_ti

    async def collect():
        return [event async for event in trigger.run()]
    [ended] = asyncio.run(collect())
    assert isinstance(ended, TaskSuccessEvent)
    [(key, value, where)] = RecordingXCom.written
    returned = (BatchSensor(task_id="wait", job=job).execute_complete({}, resumed) if end_with == "counts"
                else job)
    assert key == "return_value" and value == returned and isinstance(value, dict)
    assert where == {"dag_id": "d", "task_id": "wait", "run_id": "r1", "map_index": 3}


def test_a_return_value_that_cannot_be_written_resumes_the_task_instead(make_emulator, monkeypatch, tmp_path,
                                                                        triggerer_ti):
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path)
    wait_for_job(job)
    RecordingXCom.fail = True
    trigger = BatchTrigger(job=job, poll_interval=0.01, end_with="counts")
    trigger.task_instance = triggerer_ti

    async def collect():
        return [event async for event in trigger.run()]
    [event] = asyncio.run(collect())
    assert type(event).__name__ == "TriggerEvent" and check_event(event.payload)["items_completed"] == 100


def test_a_deferred_wait_stopped_by_a_user_logs_what_keeps_running(make_emulator, monkeypatch, tmp_path, capfd):
    server = make_emulator(start_delay=300)
    job = submit(server, monkeypatch, tmp_path)
    trigger = BatchTrigger(job=job, poll_interval=0.05)

    async def run_then_kill():
        running = asyncio.ensure_future(anext(trigger.run()))
        await asyncio.sleep(0.5)  # it has read the manifest and polled
        running.cancel()
        await trigger.on_kill()
    capfd.readouterr()
    asyncio.run(run_then_kill())
    said = "".join(capfd.readouterr())
    assert f"Stopped waiting for job {job['job_id']}" in said and "billed" in said
    assert "5 still running when last looked" in said
    assert all(ref.batch_id in said for ref in read_manifest(job)[0].batches)


def test_check_event_refuses_what_it_cannot_read():
    with pytest.raises(BatchPollingError, match="no usable event"):
        check_event(None)
    with pytest.raises(BatchPollingError, match="unknown status 'weird'"):
        check_event({"status": "weird"})
    with pytest.raises(BatchJobTimeoutError):
        check_event({"status": "timeout", "message": "late"})


def _all_done(server, job):
    wait_for_job(job)


def test_sensor_completes_inline_when_a_small_job_is_already_done(make_emulator, monkeypatch, tmp_path):
    from airflow_batch_provider.sensors.batch import INLINE_LOOKS

    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path, rows=20 * INLINE_LOOKS)  # as many batches as inline looks
    _all_done(server, job)
    result = BatchSensor(task_id="wait", job=job).execute({})
    assert result["status"] == "success" and result["items_completed"] == 20 * INLINE_LOOKS


def test_the_sensors_inline_look_is_short_even_when_every_batch_is_done(make_emulator, monkeypatch, tmp_path):
    """It used to walk every finished batch on the worker (64 s for 20,000): now a few looks, then defer."""
    from airflow_batch_provider.sensors.batch import INLINE_LOOKS

    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path)  # 5 batches
    _all_done(server, job)
    before = server.stats()["requests"]["status"]
    with pytest.raises(TaskDeferred):
        BatchSensor(task_id="wait", job=job).execute({})
    assert server.stats()["requests"]["status"] - before == INLINE_LOOKS


def test_sensor_defers_with_a_deadline_fixed_on_the_worker(make_emulator, monkeypatch, tmp_path):
    server = make_emulator(start_delay=300)
    job = submit(server, monkeypatch, tmp_path)
    before = server.stats()["requests"].get("status", 0)
    with pytest.raises(TaskDeferred) as deferred:
        BatchSensor(task_id="wait", job=job, timeout=600, poll_interval=7).execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, BatchTrigger) and deferred.value.method_name == "execute_complete"
    assert abs(trigger.deadline - (time.time() + 600)) < 5 and trigger.poll_interval == 7
    assert server.stats()["requests"]["status"] - before == 1  # newest batch still queued: no more looks


def test_sensor_poke_uses_the_same_decision(make_emulator, monkeypatch, tmp_path):
    server = make_emulator(items_per_second=200)
    job = submit(server, monkeypatch, tmp_path)
    sensor = BatchSensor(task_id="wait", job=job, deferrable=False)
    deadline = time.monotonic() + 30
    while not (result := sensor.poke({})).is_done:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert result.xcom_value["items_completed"] == 100
    failing = make_emulator(batch_failure_rate=1.0)
    job = submit(failing, monkeypatch, tmp_path)
    wait_for_job(job, timeout=30)  # every batch has failed on the server
    with pytest.raises(BatchJobFailedError):
        BatchSensor(task_id="wait", job=job, deferrable=False).poke({})


def test_poke_interval_is_accepted_as_every_sensor_takes_it():
    sensor = BatchSensor(task_id="wait", job={"manifest": "/nowhere"}, poke_interval=7)
    assert sensor.poll_interval == 7 and sensor.poke_interval == 7
    assert BatchSensor(task_id="w2", job={}, poll_interval=3).poke_interval == 3
    with pytest.raises(ValueError, match="not both"):
        BatchSensor(task_id="w3", job={}, poll_interval=3, poke_interval=4)


def test_a_timeout_is_retried_by_airflow():
    from airflow.sdk.exceptions import AirflowSensorTimeout

    assert not issubclass(BatchJobTimeoutError, AirflowSensorTimeout)  # Airflow never retries those


def test_a_job_reference_rendered_by_a_template_is_read(make_emulator, monkeypatch, tmp_path):
    """docs: job="{{ ti.xcom_pull(task_ids='submit') }}" renders the dict into a string."""
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path)
    wait_for_job(job)
    sensor = BatchSensor(task_id="wait", job=str(job), deferrable=False)
    assert sensor.poke({}).xcom_value["items_completed"] == 100
    assert BatchSensor(task_id="by_location", job=job["manifest"], deferrable=False).poke({}).is_done


def test_deferrable_follows_the_deployments_setting(monkeypatch):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")  # no triggerer here
    assert BatchSensor(task_id="wait", job={}).deferrable is False
    assert BatchSensor(task_id="wait2", job={}, deferrable=True).deferrable is True
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert BatchSensor(task_id="wait3", job={}).deferrable is True


def test_wait_for_completion_without_a_triggerer_polls_from_the_worker(make_emulator, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "False")

    def submit_and_wait(server):
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
        frame = pd.DataFrame({"id": range(60), "text": [f"Row {i}. It is fine." for i in range(60)]})
        return DataFrameToBatchOperator(
            task_id="submit", dataframe=frame, id_column="id", text_column="text", request=Summarize(),
            max_items_per_batch=20, manifest_dir=str(tmp_path / "jobs" / str(id(server))), wait_for_completion=True,
            poll_interval=0.2).execute({"task_state_store": DictStateStore()})  # TaskDeferred would fail it

    job = submit_and_wait(make_emulator(items_per_second=300, start_delay=0.3))
    done = BatchSensor(task_id="check", job=job, deferrable=False).poke({})
    assert done.is_done and done.xcom_value["items_completed"] == 60  # every batch had finished
    with pytest.raises(BatchJobFailedError):
        submit_and_wait(make_emulator(batch_failure_rate=1.0))


def test_on_kill_names_the_job_and_the_batches_still_running(make_emulator, monkeypatch, tmp_path, capfd):
    server = make_emulator(start_delay=300)
    job = submit(server, monkeypatch, tmp_path)
    sensor = BatchSensor(task_id="wait", job=job, deferrable=False)
    assert not sensor.poke({}).is_done
    capfd.readouterr()
    sensor.on_kill()
    said = "".join(capfd.readouterr())
    assert job["job_id"] in said and "billed" in said and "5 still running when last looked" in said
    assert all(ref.batch_id in said for ref in read_manifest(job)[0].batches)


def test_poke_interval_from_default_args_is_honoured():
    import pendulum
    from airflow.sdk import DAG

    with DAG("d", schedule=None, start_date=pendulum.datetime(2026, 1, 1), default_args={"poke_interval": 60}):
        sensor = BatchSensor(task_id="wait", job={})
    assert sensor.poll_interval == 60 and sensor.poke_interval == 60


def test_the_waits_budget_grows_to_the_apis_limit_and_backs_off_from_it(make_emulator, monkeypatch, tmp_path,
                                                                        capfd):
    """600 finished batches, a server limited to 3,000 requests a minute: the rate starts at the
    connection's 600, doubles while answers come back, halves at the 429s, and the job is confirmed
    with few requests refused."""
    server = make_emulator(latency=0.02)  # answers take a network's time, not a busy machine's noise
    job = submit(server, monkeypatch, tmp_path, rows=6000, per_batch=10)
    wait_for_job(job, timeout=60)
    requests.put(f"{server.url}/_emulator/rate-limit", json={"per_minute": 3000},
                 headers={"x-api-key": server.api_key}, timeout=10).raise_for_status()
    # Retry-After honoured as a deployment's connection does (the tests' default caps it at 0.05 s).
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server, retry_max_wait=5))
    before = server.stats()
    capfd.readouterr()
    [event] = events(BatchTrigger(job=job, poll_interval=1, max_poll_interval=1))
    said = "".join(capfd.readouterr())
    after = server.stats()
    status_requests = after["requests"]["status"] - before["requests"].get("status", 0)
    refused = after["rate_limited"] - before["rate_limited"]
    assert event["status"] == "success" and event["batches_done"] == 600
    assert "Status requests: 1,200 a minute (more batches wait, and answers come back quickly)" in said
    assert "the API asked to slow down" in said
    assert refused <= 0.05 * status_requests, (refused, status_requests)  # one 429 pauses the others


def test_waiting_on_a_worker_asks_concurrently_within_the_same_budget(make_emulator, monkeypatch, tmp_path):
    """Poke mode and a worker-side wait_for_completion poll as the trigger does (job/polling.py):
    several requests in flight (a sequential look kept one), the budget's choice of batches. (The
    budget paces requests: at the default start, 10 a second, 50 ms answers need one in flight; a
    connection starting at 60,000 a minute needs more than 8.)"""
    server = make_emulator(latency=0.05)
    job = submit(server, monkeypatch, tmp_path, rows=400, per_batch=10, requests_per_minute=60_000)  # 40 batches
    wait_for_job(job)
    before = server.stats()
    asking, peak, lock = 0, 0, threading.Lock()
    get_batch = BatchApiHook.get_batch

    def counted(self, batch_id):  # the client's own count: the server's lags while it finishes an answer
        nonlocal asking, peak
        with lock:
            asking += 1
            peak = max(peak, asking)
        try:
            return get_batch(self, batch_id)
        finally:
            with lock:
                asking -= 1

    monkeypatch.setattr(BatchApiHook, "get_batch", counted)
    sensor = BatchSensor(task_id="wait", job=job, deferrable=False, max_concurrency=8)
    done = sensor.poke({})
    after = server.stats()
    assert done.is_done and done.xcom_value["batches_done"] == 40
    assert after["requests"]["status"] - before["requests"]["status"] == 40  # each batch asked once
    # Concurrent (a sequential look kept one in flight), within max_concurrency.
    assert 4 <= peak <= 8 and after["in_flight_peak"]["status"] >= 4
    monkeypatch.setattr(BatchApiHook, "get_batch", get_batch)

    quiet = make_emulator(latency=0.05, start_delay=0.5)
    result = DataFrameToBatchOperator(
        task_id="submit", dataframe=pd.DataFrame({"id": range(200), "text": [f"Row {i}. Fine." for i in range(200)]}),
        id_column="id", text_column="text", request=Summarize(), max_items_per_batch=10, deferrable=False,
        manifest_dir=str(tmp_path / "jobs" / "worker"), wait_for_completion=True, poll_interval=1,
    )
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(quiet, requests_per_minute=60_000))
    reference = result.execute({"task_state_store": DictStateStore()})
    assert reference["rows"] == 200 and quiet.stats()["in_flight_peak"]["status"] >= 4


def test_a_poke_in_reschedule_mode_asks_about_every_running_batch(make_emulator, monkeypatch, tmp_path):
    """A rescheduled poke is a new process that knows nothing: a budgeted choice would ask about the
    same oldest batches every time and never see the others finish. It sweeps them all, concurrently."""
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path, rows=2000, per_batch=10)  # 200 batches > one cycle's 50
    wait_for_job(job)
    sensor = BatchSensor(task_id="wait", job=job, deferrable=False, mode="reschedule", poke_interval=5)
    done = sensor.poke({})
    assert done.is_done and done.xcom_value["batches_done"] == 200


def test_a_poke_confirms_a_backlog_of_finished_batches_beyond_one_cycles_budget(make_emulator, monkeypatch,
                                                                                 tmp_path):
    """200 finished batches, a first cycle's budget of 50 (600 a minute over 5 s): cycles follow at once
    while most answers say "finished", so one poke confirms the job, each batch asked about once."""
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path, rows=2000, per_batch=10)
    wait_for_job(job)
    before = server.stats()["requests"]["status"]
    done = BatchSensor(task_id="wait", job=job, deferrable=False).poke({})
    assert done.is_done and done.xcom_value["batches_done"] == 200
    assert server.stats()["requests"]["status"] - before == 200


def test_a_finished_batch_whose_read_failed_is_asked_again_at_once_not_a_poll_interval_later(make_emulator,
                                                                                               monkeypatch, tmp_path):
    """The tail of a job under faults: every batch has finished, but some reads fail. Those are asked
    again in the next cycle at once, as a backlog, so one poke confirms the job (it stopped after
    the first cycle, and each level of the tail waited a poll interval)."""
    server = make_emulator()
    job = submit(server, monkeypatch, tmp_path, rows=80, per_batch=10)  # 8 batches: one cycle asks them all
    wait_for_job(job)
    server.set_faults(rate=1.0, kinds=["502"], routes=["status"], max_faults=3, retry_after=0)
    done = BatchSensor(task_id="wait", job=job, deferrable=False, poke_interval=60).poke({})
    assert done.is_done and done.xcom_value["batches_done"] == 8
    assert server.stats()["faults_injected"] == {"status:502": 3}


def test_a_rescheduled_poke_takes_back_what_the_last_one_learned(make_emulator, monkeypatch, tmp_path):
    """Each rescheduled poke is a new process: the finished batches (and their counts), the rate and
    the cycle are kept in the task's state store, so the next poke asks only about the others."""
    # 20 batches of 10: one finishes every 0.5 s, slower than a poke's backlog cycles confirm them at
    # the starting rate (10 a second), so the first poke ends with some finished and some not.
    server = make_emulator(items_per_second=20)
    job = submit(server, monkeypatch, tmp_path, rows=200, per_batch=10)
    store = DictStateStore()
    first = BatchSensor(task_id="wait", job=job, deferrable=False, mode="reschedule", poke_interval=5)
    time.sleep(2)
    assert not first.poke({"task_state_store": store}).is_done
    left = first._job_progress().running()
    assert 0 < len(left) < 20, left  # some finished, some not
    kept = store["wait"]
    assert kept["job_id"] == job["job_id"] and kept["rate"] == 600 and kept["cycles"] >= 1
    wait_for_job(job)
    before = server.stats()["requests"]["status"]
    second = BatchSensor(task_id="wait", job=job, deferrable=False, mode="reschedule", poke_interval=5)
    done = second.poke({"task_state_store": store})
    assert server.stats()["requests"]["status"] - before == len(left)  # only those not known finished
    assert done.is_done and (done.xcom_value["batches_done"], done.xcom_value["items_completed"]) == (20, 200)
    other_job = {**job, "job_id": "job-another"}  # a rerun submit's new job: nothing taken back
    third = BatchSensor(task_id="wait", job=other_job, deferrable=False, mode="reschedule")
    third._take_back(store, third._worker_polling().poller)
    assert len(third._job_progress().running()) == 20
    third._close_polling()
