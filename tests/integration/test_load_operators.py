"""Load operators with the emulator and real SQLite, DuckDB and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg2
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.destinations.table import TableSchemaError
from airflow_batch_provider.job.manifest import read_manifest, write_manifest
from airflow_batch_provider.job.reconcile import BatchDownloadError
from airflow_batch_provider.operators.load import (
    BatchOutputToParquetOperator,
    BatchOutputToTableOperator,
    IncrementalModeError,
    TooManyFailedRowsError,
)
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Classify, Extract, Label, Summarize
from tests.conftest import MYSQL_CONNECTION, POSTGRES_DSN, mysql_query
from tests.emulator_helpers import wait_for_job
from tests.integration.warehouse import LOAD_OPTIONS
from tests.state_store import DictStateStore

CLASSIFY = Classify([Label("Positive", "Does the review praise the product?"),
                     Label("Very negative!", "Does the review complain?")])
EXTRACT = Extract({"product": "the product", "price": "price paid", "city": "city"})
TEXTS = ["I love the Sony WH-1000XM5, bought for $349 in London. Great sound!",
         "The Dyson V15 broke after 2 days. Terrible, I want a refund of $700.",
         "Shipping to Berlin was fast and the Breville espresso machine works well."]


def frame(n=30, start=0, suffix=""):
    return pd.DataFrame({"review_id": range(start, start + n),
                         "body": [TEXTS[i % 3] + f" Order {i}{suffix}." for i in range(start, start + n)]})


def submit(tmp_path, data, request=CLASSIFY, per_batch=10, **kwargs):
    job = DataFrameToBatchOperator(task_id="submit", dataframe=data, id_column="review_id", text_column="body",
                                   request=request, max_items_per_batch=per_batch,
                                   manifest_dir=str(tmp_path / "jobs"), **kwargs
                                   ).execute({"task_state_store": DictStateStore()})
    wait_for_job(job, timeout=30)
    return job


def load(job, mode="append", **kwargs):
    return BatchOutputToTableOperator(task_id="load", job=job, conn_id="warehouse", table="review_labels",
                                      mode=mode, **{**LOAD_OPTIONS, **kwargs}).execute({})


def test_classify_lands_typed_rows_with_label_score_columns(env, tmp_path, database):
    env()
    summary = load(submit(tmp_path, frame(30)), label_scores=True)
    assert (summary["rows"], summary["ok"], summary["error"], summary["missing"]) == (30, 30, 0, 0)
    rows = database('SELECT review_id, status, top_label, scores, score_positive, score_very_negative, '
                    'batch_id, model, request_fingerprint, loaded_at FROM review_labels ORDER BY review_id')
    assert len(rows) == 30 and [r[0] for r in rows] == list(range(30))
    assert {r[2] for r in rows} == {"Positive", "Very negative!"}
    assert rows[1][2] == "Very negative!" and rows[0][2] == "Positive"
    assert abs(json.loads(rows[0][3])["Positive"] - rows[0][4]) < 1e-9 and abs(rows[0][4] + rows[0][5] - 1) < 1e-3
    assert all(r[1] == "ok" and r[7] == "classify" and len(r[8]) == 16 and r[9] for r in rows)
    assert isinstance(rows[0][0], int)  # the original id type survives the round trip
    loaded_at = rows[0][9] if not isinstance(rows[0][9], str) else datetime.fromisoformat(rows[0][9])
    if database.kind == "mysql":  # DATETIME(6) has no zone: it holds UTC's wall time
        assert loaded_at.tzinfo is None
        loaded_at = loaded_at.replace(tzinfo=UTC)
    assert abs(loaded_at - datetime.now(UTC)) < timedelta(hours=1)  # the time, with its zone


def test_summarize_and_extract_columns(env, tmp_path, database):
    env()
    load(submit(tmp_path, frame(6), request=Summarize(max_tokens=40)), mode="replace")
    rows = database("SELECT summary, input_chars, output_chars FROM review_labels ORDER BY review_id")
    assert len(rows) == 6 and all(r[0] and r[1] > r[2] > 0 for r in rows)
    database("DROP TABLE review_labels")
    load(submit(tmp_path, frame(6), request=EXTRACT), entity_columns="first")
    rows = database("SELECT entities, entity_product, entity_price, entity_city FROM review_labels ORDER BY review_id")
    assert rows[0][1:] == ("Sony WH-1000XM5", "$349", "London")
    assert {e["type"] for e in json.loads(rows[0][0])} == {"product", "price", "city"}
    assert rows[1][2] == "$700" and rows[2][3] == "Berlin"


def test_modes_and_exactly_once_on_rerun(env, tmp_path, database):
    env()
    first = submit(tmp_path, frame(20))
    load(first)
    load(first)  # a re-run of the same load: every row exactly once
    assert database("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels") == [(20, 20)]
    second = submit(tmp_path, frame(20, start=10, suffix=" v2"))
    load(second, mode="upsert")
    assert database("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels") == [(30, 30)]
    assert database("SELECT COUNT(*) FROM review_labels WHERE batch_id IN "
                    f"({', '.join(repr(b.batch_id) for b in read_manifest(second)[0].batches)})") == [(20,)]
    load(second)  # append of the same job again: its batches replace themselves
    assert database("SELECT COUNT(*) FROM review_labels") == [(30,)]
    load(first, mode="replace")
    assert database("SELECT COUNT(*), MIN(review_id), MAX(review_id) FROM review_labels") == [(20, 0, 19)]


def test_item_errors_and_missing_rows_are_landed_and_counted(env, tmp_path, database):
    env(item_failure_rate=0.2, output_drop_rate=0.1, output_duplicate_rate=0.1)
    job = submit(tmp_path, frame(50))
    with pytest.raises(TooManyFailedRowsError, match=r"of 50 rows failed .* All rows were landed") as failed:
        load(job)
    assert isinstance(failed.value, AirflowFailException)  # a retry lands the same rows: not retried
    rows = dict(database("SELECT status, COUNT(*) FROM review_labels GROUP BY status"))
    assert rows["error"] > 0 and rows["missing"] > 0 and sum(rows.values()) == 50
    assert database("SELECT DISTINCT error_code FROM review_labels WHERE status = 'missing'") == [("no_output_line",)]
    summary = load(job, max_failed_ratio=0.9)
    assert summary["duplicate_lines"] > 0 and summary["ok"] + summary["error"] + summary["missing"] == 50
    assert database("SELECT COUNT(*) FROM review_labels") == [(50,)]


def test_the_task_log_tells_what_landed_and_why_rows_failed(env, tmp_path, database, caplog, capfd):
    env(item_failure_rate=0.5, output_drop_rate=0.1)
    job = submit(tmp_path, frame(60))
    with caplog.at_level(logging.INFO):
        summary = load(job, max_failed_ratio=1.0)
    log = caplog.text + "".join(capfd.readouterr())  # Airflow's structlog may write to the stream
    failed = summary["error"] + summary["missing"]
    assert summary["error"] and summary["missing"] and failed > 20
    assert re.search(rf"ok\s+{summary['ok']}\s+[\d.]+%", log) and re.search(rf"error\s+{summary['error']}\s", log)
    assert re.search(rf"missing\s+{summary['missing']}\s", log)
    assert "top error kinds: " in log and f"no_output_line {summary['missing']}" in log
    assert f"the first 20 of {failed} failed rows" in log
    table = log[log.index(f"the first 20 of {failed} failed rows"):]
    failed_ids = {str(i) for (i,) in database("SELECT review_id FROM review_labels WHERE status <> 'ok'")}
    shown = re.findall(r"^(\d+)\s+(?:error|missing)\s", table, re.M)
    assert len(shown) == 20 and set(shown) <= failed_ids
    caplog.clear()
    with caplog.at_level(logging.INFO):
        load(job, max_failed_ratio=1.0, log_failed_rows=0)  # where logs are read more widely than the table
    log = caplog.text + "".join(capfd.readouterr())
    assert "top error kinds: " in log and "failed rows" not in log


def test_a_failed_batch_lands_its_rows_as_missing(env, tmp_path, database):
    env(batch_failure_rate=1.0)
    summary = load(submit(tmp_path, frame(20)), max_failed_ratio=1.0)
    assert summary["missing"] == 20
    assert database("SELECT DISTINCT status, error_code FROM review_labels") == [("missing", "batch_failed")]


def test_output_lines_for_unknown_ids_are_counted_not_loaded(env, tmp_path, database):
    env()
    a = submit(tmp_path, frame(10))
    b = submit(tmp_path, frame(10, start=100))
    manifest_b, location_b = read_manifest(b)
    manifest_b.batches = read_manifest(a)[0].batches  # b's rows, a's batches: every line is a stranger
    write_manifest(location_b, manifest_b)
    summary = load(b, max_failed_ratio=1.0)
    assert (summary["unknown_lines"], summary["missing"], summary["ok"]) == (10, 10, 0)
    assert database("SELECT MIN(review_id) FROM review_labels") == [(100,)]


def test_a_failure_mid_load_leaves_the_target_unchanged(env, tmp_path, database):
    server = env(retry_total_timeout=1.5)  # the outage outlasts it
    load(submit(tmp_path, frame(10)))
    job = submit(tmp_path, frame(40, start=10))
    server.set_faults(rate=1.0, kinds=["502"], routes=["output"], skip_first=2)  # batch 3 of 4 never comes
    with pytest.raises(BatchDownloadError, match=r"batch batch-\w+ of job job-\w+ could not be read, so nothing was landed: "
                                                 r"(it has failed|no request of the job has succeeded) for"):
        load(job, mode="replace")
    assert database("SELECT COUNT(*), MAX(review_id) FROM review_labels") == [(10, 9)]
    server.set_faults(rate=0.0)
    load(job, mode="replace")
    assert database("SELECT COUNT(*), MIN(review_id) FROM review_labels") == [(40, 10)]


def test_a_failure_mid_load_on_a_new_table_leaves_no_table(env, tmp_path, database):
    server = env(retry_total_timeout=1.5)  # the outage outlasts it
    job = submit(tmp_path, frame(40))
    server.set_faults(rate=1.0, kinds=["503"], routes=["output"], skip_first=1)
    with pytest.raises(BatchDownloadError, match=r"batch batch-\w+ of job job-\w+ could not be read, so nothing was landed: "
                                                 r"(it has failed|no request of the job has succeeded) for"):
        load(job)
    kinds = {"sqlite": "SELECT name FROM sqlite_master WHERE name = 'review_labels'",
             "duckdb": "SELECT table_name FROM information_schema.tables WHERE table_name = 'review_labels'",
             # this schema's: a namesake in another (the schema-qualified test's) is not this load's
             "postgres": "SELECT tablename FROM pg_tables WHERE tablename = 'review_labels' "
                         "AND schemaname = current_schema()",
             # CREATE TABLE commits there: no table means the load never reached the database
             "mysql": "SELECT table_name FROM information_schema.tables WHERE table_name = 'review_labels' "
                      "AND table_schema = DATABASE()"}
    assert database(kinds[database.kind]) == []  # every batch is read before the destination is touched


def test_an_existing_table_that_does_not_fit_is_refused(env, tmp_path, database):
    env()
    database("CREATE TABLE review_labels (review_id BIGINT, note TEXT)")
    database("INSERT INTO review_labels VALUES (1, 'keep me')")
    with pytest.raises(TableSchemaError, match="has no column .status., .error_code."):
        load(submit(tmp_path, frame(5)))
    assert database("SELECT * FROM review_labels") == [(1, "keep me")]


def test_a_constraint_violation_at_merge_rolls_everything_back(env, tmp_path, monkeypatch):
    env()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS review_labels")
    load(submit(tmp_path, frame(5)))
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE review_labels ADD CONSTRAINT no_big_ids CHECK (review_id < 30)")
    job = submit(tmp_path, frame(30, start=5))
    with pytest.raises(Exception, match="no_big_ids"):  # psycopg's CheckViolation
        load(job, mode="replace")
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM review_labels")
        assert cur.fetchone() == (5,)
        cur.execute("ALTER TABLE review_labels DROP CONSTRAINT no_big_ids")
    load(job, mode="replace")
    load(job, mode="upsert")
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels")
        assert cur.fetchone() == (30, 30)


def test_parquet_destination_is_replaced_whole(env, tmp_path):
    env()
    target = tmp_path / "out" / "labels.parquet"
    summary = BatchOutputToParquetOperator(task_id="p", job=submit(tmp_path, frame(25)), path=str(target),
                                           label_scores=True).execute({})
    table = pq.read_table(target)
    assert summary["ok"] == 25 and table.num_rows == 25
    assert str(table.schema.field("review_id").type) == "int64" and "score_positive" in table.schema.names
    BatchOutputToParquetOperator(task_id="p", job=submit(tmp_path, frame(7)), path=f"file://{target}").execute({})
    assert pq.read_table(target).num_rows == 7 and len(list(target.parent.iterdir())) == 1


def test_incremental_submit_skips_rows_landed_ok_with_the_same_fingerprint(env, tmp_path, database):
    server = env()
    load(submit(tmp_path, frame(30)))
    changed = frame(40)
    changed.loc[5, "body"] = "Edited: the product is now awful."
    job = submit(tmp_path, changed, skip_landed_conn_id="warehouse", skip_landed_table="review_labels")
    assert (job["rows"], job["skipped_rows"]) == (11, 29)  # 10 new + 1 changed
    assert server.stats()["items"] == 30 + 11
    load(job, mode="upsert")
    assert database("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels") == [(40, 40)]


def test_a_nul_sent_back_by_the_api_does_not_break_the_postgres_copy(monkeypatch):
    """Inputs with NUL are refused before paying; a result holding one still lands (as U+FFFD)."""
    import pyarrow as pa
    from airflow.sdk import BaseHook

    from airflow_batch_provider.destinations import table_writer_for

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS nul_results")
    batch = pa.record_batch({"id": pa.array([1, 2]), "batch_id": ["b1", "b1"], "summary": pa.array(["a\x00b", None])})
    writer = table_writer_for(BaseHook.get_connection("warehouse").get_hook(), "nul_results", "append", batch.schema, "id")
    assert writer.write([batch]) == 2
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT summary FROM nul_results ORDER BY id")
        assert cur.fetchall() == [("a\ufffdb",), (None,)]


def test_a_schema_qualified_postgres_table_is_created_then_merged_into(env, tmp_path, monkeypatch):
    """The first load writes a new table directly; the next finds it (in its schema, not a namesake
    in the search path) and merges through staging."""
    env()
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP SCHEMA IF EXISTS scaledown_qualified CASCADE; CREATE SCHEMA scaledown_qualified; "
                    "DROP TABLE IF EXISTS public.review_labels; CREATE TABLE public.review_labels (unrelated int)")
    first, second = submit(tmp_path / "a", frame(20)), submit(tmp_path / "b", frame(20, start=10, suffix=" again"))
    for job in (first, second):
        BatchOutputToTableOperator(task_id="load", job=job, conn_id="warehouse", mode="upsert",
                                   table="scaledown_qualified.review_labels").execute({})
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT review_id), MAX(review_id) FROM scaledown_qualified.review_labels")
        assert cur.fetchone() == (30, 30, 29)
        cur.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'scaledown_qualified'")
        assert "UNIQUE" in cur.fetchone()[0]
        cur.execute("DROP SCHEMA scaledown_qualified CASCADE; DROP TABLE public.review_labels")


def test_a_job_reference_rendered_into_a_string_by_a_template_loads(env, tmp_path, database):
    env()
    job = submit(tmp_path, frame(10))
    assert load(str(job))["ok"] == 10  # what "{{ ti.xcom_pull(task_ids='submit') }}" renders
    assert database("SELECT COUNT(*) FROM review_labels") == [(10,)]


def test_connection_table_and_mode_are_templated(env, tmp_path, database):
    env()
    job = submit(tmp_path, frame(10))
    op = BatchOutputToTableOperator(task_id="load", job=job, conn_id="{{ params.db }}", table="{{ params.table }}",
                                    mode="{{ params.mode }}")
    # a templated table's URI is known at run time: emitted through an alias
    assert [o.name for o in op.outlets] == ["scaledown-load:{{ params.db }}/{{ params.table }}"]
    op.render_template_fields({"params": {"db": "warehouse", "table": "review_labels", "mode": "upsert"}})
    assert (op.conn_id, op.table, op.mode) == ("warehouse", "review_labels", "upsert")
    assert op.execute({})["ok"] == 10 and database("SELECT COUNT(*) FROM review_labels") == [(10,)]
    bad = BatchOutputToTableOperator(task_id="bad", job=job, conn_id="warehouse", table="t", mode="{{ params.m }}")
    bad.render_template_fields({"params": {"m": "merge"}})
    with pytest.raises(ValueError, match="mode must be one of"):
        bad.execute({})


def test_a_table_created_by_another_load_after_the_check_is_not_written_unmerged(tmp_path, monkeypatch):
    """The direct path of a new table runs a plain CREATE TABLE: losing that race fails, writes nothing."""
    import pyarrow as pa
    from airflow.sdk import BaseHook

    from airflow_batch_provider.destinations import table_writer_for

    path = tmp_path / "race.db"
    monkeypatch.setenv("AIRFLOW_CONN_RACE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    batch = pa.record_batch({"id": pa.array([1, 2]), "batch_id": ["b1", "b1"]})
    writer = table_writer_for(BaseHook.get_connection("race").get_hook(), "landed", "replace", batch.schema, "id")
    assert writer.write([batch]) == 2
    late = table_writer_for(BaseHook.get_connection("race").get_hook(), "landed", "replace", batch.schema, "id")
    monkeypatch.setattr(late, "existing_columns", lambda conn, cursor: None)  # it looked before the other landed
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        late.write([pa.record_batch({"id": pa.array([3]), "batch_id": ["b2"]})])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM landed ORDER BY id").fetchall() == [(1,), (2,)]


def test_a_load_into_another_database_is_found_by_the_incremental_lookup_and_named_by_its_asset(
        env, tmp_path, monkeypatch):
    """`database=` on MariaDB (MySqlHook's schema): the load lands there, its asset names it, and
    the next submit finds what landed only when told the same database."""
    server = env()
    mysql_query("CREATE DATABASE IF NOT EXISTS scaledown_other")
    mysql_query("DROP TABLE IF EXISTS scaledown_other.review_labels")
    mysql_query("DROP TABLE IF EXISTS review_labels")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(MYSQL_CONNECTION))
    op = BatchOutputToTableOperator(task_id="load", job=submit(tmp_path, frame(12)), conn_id="warehouse",
                                    table="review_labels", database="scaledown_other")
    op.execute({})
    assert mysql_query("SELECT COUNT(*) FROM scaledown_other.review_labels") == [(12,)]
    assert op.destination().asset_uri == "mysql://127.0.0.1:3306/scaledown_other/review_labels"
    job = submit(tmp_path, frame(12), skip_landed_conn_id="warehouse", skip_landed_table="review_labels",
                 skip_landed_database="scaledown_other", allow_empty=True)
    assert (job["rows"], job["skipped_rows"]) == (0, 12) and server.stats()["items"] == 12


def daily(run):
    """Day 1: 100 rows. Day 2 and 3: 110 rows, ids 0-4 edited."""
    data = frame(100 if run == 1 else 110)
    if run > 1:
        data.loc[:4, "body"] = [f"Edited on day 2: review {i} is now awful." for i in range(5)]
    return data


@pytest.mark.parametrize("mode", ["upsert", "replace", "append"])
@pytest.mark.parametrize("database", ["postgres", "mysql"], indirect=True)
def test_an_incremental_daily_job_never_deletes_nor_duplicates_paid_rows(env, tmp_path, database, mode):
    """Three daily runs of an incremental submit feeding a load into the same table: the bill and
    the table after each. A mode that would delete (replace) or duplicate (append) rows the submit
    skipped is refused before it writes, naming upsert; with upsert nothing is paid twice."""
    server = env()
    incremental = {"skip_landed_conn_id": "warehouse", "skip_landed_table": "review_labels",
                   "skip_landed_hook_params": LOAD_OPTIONS.get("hook_params")}
    count = "SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels"

    def land(job, before):
        if mode != "upsert":  # refused every day, the first included: the table must stay whole
            with pytest.raises(IncrementalModeError, match=f"mode='{mode}' would .*Use mode='upsert'"):
                load(job, mode=mode)
            assert (database(count) if before else []) == before  # nothing written
        load(job, mode="upsert")

    land(submit(tmp_path / "1", daily(1), **incremental), [])
    assert server.stats()["items"] == 100 and database(count) == [(100, 100)]

    job = submit(tmp_path / "2", daily(2), **incremental)
    assert (job["rows"], job["skipped_rows"]) == (15, 95) and server.stats()["items"] == 115
    assert read_manifest(job)[0].skipped_against["table"] == "review_labels"
    land(job, [(100, 100)])
    assert database(count) == [(110, 110)]
    edited = database("SELECT COUNT(*) FROM review_labels WHERE request_fingerprint IN "
                      f"({', '.join(repr(fp) for fp in landed_fingerprints(job))})")
    assert edited == [(15,)]  # the 5 edited rows carry their new result, not the stale one

    job = submit(tmp_path / "3", daily(3), **incremental)
    assert (job["rows"], job["skipped_rows"]) == (0, 110) and server.stats()["items"] == 115
    land(job, [(110, 110)])
    assert database(count) == [(110, 110)]


def landed_fingerprints(job):
    import pyarrow.ipc as ipc

    from airflow_batch_provider.job.manifest import ROWS_FILE

    _, location = read_manifest(job)
    with (location / ROWS_FILE).open("rb") as f:
        return ipc.open_stream(f).read_all().column("request_fingerprint").to_pylist()


def test_a_dag_loading_an_incremental_job_with_replace_is_refused_when_it_is_built(tmp_path):
    from airflow.sdk import DAG

    with DAG("incremental_replace", schedule=None), pytest.raises(IncrementalModeError, match="mode='replace'"):
        job = DataFrameToBatchOperator(task_id="submit", dataframe=frame(3), id_column="review_id",
                                       text_column="body", request=CLASSIFY, skip_landed_conn_id="warehouse",
                                       skip_landed_table="review_labels")
        BatchOutputToTableOperator(task_id="load", job=job.output, conn_id="warehouse", table="review_labels",
                                   mode="replace")
    with DAG("incremental_other_table", schedule=None):  # another table: the load may run
        job = DataFrameToBatchOperator(task_id="submit", dataframe=frame(3), id_column="review_id",
                                       text_column="body", request=CLASSIFY, skip_landed_conn_id="warehouse",
                                       skip_landed_table="review_labels")
        BatchOutputToTableOperator(task_id="load", job=job.output, conn_id="warehouse", table="daily_copy",
                                   mode="replace")


def test_the_load_asks_once_per_finished_batch(env, tmp_path):
    """Output first: a completed batch costs one request (its output), not a status read and then
    the output; the status is read only for a batch with no output (here: failed ones)."""
    for failure_rate, status_reads in ((0.0, 0), (1.0, 10)):
        server = env(batch_failure_rate=failure_rate)
        job = submit(tmp_path / str(failure_rate), frame(100))  # 10 batches
        before = dict(server.stats()["requests"])
        summary = BatchOutputToParquetOperator(task_id="load", job=job, path=str(tmp_path / "out.parquet"),
                                               max_failed_ratio=1.0).execute({})
        asked = {route: count - before.get(route, 0) for route, count in server.stats()["requests"].items()}
        assert (asked.get("output"), asked.get("status", 0)) == (10, status_reads), asked
        assert summary["rows"] == 100 and summary["missing"] == (100 if failure_rate else 0)
