"""Test set-up. Airflow reads its settings at import, so they are set before anything imports it."""

import os
import tempfile
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="airflow-test-home-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).parent / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
# Manifests of tests that set no manifest_dir go to the throwaway home, never into the repository.
os.environ["AIRFLOW__SCALEDOWN__MANIFEST_DIR"] = f"{_HOME}/scaledown_jobs"
# A load's downloaded outputs too (the default is the machine's temporary directory).
os.environ["AIRFLOW__SCALEDOWN__SPOOL_DIR"] = f"{_HOME}/scaledown_spool"
# A deployment with a triggerer, as Airflow's guide advises; tests of the worker-side wait say so.
os.environ["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = "True"
os.environ.pop("SCALEDOWN_API_KEY", None)

# The PostgreSQL server of the warehouse tests. On the project's machines (CI included) one runs on
# 127.0.0.1:5432; a missing server fails those tests, it does not skip them.
POSTGRES_DSN = os.environ.get("TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
# MariaDB/MySQL through MySqlHook on the pure-Python driver (mysqlclient needs the server's headers).
MYSQL_CONNECTION = {"conn_type": "mysql", "host": os.environ.get("TEST_MYSQL_HOST", "127.0.0.1"), "port": 3306,
                    "login": "root", "schema": "test", "extra": {"client": "mysql-connector-python"}}


def mysql_query(sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on the test MariaDB/MySQL database (autocommit); its rows, if any."""
    import mysql.connector

    conn = mysql.connector.connect(host=MYSQL_CONNECTION["host"], port=3306, user="root", database="test",
                                   autocommit=True)
    try:
        cursor = conn.cursor()
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()

pytest_plugins = ["airflow_batch_provider.emulator.pytest_plugin"]

import pytest  # noqa: E402

from tests.emulator_helpers import EmulatorFactory, EmulatorProcess  # noqa: E402


@pytest.fixture
def make_emulator():
    """``make_emulator(api_version=2, items_per_second=50)``: an in-process emulator for one test."""
    factory = EmulatorFactory()
    yield factory
    factory.close()


@pytest.fixture
def emulator_process(tmp_path):
    """``emulator_process("--data-dir", d)``: the emulator as a separate OS process."""
    started: list[EmulatorProcess] = []

    def start(*args: str, port: int | None = None) -> EmulatorProcess:
        proc = EmulatorProcess(list(args), tmp_path, port=port).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh Airflow metadata database (SQLite), for dag.test() tests."""
    from airflow.utils import db

    db.resetdb()
    yield


def load_dag(name: str):
    """The module-level ``dag`` of tests/dags/<name>.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


@pytest.fixture
def moto_s3(tmp_path):
    """moto's S3 in server mode on a free loopback port (its own process, stopped by its id): the
    endpoint URL and a boto3 client. Buckets are the test's to create."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    import boto3
    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "moto.log"
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + "/moto-api/", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.2)
        yield url, boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def aws_connection(endpoint: str) -> str:
    """An ``aws`` connection to moto's S3 at ``endpoint``."""
    import json

    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                       "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})
