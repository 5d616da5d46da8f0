"""Fixtures the load tests share: an emulator with a fast-retrying default connection (``env``), and
each real database behind the ``warehouse`` connection with a way to query it (``database``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

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


def a_database(kind: str, conn_id: str, folder: Path, monkeypatch, *, table: str) -> Callable[[str], list]:
    """Points the Airflow connection ``conn_id`` at a real database of ``kind`` (a new file for SQLite and
    DuckDB; ``table`` dropped on the servers) and returns a function that runs SQL there and returns its
    rows; the function's ``kind`` names the database."""
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    if kind in ("sqlite", "duckdb"):
        path = str(folder / f"{conn_id.lower()}.{kind}")
        monkeypatch.setenv(variable, json.dumps({"conn_type": kind, "host": path}))
        connect = sqlite3.connect if kind == "sqlite" else duckdb.connect

        def query(sql):
            with connect(path) as conn:
                return conn.execute(sql).fetchall()
    elif kind == "mysql":  # MariaDB on the project's machines
        monkeypatch.setenv(variable, json.dumps(MYSQL_CONNECTION))
        mysql_query(f"DROP TABLE IF EXISTS `{table}`")

        def query(sql):
            return mysql_query(sql)
    elif kind == "postgres":
        monkeypatch.setenv(variable, POSTGRES_DSN.replace("postgresql://", "postgres://"))

        def query(sql):
            with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        query(f'DROP TABLE IF EXISTS "{table}"')
    else:
        raise ValueError(f"no database of kind {kind!r}")
    query.kind = kind  # type: ignore[attr-defined]
    return query


@pytest.fixture(params=["sqlite", "duckdb", "postgres", "mysql"])
def database(request, tmp_path, monkeypatch):
    """A connection id (``warehouse``) and a query function for each real database."""
    if request.param == "mysql":  # LOAD DATA, its bulk path
        monkeypatch.setitem(LOAD_OPTIONS, "hook_params", {"local_infile": True})
    return a_database(request.param, "warehouse", tmp_path, monkeypatch, table="review_labels")
