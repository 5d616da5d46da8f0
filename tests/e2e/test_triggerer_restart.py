"""Real scheduler + triggerer processes: the triggerer is SIGKILLed mid-wait and restarted; the
task still succeeds and the trigger's deadline is the one fixed before the kill."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.airflow_processes import AirflowProcesses, find_value

pytestmark = pytest.mark.e2e
DAG_ID = "wait_through_restart"


def wait_for(condition, timeout, what, airflow):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{airflow.tail_logs()}")


def test_a_killed_triggerer_is_replaced_and_the_deadline_holds(emulator_process, tmp_path):
    # 240 items at 4 items/s: about a minute of waiting, long enough for a kill and a restart.
    emulator = emulator_process("--items-per-second", "4", "--data-dir", str(tmp_path / "emulator"))
    connection = json.dumps({"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key})
    airflow = AirflowProcesses(tmp_path / "airflow", Path(__file__).parent / "dags",
                               {"AIRFLOW_CONN_BATCH_API_DEFAULT": connection,
                                "TEST_MANIFEST_DIR": str(tmp_path / "jobs")})
    try:
        airflow.start_all()
        run_id = airflow.trigger_dag(DAG_ID)
        wait_for(lambda: airflow.task_state(DAG_ID, run_id, "wait") == "deferred", 120, "the sensor to defer", airflow)
        [before] = wait_for(lambda: [t for t in airflow.triggers() if t["triggerer_id"]], 60,
                            "a triggerer to take the trigger", airflow)
        deadline = find_value(before["kwargs_json"], "deadline")
        assert deadline and abs(deadline - (time.time() + 900)) < 120
        assert emulator.api_key not in before["kwargs_json"]

        assert emulator.stats().get("batches_completed", 0) < 6  # still waiting when the kill comes
        airflow.kill("triggerer")
        time.sleep(3)
        airflow.start("triggerer")
        [after] = wait_for(lambda: [t for t in airflow.triggers() if t["triggerer_id"] not in (None, before["triggerer_id"])],
                           90, "the new triggerer to take the trigger over", airflow)
        assert after["id"] == before["id"]
        assert find_value(after["kwargs_json"], "deadline") == deadline  # neither reset nor extended

        wait_for(lambda: airflow.run_state(DAG_ID, run_id) in ("success", "failed"), 240, "the run to end", airflow)
        assert airflow.run_state(DAG_ID, run_id) == "success", airflow.tail_logs()
        assert airflow.task_state(DAG_ID, run_id, "done") == "success"
        stats = emulator.stats()
        assert stats["batches"] == 6 and stats["items"] == 240
    finally:
        airflow.stop_all()
