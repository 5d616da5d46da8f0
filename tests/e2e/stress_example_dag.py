"""Stress: the example DAG ``enrich_reviews`` run back to back on real Airflow components while a
CPU hog keeps every core busy, counting failed tries from the task-instance history.

Not part of ``make test`` (it takes about a minute a run): ``make stress`` or
``python -m tests.e2e.stress_example_dag --runs 20``. api-server, scheduler, dag-processor and
triggerer run as separate processes on a throwaway AIRFLOW_HOME, LocalExecutor, PostgreSQL metadata
(a database of its own, dropped afterwards), ``default_deferrable`` True; the emulator plays the API.

Airflow 3.3's stale defer-exit executor event (apache/airflow#66374, #67287, #71580, #72716) fails
a task whose trigger fired while the scheduler is slow; retries would hide it, so every try is
counted: a run "fails" when its DAG run fails, a try "fails" when the task-instance history (or the
task instance, for the last try) holds it as failed or up for retry. The scheduler's "state attribute is" lines count the race itself.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from tests.conftest import POSTGRES_DSN
from tests.e2e.airflow_processes import AirflowProcesses
from tests.emulator_helpers import EmulatorProcess

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "enrich_reviews"
RACE = "but the task instance's state attribute is"


def hog() -> None:
    while True:
        pass


def run(runs: int, workdir: Path, hogs: int) -> dict:
    name = f"airflow_stress_{secrets.token_hex(4)}"
    admin = psycopg2.connect(POSTGRES_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    dsn = POSTGRES_DSN.rsplit("/", 1)[0] + f"/{name}"
    emulator = EmulatorProcess(["--items-per-second", "2000"], workdir).start()
    airflow = AirflowProcesses(workdir / "airflow", ROOT / "dags", {
        "AIRFLOW__SCALEDOWN__MANIFEST_DIR": str(workdir / "jobs"),
        "AIRFLOW_CONN_BATCH_API_DEFAULT": json.dumps(
            {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key}),
        "AIRFLOW_CONN_REVIEWS_DB": json.dumps({"conn_type": "sqlite", "host": str(workdir / "reviews.db")}),
        "PYTHONPATH": str(ROOT),
    }, metadata_database=dsn.replace("postgresql://", "postgresql+psycopg2://"))
    (workdir / "airflow").mkdir()
    burners = [multiprocessing.Process(target=hog, daemon=True) for _ in range(hogs)]
    results: list[dict] = []
    try:
        airflow.start_all()
        for burner in burners:
            burner.start()
        for number in range(1, runs + 1):
            started = time.monotonic()
            run_id = airflow.trigger_dag(DAG_ID)
            deadline = time.monotonic() + 900
            while (state := airflow.run_state(DAG_ID, run_id)) not in ("success", "failed"):
                if time.monotonic() > deadline:
                    state = "timed out"
                    break
                time.sleep(2)
            results.append({"run": number, "run_id": run_id, "state": state,
                            "seconds": round(time.monotonic() - started)})
            print(f"run {number}/{runs}: {state} in {results[-1]['seconds']} s", flush=True)
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            ours = tuple(r["run_id"] for r in results) or ("",)  # not the scheduled run unpausing creates
            cur.execute("SELECT task_id, state FROM task_instance_history WHERE dag_id = %s AND run_id IN %s",
                        (DAG_ID, ours))
            earlier_tries = cur.fetchall()
            cur.execute("SELECT task_id, state, try_number FROM task_instance WHERE dag_id = %s AND run_id IN %s",
                        (DAG_ID, ours))
            last_tries = cur.fetchall()
        scheduler_log = "".join(path.read_text(errors="replace") for key, path in airflow.logs.items()
                                if key.startswith("scheduler"))
    finally:
        for burner in burners:
            burner.kill()
        airflow.stop_all()
        emulator.stop()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    # A try that ran and did not succeed; upstream_failed tasks never ran.
    tries = [(task, state) for task, state in earlier_tries] + [(task, state) for task, state, _ in last_tries]
    failed_tries = [(task, state) for task, state in tries if state in ("failed", "up_for_retry")]
    return {
        "runs": runs, "succeeded": sum(r["state"] == "success" for r in results),
        "tries": sum(state != "upstream_failed" for _, state in tries), "failed_tries": len(failed_tries),
        "failed_tries_by_task": sorted({task: sum(t == task for t, _ in failed_tries)
                                        for task, _ in failed_tries}.items()),
        "race_messages": scheduler_log.count(RACE), "cpu_hogs": hogs,
        "median_run_seconds": sorted(r["seconds"] for r in results)[len(results) // 2] if results else None,
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes (default: one a core)")
    parser.add_argument("--json", type=Path, help="write the summary here too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scaledown-stress-") as workdir:
        summary = run(args.runs, Path(workdir), args.hogs)
    text = json.dumps({k: v for k, v in summary.items() if k != "results"}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if summary["succeeded"] == summary["runs"] and summary["failed_tries"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
