"""Exactly once when loads overlap: concurrent loads of overlapping jobs into one table, each in its
own process (as Airflow runs tasks), on real PostgreSQL, MariaDB, SQLite and DuckDB servers and files."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import time

import pandas as pd
import psycopg2
import pytest

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.job.manifest import read_manifest
from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
from tests.conftest import POSTGRES_DSN
from tests.emulator_helpers import EmulatorFactory, wait_for_job
from tests.integration.warehouse import a_database
from tests.state_store import DictStateStore

ROWS = 400
# A task process of its own for each load, as an executor starts one. Forked from a server process
# without threads: a plain fork of this process could inherit a lock that the in-process emulator's
# threads hold (SQLite's, logging's) and hang.
FORK = multiprocessing.get_context("forkserver")
FORK.set_forkserver_preload([__name__])


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """Five jobs over the same 400 ids (each with its own texts), submitted and finished."""
    factory = EmulatorFactory()
    server = factory()
    saved = os.environ.get("AIRFLOW_CONN_BATCH_API_DEFAULT")
    os.environ["AIRFLOW_CONN_BATCH_API_DEFAULT"] = connection_json(server, retry_initial_wait=0.01)
    directory = tmp_path_factory.mktemp("jobs")
    made = []
    for number in range(5):
        frame = pd.DataFrame({"id": range(ROWS), "body": [f"Job {number}, row {i}: fine kettle." for i in range(ROWS)]})
        made.append(DataFrameToBatchOperator(
            task_id=f"submit_{number}", dataframe=frame, id_column="id", text_column="body", request=Summarize(),
            max_items_per_batch=50, manifest_dir=str(directory)).execute({"task_state_store": DictStateStore()}))
    for job in made:
        wait_for_job(job)
    yield server, made
    factory.close()
    if saved is None:
        os.environ.pop("AIRFLOW_CONN_BATCH_API_DEFAULT", None)
    else:
        os.environ["AIRFLOW_CONN_BATCH_API_DEFAULT"] = saved


def batch_ids(job) -> set[str]:
    return {ref.batch_id for ref in read_manifest(job)[0].batches}


@pytest.fixture(params=["postgres", "mysql", "sqlite", "duckdb"])
def warehouse(request, tmp_path, monkeypatch):
    if request.param == "mysql":
        monkeypatch.setenv("SCALEDOWN_TEST_HOOK_PARAMS", json.dumps({"local_infile": True}))
    return a_database(request.param, "overlap", tmp_path, monkeypatch, table="overlap")


def _load(job, mode, start, failed, environment):
    os.environ.pop("SCALEDOWN_TEST_HOOK_PARAMS", None)  # the fork server may have started with another test's
    os.environ.update(environment)
    start.wait()
    try:
        BatchOutputToTableOperator(task_id="load", job=job, conn_id="overlap", table="overlap", mode=mode,
                                   hook_params=json.loads(os.environ.get("SCALEDOWN_TEST_HOOK_PARAMS", "null")),
                                   execution_timeout=None).execute({})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then the child ends
        failed.put(f"{type(exc).__name__}: {exc}")
        failed.close()
        failed.join_thread()  # the message must leave before os._exit, which skips the queue's flush
        os._exit(1)
    os._exit(0)


def _environment() -> dict[str, str]:
    """What a child needs of this process's environment (the fork server started earlier)."""
    return {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW", "SCALEDOWN_TEST_"))}


def load_at_once(jobs, mode):
    """Each job's load in its own process, all released at the same moment."""
    start, failed = FORK.Event(), FORK.Queue()
    processes = [FORK.Process(target=_load, args=(job, mode, start, failed, _environment())) for job in jobs]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
    errors = [failed.get() for _ in range(failed.qsize())] if not failed.empty() else []
    assert [p.exitcode for p in processes] == [0] * len(processes), errors
    return processes


@pytest.mark.parametrize("loads", [2, 5])
@pytest.mark.parametrize("mode", ["upsert", "append", "replace"])
def test_concurrent_loads_of_one_table_land_each_row_once(jobs, warehouse, mode, loads):
    _, made = jobs
    chosen = made[:loads]
    load_at_once(chosen, mode)
    total, distinct = warehouse("SELECT COUNT(*), COUNT(DISTINCT id) FROM overlap")[0]
    landed_batches = {row[0] for row in warehouse("SELECT DISTINCT batch_id FROM overlap")}
    if mode == "upsert":
        assert (total, distinct) == (ROWS, ROWS)  # one row per id, whoever came last
    elif mode == "append":
        assert (total, distinct) == (ROWS * loads, ROWS)  # every job's rows, each once
        assert landed_batches == set().union(*map(batch_ids, chosen))
    else:
        assert (total, distinct) == (ROWS, ROWS)
        assert any(landed_batches == batch_ids(job) for job in chosen)  # exactly one whole job
    load_at_once(chosen, mode)  # and again: a re-run of the same loads changes no count
    assert warehouse("SELECT COUNT(*), COUNT(DISTINCT id) FROM overlap")[0] == (total, distinct)


def test_a_table_created_by_an_upsert_load_refuses_a_second_row_for_an_id(jobs, warehouse):
    _, made = jobs
    load_at_once(made[:1], "upsert")
    with pytest.raises(Exception, match="(?i)unique|duplicate|constraint"):
        warehouse("INSERT INTO overlap SELECT * FROM overlap WHERE id = 1")


def _holders_waiting() -> int:
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return cur.fetchone()[0]


def test_a_load_killed_mid_merge_leaves_the_others_rows_whole(jobs, monkeypatch):
    """Two loads stage and queue for the target's lock (held here, as a third load would); one is
    killed while it waits to merge, the lock is released: the other lands whole, the dead one
    nothing, and the dead one's retry lands after it."""
    _, made = jobs
    monkeypatch.setenv("AIRFLOW_CONN_OVERLAP", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    blocker = psycopg2.connect(POSTGRES_DSN)
    with blocker.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS overlap")
        blocker.commit()
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_database() || '.' || "
                    "current_schema() || '.' || 'overlap', 0))")
    start, failed = FORK.Event(), FORK.Queue()
    victim, survivor = (FORK.Process(target=_load, args=(job, "upsert", start, failed, _environment()))
                        for job in made[:2])
    victim.start()
    survivor.start()
    start.set()
    deadline = time.monotonic() + 60
    while _holders_waiting() < 2:
        assert time.monotonic() < deadline, "the two loads never queued for the lock"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    blocker.rollback()  # the third "load" ends; the survivor takes the lock and merges
    blocker.close()
    survivor.join(60)
    assert survivor.exitcode == 0, failed.get() if not failed.empty() else ""
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM overlap")
        assert cur.fetchone() == (ROWS, ROWS)
        cur.execute("SELECT DISTINCT batch_id FROM overlap")
        assert {row[0] for row in cur.fetchall()} == batch_ids(made[1])
    load_at_once(made[:1], "upsert")  # the killed load's retry
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM overlap")
        assert cur.fetchone() == (ROWS, ROWS)
        cur.execute("SELECT DISTINCT batch_id FROM overlap")
        assert {row[0] for row in cur.fetchall()} == batch_ids(made[0])


def test_a_waiting_load_says_so_and_gives_up_at_its_timeout(jobs, monkeypatch, capfd):
    from airflow_batch_provider.destinations.table import TableLockTimeoutError

    _, made = jobs
    monkeypatch.setenv("AIRFLOW_CONN_OVERLAP", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    blocker = psycopg2.connect(POSTGRES_DSN)
    try:
        with blocker.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_database() || '.' || "
                        "current_schema() || '.' || 'overlap', 0))")
        from datetime import timedelta

        operator = BatchOutputToTableOperator(task_id="load", job=made[0], conn_id="overlap", table="overlap",
                                              mode="upsert", execution_timeout=timedelta(seconds=2))
        started = time.monotonic()
        with pytest.raises(TableLockTimeoutError, match="waiting for another load of table overlap"):
            operator.execute({})
        assert 1.5 < time.monotonic() - started < 30
    finally:
        blocker.rollback()
        blocker.close()
    assert "Waiting for another load of table overlap to finish (lock_timeout 2 s)" in "".join(capfd.readouterr())


def test_an_upsert_into_a_schema_qualified_sqlite_table_creates_its_index(jobs, tmp_path, monkeypatch):
    path = tmp_path / "qualified.db"
    monkeypatch.setenv("AIRFLOW_CONN_QUALIFIED", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    _, made = jobs
    BatchOutputToTableOperator(task_id="load", job=made[0], conn_id="qualified", table="main.results",
                               mode="upsert").execute({})
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (ROWS,)
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'").fetchone() == (1,)
