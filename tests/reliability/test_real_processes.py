"""Scenarios 2, 3, 8 on real Airflow processes (scheduler with LocalExecutor workers, triggerer,
dag-processor, api-server) against the emulator process."""

from __future__ import annotations

import os
import signal
import time

import psutil
import requests

from tests.e2e.airflow_processes import find_value
from tests.reliability.conftest import API_KEY, drop, query, record

DAG_ID = "reliable_pipeline"


def control(emulator, path, **body):
    requests.put(emulator.url + path, json=body, headers={"x-api-key": API_KEY}, timeout=10).raise_for_status()


def wait_for(condition, timeout, what, airflow):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{airflow.tail_logs()}")


def start_run(airflow, **conf) -> str:
    try:
        airflow.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    except requests.HTTPError:
        wait_for(lambda: _unpaused(airflow), 90, "the DAG to be parsed", airflow)
    return airflow.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})["dag_run_id"]


def _unpaused(airflow) -> bool:
    try:
        airflow.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        return True
    except requests.HTTPError:
        return False


def finished(airflow, run_id) -> str | None:
    state = airflow.run_state(DAG_ID, run_id)
    return state if state in ("success", "failed") else None


def test_2_worker_killed_right_after_submitting(cluster, reliability_emulator):
    airflow, emulator = cluster, reliability_emulator
    drop("rel_worker")
    control(emulator, "/_emulator/faults", rate=1.0, kinds=["slow"], slow_seconds=0.7, routes=["submit"])
    before = emulator.stats()
    try:
        run_id = start_run(airflow, rows=1000, table="rel_worker")
        wait_for(lambda: emulator.stats()["batches"] - before["batches"] >= 6, 180, "6 accepted batches", airflow)
        ti_id = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/submit")["id"]
        [task_process] = [p for p in psutil.process_iter(["cmdline"])
                          if f"airflow worker -- {ti_id}" in " ".join(p.info["cmdline"] or [])]
        accepted_at_kill = emulator.stats()["batches"] - before["batches"]
        os.kill(task_process.pid, signal.SIGKILL)
    finally:
        control(emulator, "/_emulator/faults", rate=0.0)
    state = wait_for(lambda: finished(airflow, run_id), 300, "the run to end", airflow)
    tries = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/submit")["try_number"]
    after = emulator.stats()
    assert state == "success", airflow.tail_logs()
    assert tries >= 2  # the killed try, then the retry that re-attached
    assert after["batches"] - before["batches"] == 20  # zero additional batches
    rows = query("SELECT COUNT(*), COUNT(DISTINCT id) FROM rel_worker")[0]
    assert rows == (1000, 1000)
    record(2, "Worker killed (SIGKILL) right after submitting; the task retries",
           f"task process killed after {accepted_at_kill} of 20 batches were accepted",
           f"try {tries} resent the chunks left in flight with their Idempotency-Key "
           "(retry_ambiguous_submits: this server honours it); 20 batches in all (0 extra); 1000/1000 rows landed once",
           rows=(1000, *rows), batches=(20, after["batches"] - before["batches"]))


def test_3_triggerer_killed_mid_wait(cluster, reliability_emulator):
    airflow, emulator = cluster, reliability_emulator
    drop("rel_triggerer")
    control(emulator, "/_emulator/capacity", items_per_second=15)
    try:
        run_id = start_run(airflow, rows=600, table="rel_triggerer")
        wait_for(lambda: airflow.task_state(DAG_ID, run_id, "wait") == "deferred", 180, "the sensor to defer", airflow)
        [before] = wait_for(lambda: [t for t in airflow.triggers() if t["triggerer_id"]], 60, "a triggerer", airflow)
        deadline = find_value(before["kwargs_json"], "deadline")
        airflow.kill("triggerer")
        time.sleep(2)
        airflow.start("triggerer")
        [after] = wait_for(lambda: [t for t in airflow.triggers()
                                    if t["triggerer_id"] not in (None, before["triggerer_id"])],
                           120, "the new triggerer to take over", airflow)
        assert find_value(after["kwargs_json"], "deadline") == deadline
    finally:
        control(emulator, "/_emulator/capacity", items_per_second=3000)
    assert wait_for(lambda: finished(airflow, run_id), 300, "the run to end", airflow) == "success"
    rows = query("SELECT COUNT(*), COUNT(DISTINCT id) FROM rel_triggerer")[0]
    assert rows == (600, 600)
    record(3, "Triggerer killed (SIGKILL) mid-wait and restarted",
           "triggerer process group killed while the sensor was deferred",
           "trigger taken over with the same absolute deadline; 600/600 rows landed once", rows=(600, *rows))


def test_8_ten_concurrent_runs_of_10000_rows(cluster, reliability_emulator):
    airflow, emulator = cluster, reliability_emulator
    control(emulator, "/_emulator/capacity", items_per_second=6000)
    before = emulator.stats()
    runs = {}
    for number in range(10):
        drop(f"rel_load_{number}")
        runs[number] = start_run(airflow, rows=10_000, table=f"rel_load_{number}")
    started = time.monotonic()
    states = {n: wait_for(lambda r=r: finished(airflow, r), 900, f"run {n}", airflow) for n, r in runs.items()}
    elapsed = time.monotonic() - started
    assert set(states.values()) == {"success"}, states
    counts = [query(f"SELECT COUNT(*), COUNT(DISTINCT id), COUNT(*) FILTER (WHERE status = 'ok') "
                    f"FROM rel_load_{number}")[0] for number in runs]
    assert counts == [(10_000, 10_000, 10_000)] * len(runs)
    after = emulator.stats()
    assert after["batches"] - before["batches"] == 2000 and after["items"] - before["items"] == 100_000
    record(8, "Load: 10 concurrent DAG runs × 10 000 rows, one emulator",
           "10 runs triggered at once (LocalExecutor, parallelism 4)",
           f"all 10 succeeded in {elapsed:.0f} s; 100 000/100 000 rows landed once; 2000 batches",
           rows=(100_000, sum(c[0] for c in counts), sum(c[1] for c in counts)),
           batches=(2000, after["batches"] - before["batches"]))
