"""Fixtures the load tests share: an emulator with a fast-retrying default connection (``env``), and
each real database behind the ``warehouse`` connection with a way to query it (``database``)."""

from __future__ import annotations

import json
import sqlite3

import duckdb
import psycopg2
import pytest

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from tests.conftest import MYSQL_CONNECTION, POSTGRES_DSN, mysql_query


@pytest.fixture
def env(make_emulator, monkeypatch, tmp_path):
    def setup(retry_total_timeout: float = 10, **emulator_config):
        """``retry_total_timeout``: how long a batch may keep failing (short where a test wants the
        load to give up)."""
        server = make_emulator(**emulator_config)
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(
            server, retry_initial_wait=0.01, retry_max_wait=0.05, retry_max_attempts=3,
            retry_total_timeout=retry_total_timeout))
        return server
    return setup


LOAD_OPTIONS: dict = {}  # what the database fixture needs every load to pass


@pytest.fixture(params=["sqlite", "duckdb", "postgres", "mysql"])
def database(request, tmp_path, monkeypatch):
    """A connection id and a query function for each real database."""
    kind = request.param
    if kind == "sqlite":
        path = tmp_path / "warehouse.db"
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(path)}))

        def query(sql):
            with sqlite3.connect(path) as conn:
                return conn.execute(sql).fetchall()
    elif kind == "duckdb":
        path = tmp_path / "warehouse.duckdb"
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "duckdb", "host": str(path)}))

        def query(sql):
            with duckdb.connect(str(path)) as conn:
                return conn.execute(sql).fetchall()
    elif kind == "mysql":  # MariaDB on the project's machines; LOAD DATA, its bulk path
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(MYSQL_CONNECTION))
        monkeypatch.setitem(LOAD_OPTIONS, "hook_params", {"local_infile": True})
        mysql_query("DROP TABLE IF EXISTS review_labels")

        def query(sql):
            return mysql_query(sql)
    else:
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", POSTGRES_DSN.replace("postgresql://", "postgres://"))
        with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS review_labels")

        def query(sql):
            with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
    query.kind = kind
    return query


