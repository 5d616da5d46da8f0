"""The pipeline on real Airflow components inside a company network: the API (the emulator process)
served over HTTPS by a private CA and requiring a client certificate, reached through an HTTP
CONNECT proxy with a password, on machines whose REQUESTS_CA_BUNDLE and SSL_CERT_FILE name the system
bundle. submit -> deferred sensor on a real triggerer -> load into PostgreSQL. Then a user marks a
deferred wait failed, and the triggerer's kill path logs what keeps running and is billed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_DSN
from tests.e2e.airflow_processes import AirflowProcesses
from tests.emulator_helpers import EmulatorProcess
from tests.reliability.conftest import drop, query
from tests.tls_helpers import ConnectProxy, corporate_environment, private_ca

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "reliable_pipeline"


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("company-network")
    corp = private_ca(workdir / "ca")
    emulator = EmulatorProcess(
        ["--items-per-second", "3000", "--ssl-certfile", corp.server_cert, "--ssl-keyfile", corp.server_key,
         "--ssl-client-ca", corp.ca], workdir, control_options={"verify": corp.ca, "cert": corp.client_cert}).start()
    proxy = ConnectProxy(workdir).start()
    airflow = AirflowProcesses(workdir / "airflow", ROOT / "tests" / "dags", {
        **corporate_environment(),
        "AIRFLOW_CONN_BATCH_API_DEFAULT": json.dumps({
            "conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key,
            "extra": {"verify": corp.ca, "cert": corp.client_cert, "proxies": {"https": proxy.url()}}}),
        "AIRFLOW_CONN_RELIABILITY_DB": POSTGRES_DSN.replace("postgresql://", "postgres://"),
        "AIRFLOW__SCALEDOWN__MANIFEST_DIR": str(workdir / "jobs"),
    })
    (workdir / "airflow").mkdir()
    try:
        airflow.start_all()
        yield airflow, emulator, proxy
    finally:
        airflow.stop_all()
        proxy.stop()
        emulator.stop()


def start_run(airflow: AirflowProcesses, **conf) -> str:
    return airflow.trigger_dag(DAG_ID, conf=conf)


def wait_for(condition, timeout: float, what: str, airflow: AirflowProcesses):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{airflow.tail_logs()}")


def test_submit_deferred_wait_and_load_through_private_ca_client_certificate_and_proxy(company):
    airflow, emulator, proxy = company
    drop("corp_network")
    before = emulator.stats()
    run_id = start_run(airflow, rows=400, table="corp_network")
    state = wait_for(lambda: (s := airflow.run_state(DAG_ID, run_id)) in ("success", "failed") and s, 300,
                     "the run to end", airflow)
    assert state == "success", airflow.tail_logs()
    assert query("SELECT COUNT(*), COUNT(DISTINCT id) FROM corp_network WHERE status = 'ok'") == [(400, 400)]
    after = emulator.stats()
    assert after["batches"] - before["batches"] == 8 and after["items"] - before["items"] == 400  # paid once
    assert proxy.tunnels_to(emulator.port) >= 3  # the submit's, the triggerer's and the load's connections
    wait = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait")
    assert wait["try_number"] == 1 and wait["state"] == "success"
    # The trigger ended the task and wrote its return value: the counts, as a dict.
    entry = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait/xcomEntries/return_value")
    value = entry["value"]
    assert isinstance(value, dict), value  # not JSON text, as TaskSuccessEvent(xcoms=...) would store it
    assert value["status"] == "success" and value["items_completed"] == 400 and value["batches_total"] == 8


def test_marking_a_deferred_wait_failed_logs_the_batches_still_billed(company):
    airflow, emulator, _ = company
    drop("corp_killed")
    emulator.control("/_emulator/capacity", items_per_second=2)
    try:
        run_id = start_run(airflow, rows=200, table="corp_killed")
        wait_for(lambda: airflow.task_state(DAG_ID, run_id, "wait") == "deferred", 180, "the wait to defer", airflow)
        logs = airflow.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / "task_id=wait"

        def trigger_log(text: str) -> str | None:
            said = "".join(path.read_text(errors="replace") for path in logs.glob("attempt=1.log.trigger.*.log"))
            return said if text in said else None

        wait_for(lambda: trigger_log("Waiting for job"), 120, "the trigger to run", airflow)
        airflow.api("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait", json={"new_state": "failed"})
        said = wait_for(lambda: trigger_log("Stopped waiting for job"), 60, "the trigger's on_kill to log", airflow)
    finally:
        emulator.control("/_emulator/capacity", items_per_second=3000)
    assert "billed" in said and "still running when last looked" in said
    assert airflow.task_state(DAG_ID, run_id, "wait") == "failed"
