"""The table writers below the load operator, on real databases: the generic writer any DbApiHook
gets (common.sql's quoting, inspector and insert SQL, no temporary table), MySQL/MariaDB's two paths,
and one quoter for every identifier."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime

import hypothesis.strategies as st
import pyarrow as pa
import pytest
from airflow.sdk import BaseHook
from hypothesis import given

from airflow_batch_provider.destinations import table_writer_for
from airflow_batch_provider.destinations.connection import db_hook
from airflow_batch_provider.destinations.mysql import MySqlTableWriter
from airflow_batch_provider.destinations.table import GenericTableWriter, TableSchemaError, identifier_quoter
from tests.conftest import MYSQL_CONNECTION, POSTGRES_DSN, mysql_query
from tests.integration.warehouse import a_database

TABLE = "Writer Test"  # a space and capitals: every statement must quote it the database's way


def rows(batch_ids: list[str], ids: list[int], text: str) -> pa.RecordBatch:
    return pa.record_batch({
        "id": pa.array(ids, pa.int64()), "batch_id": pa.array(batch_ids, pa.string()),
        "summary": pa.array([f"{text} {i} \"quoted\", back\\slash, NULL" for i in ids], pa.string()),
        "loaded_at": pa.array([datetime(2026, 11, 26, 7, 0, tzinfo=UTC)] * len(ids),
                              pa.timestamp("us", tz="UTC")),
        "ok": pa.array([True] * len(ids))})


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def generic(request, tmp_path, monkeypatch):
    """A connection on each database, and a query function; the writer under test is the generic one."""
    query = a_database(request.param, "w", tmp_path, monkeypatch, table=TABLE)
    if request.param != "mysql":
        return query

    def mysql(sql):  # the tests quote names as ANSI SQL does
        return query(sql.replace('"', "`"))
    mysql.kind = "mysql"
    return mysql


def write(mode: str, *batches: pa.RecordBatch, writer=GenericTableWriter) -> int:
    return writer(db_hook("w"), TABLE, mode, batches[0].schema, "id").write(iter(batches))


def test_the_generic_writer_appends_two_jobs_and_a_rerun_replaces_its_own_batches(generic):
    """The regression a partial migration of quoting would bring: in MySQL "batch_id" is a string
    literal, so DELETE … WHERE "batch_id" IN (…) deletes every row."""
    write("append", rows(["a1"] * 3, [1, 2, 3], "job one"))
    write("append", rows(["b1"] * 3, [4, 5, 6], "job two"))
    assert generic(f'SELECT COUNT(*) FROM "{TABLE}"') == [(6,)]
    # job one again, its batch split across two record batches: deleted once, before its first rows
    write("append", rows(["a1"] * 2, [1, 2], "job one again"), rows(["a1"], [3], "job one again"))
    assert generic(f'SELECT COUNT(*), COUNT(DISTINCT id) FROM "{TABLE}"') == [(6, 6)]
    assert sorted(generic(f'SELECT summary FROM "{TABLE}" WHERE id = 3')) == [
        ('job one again 3 "quoted", back\\slash, NULL',)]


def test_the_generic_writer_upserts_and_replaces(generic):
    write("upsert", rows(["a"] * 3, [1, 2, 3], "first"))
    write("upsert", rows(["b"] * 2, [3, 4], "second"))
    assert generic(f'SELECT id, batch_id FROM "{TABLE}" ORDER BY id') == [(1, "a"), (2, "a"), (3, "b"), (4, "b")]
    with pytest.raises(Exception, match="(?i)unique|duplicate|constraint"):  # created with its unique index
        generic(f"INSERT INTO \"{TABLE}\" (id, batch_id) VALUES (1, 'x')")
    write("replace", rows(["c"], [9], "only"))
    assert generic(f'SELECT id FROM "{TABLE}"') == [(9,)]


def test_the_generic_writer_refuses_a_table_without_the_result_columns(generic):
    generic(f'CREATE TABLE "{TABLE}" (id BIGINT, note TEXT)')
    with pytest.raises(TableSchemaError, match="batch_id"):
        write("append", rows(["a"], [1], "x"))
    assert generic(f'SELECT COUNT(*) FROM "{TABLE}"') == [(0,)]


def test_the_generic_writer_rolls_back_a_failed_load(generic):
    write("append", rows(["a"], [1], "kept"))

    def batches():
        yield rows(["b"], [2], "new")
        raise RuntimeError("the download broke")

    with pytest.raises(RuntimeError, match="download broke"):
        GenericTableWriter(db_hook("w"), TABLE, "replace", rows(["b"], [2], "x").schema, "id").write(batches())
    assert generic(f'SELECT id FROM "{TABLE}"') == [(1,)]  # the replace's DELETE was rolled back too


@pytest.mark.parametrize("local_infile", [True, False], ids=["load-data", "executemany"])
def test_mysql_paths_land_the_same_rows(monkeypatch, local_infile):
    monkeypatch.setenv("AIRFLOW_CONN_W", json.dumps(MYSQL_CONNECTION))
    mysql_query(f"DROP TABLE IF EXISTS `{TABLE}`")
    hook = db_hook("w", {"local_infile": local_infile})
    batch = rows(["a"] * 500, list(range(500)), "ünïcode ✓ \n newline")
    writer = table_writer_for(hook, TABLE, "upsert", batch.schema, "id")
    assert isinstance(writer, MySqlTableWriter) and writer.write([batch]) == 500
    assert writer.load_data is local_infile
    landed = mysql_query(f"SELECT id, summary, loaded_at, ok FROM `{TABLE}` ORDER BY id")
    assert len(landed) == 500 and landed[7] == (7, 'ünïcode ✓ \n newline 7 "quoted", back\\slash, NULL',
                                                datetime(2026, 11, 26, 7, 0), 1)
    assert writer.write([rows(["b"] * 2, [7, 500], "again")]) == 2  # an existing table: staged and merged
    assert mysql_query(f"SELECT COUNT(*), COUNT(DISTINCT id) FROM `{TABLE}`") == [(501, 501)]


def test_mysql_load_data_warnings_fail_the_load_and_commit_nothing(monkeypatch):
    """LOAD DATA LOCAL turns errors into warnings: a second row for an id in a table with the upsert's
    unique key is skipped with one, so the load must fail instead of losing the row silently."""
    monkeypatch.setenv("AIRFLOW_CONN_W", json.dumps(MYSQL_CONNECTION))
    mysql_query(f"DROP TABLE IF EXISTS `{TABLE}`")
    twice = rows(["a", "a"], [1, 1], "twice")
    with pytest.raises(ValueError, match="LOAD DATA .* reported warnings"):
        MySqlTableWriter(db_hook("w", {"local_infile": True}), TABLE, "upsert", twice.schema, "id").write([twice])
    assert mysql_query(f"SELECT COUNT(*) FROM `{TABLE}`") == [(0,)]  # the created table, and no row


def test_hook_params_and_database_reach_the_hook(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_W", json.dumps(MYSQL_CONNECTION))
    monkeypatch.setenv("AIRFLOW_CONN_P", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    assert db_hook("w", {"local_infile": True}).local_infile is True
    assert db_hook("w", database="mysql").schema == "mysql"  # MySqlHook's database is its schema
    assert db_hook("p", database="postgres").database == "postgres"
    monkeypatch.setenv("AIRFLOW_CONN_H", json.dumps({"conn_type": "http", "host": "example.com"}))
    with pytest.raises(TypeError, match="not a SQL database"):
        db_hook("h")


@given(st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s))
def test_the_quoter_round_trips_any_name(name):
    class Backticks:
        escape_word_format = "`{}`"

    for hook, close in ((Backticks(), "`"), (object(), '"')):
        quoted = identifier_quoter(hook)(name)
        assert quoted[0] == quoted[-1] == close
        inner = quoted[1:-1]
        # a lone quote would end the name early: every quote inside comes doubled
        assert re.fullmatch(f"(?:[^{re.escape(close)}]|{re.escape(close * 2)})*", inner, re.S)
        assert inner.replace(close * 2, close) == name


@given(st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s))
def test_sqlite_reads_back_every_quoted_name(name):
    with sqlite3.connect(":memory:") as conn:
        conn.execute(f"CREATE TABLE {identifier_quoter(object())(name)} (x)")
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [(name,)]


def test_the_hooks_quote_characters_are_used(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_W", json.dumps(MYSQL_CONNECTION))
    assert identifier_quoter(BaseHook.get_connection("w").get_hook())("a`b") == "`a``b`"


def test_mysql_ids_that_differ_only_in_case_or_accents_are_different_rows(monkeypatch):
    """Under the server's usual collation 'a1' = 'A1' = 'á1': an upsert of one would delete the other."""
    monkeypatch.setenv("AIRFLOW_CONN_W", json.dumps(MYSQL_CONNECTION))
    mysql_query(f"DROP TABLE IF EXISTS `{TABLE}`")
    batch = pa.record_batch({"id": ["a1", "A1", "á1", "a1 "], "batch_id": ["b", "B", "b", "b"]})
    writer = MySqlTableWriter(db_hook("w", {"local_infile": True}), TABLE, "upsert", batch.schema, "id")
    assert writer.write([batch]) == 4
    assert writer.write([batch.slice(1, 1)]) == 1  # A1 again: only A1 is replaced
    assert sorted(mysql_query(f"SELECT id FROM `{TABLE}`")) == sorted([("a1",), ("A1",), ("á1",), ("a1 ",)])
    appended = pa.record_batch({"id": ["z"], "batch_id": ["B"]})
    MySqlTableWriter(db_hook("w"), TABLE, "append", appended.schema, "id").write([appended])
    # batch "B" (A1) replaced by z; the rows of batch "b" kept
    assert sorted(mysql_query(f"SELECT id FROM `{TABLE}`")) == sorted([("a1",), ("á1",), ("a1 ",), ("z",)])


def test_the_generic_writer_names_types_in_the_databases_own_dialect():
    from sqlalchemy.dialects import mssql, oracle

    batch = rows(["a"], [1], "x").append_column("key_text", pa.array(["k"]))
    writer = GenericTableWriter(object(), "t", "upsert", batch.schema, "key_text")
    writer._dialect = mssql.dialect()
    assert [writer.column_type(f) for f in batch.schema] == [
        "BIGINT", "NVARCHAR(255)", "NVARCHAR(max)", "DATETIMEOFFSET", "BIT", "NVARCHAR(255)"]
    writer._dialect = oracle.dialect()
    assert writer.column_type(batch.schema.field("summary")) == "CLOB"


def test_the_generic_writer_without_a_sqlalchemy_uri_probes_the_table(generic, monkeypatch):
    """JDBC or ODBC hooks without a SQLAlchemy scheme: existence comes from a probing SELECT."""
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    def no_engine(self, *args, **kwargs):
        raise ValueError("no SQLAlchemy URI")

    monkeypatch.setattr(DbApiHook, "get_sqlalchemy_engine", no_engine)
    for hook_class in {type(db_hook("w"))}:
        monkeypatch.setattr(hook_class, "get_sqlalchemy_engine", no_engine, raising=False)
    write("append", rows(["a"], [1], "first"))
    write("append", rows(["b"], [2], "second"))
    assert generic(f'SELECT COUNT(*) FROM "{TABLE}"') == [(2,)]


def duckdb_writer(monkeypatch, path, lock_timeout: float):
    from airflow_batch_provider.destinations.duckdb import DuckDBTableWriter

    monkeypatch.setenv("AIRFLOW_CONN_W", json.dumps({"conn_type": "duckdb", "host": str(path)}))
    batch = rows(["a"] * 3, [1, 2, 3], "x")
    return DuckDBTableWriter(db_hook("w"), TABLE, "append", batch.schema, "id", lock_timeout=lock_timeout), batch


def test_a_duckdb_load_waits_while_another_load_creates_the_file(tmp_path, monkeypatch):
    """Two loads of a new file: one creates it, the other may open it before DuckDB has written its
    headers, and DuckDB calls that file "not a valid DuckDB database file"."""
    import threading

    import duckdb

    path = tmp_path / "new.duckdb"
    path.touch()  # created, its headers not written yet

    def the_creator_finishes():
        made = tmp_path / "made.duckdb"
        duckdb.connect(str(made)).close()
        made.replace(path)
    creator = threading.Timer(0.5, the_creator_finishes)
    creator.start()
    writer, batch = duckdb_writer(monkeypatch, path, lock_timeout=30)
    try:
        assert writer.write([batch]) == 3
    finally:
        creator.join()
    with duckdb.connect(str(path)) as conn:
        assert conn.execute(f'SELECT COUNT(*) FROM "{TABLE}"').fetchall() == [(3,)]


@pytest.mark.parametrize("left", ["a whole file", "an empty file nobody writes", "one named from ~"])
def test_a_duckdb_load_refuses_a_file_that_is_not_duckdb_at_once(tmp_path, monkeypatch, left):
    import os

    import duckdb

    path = tmp_path / "notes.duckdb"
    if left == "a whole file":
        path.write_text("not a database\n" * 2000)
    else:  # e.g. left by touch or a creator that crashed: not being written, so not waited for
        path.touch()
        os.utime(path, (os.path.getatime(path) - 60, os.path.getmtime(path) - 60))
    named = path
    if left == "one named from ~":  # DuckDB expands it: the file it opened is the one to look at
        monkeypatch.setenv("HOME", str(tmp_path))
        named = "~/notes.duckdb"
    writer, batch = duckdb_writer(monkeypatch, named, lock_timeout=30)
    with pytest.raises(duckdb.IOException, match="not a valid DuckDB database file"):
        writer.write([batch])  # not TableLockTimeoutError once lock_timeout has passed
