"""The reliability suite: the real pipeline (submit -> wait -> load) on real Airflow and the emulator,
under injected faults, asserting on the destination. Every scenario records what it injected and
what it counted; ``make reliability-page`` runs the suite and renders docs/reliability.md from what
was recorded (tests/reliability/page.py).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import POSTGRES_DSN

ROOT = Path(__file__).resolve().parents[2]
# One distinctive key for the whole suite: the secrets scenario searches everything for it.
API_KEY = "sk-reliability-" + secrets.token_hex(12)
RESULTS: list[dict] = []
SCENARIOS = 11


def record(number: int, scenario: str, injected: str, counted: str, *,
           rows: tuple[int, int, int] | None = None, batches: tuple[int, int] | None = None) -> None:
    """One scenario's line on the reliability page. ``rows``: (expected, landed, distinct ids
    landed); ``batches``: (expected, paid for, as the emulator counted them)."""
    RESULTS.append({"number": number, "scenario": scenario, "injected": injected, "counted": counted,
                    "rows": rows, "batches": batches})


def pytest_sessionfinish(session, exitstatus):
    """With SCALEDOWN_RELIABILITY_RESULTS set (``make reliability-page`` sets it), a run that
    reached every scenario writes what they recorded there; nothing is written into the repository."""
    target = os.environ.get("SCALEDOWN_RELIABILITY_RESULTS")
    if target and len({r["number"] for r in RESULTS}) == SCENARIOS:
        Path(target).write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                            "results": sorted(RESULTS, key=lambda r: r["number"])}, indent=1))


@pytest.fixture(scope="session")
def reliability_emulator(tmp_path_factory):
    """The emulator as its own process, with the suite's key, restartable on the same port."""
    from tests.emulator_helpers import EmulatorProcess

    workdir = tmp_path_factory.mktemp("reliability-emulator")
    process = EmulatorProcess(["--data-dir", str(workdir / "data"), "--items-per-second", "3000"], workdir,
                              api_key=API_KEY).start()
    yield process
    process.stop()


@pytest.fixture
def pipeline_env(reliability_emulator, monkeypatch, tmp_path):
    """Connections for the reliable_pipeline DAG run by dag.test() in this process."""
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
        "conn_type": "batch_api", "host": reliability_emulator.url, "password": API_KEY,
        "extra": {"retry_initial_wait": 0.05, "retry_max_wait": 0.5, "retry_max_attempts": 8}}))
    monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_DB", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    monkeypatch.setenv("AIRFLOW__SCALEDOWN__MANIFEST_DIR", str(manifest_root() / "in-process"))
    return reliability_emulator


def manifest_root() -> Path:
    root = Path(os.environ.get("AIRFLOW_HOME", "/tmp")) / "reliability-jobs"
    root.mkdir(parents=True, exist_ok=True)
    return root


def query(sql: str):
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall() if cur.description else None


def drop(table: str) -> None:
    query(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(scope="session")
def cluster(reliability_emulator, tmp_path_factory):
    """Real Airflow components (api-server, scheduler, dag-processor, triggerer) on one throwaway
    home, shared by the scenarios that need real processes; left on disk for the secrets scan."""
    from tests.e2e.airflow_processes import AirflowProcesses

    home = tmp_path_factory.mktemp("reliability-airflow")
    airflow = AirflowProcesses(home, ROOT / "tests" / "dags", {
        "AIRFLOW_CONN_BATCH_API_DEFAULT": json.dumps({
            "conn_type": "batch_api", "host": reliability_emulator.url, "password": API_KEY,
            # This emulator honours Idempotency-Key, so chunks left in flight may be resent.
            "extra": {"retry_initial_wait": 0.2, "retry_max_wait": 2, "retry_max_attempts": 10,
                      "retry_ambiguous_submits": True}}),
        "AIRFLOW_CONN_RELIABILITY_DB": POSTGRES_DSN.replace("postgresql://", "postgres://"),
        "AIRFLOW__SCALEDOWN__MANIFEST_DIR": str(home / "jobs"),
        "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "16",
    })
    CLUSTERS.append(airflow)
    try:
        airflow.start_all()
        yield airflow
    finally:
        airflow.stop_all()


CLUSTERS: list = []
