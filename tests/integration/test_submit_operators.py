"""The submit operators against the emulator over HTTP, with real Parquet files and databases."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.job.manifest import read_manifest
from airflow_batch_provider.operators.submit import (
    DataFrameToBatchOperator,
    InputChangedError,
    InvalidInputError,
    InvalidRowsError,
    ParquetToBatchOperator,
    SqlToBatchOperator,
)
from airflow_batch_provider.protocol import Classify, Label, Summarize
from tests.conftest import MYSQL_CONNECTION, POSTGRES_DSN, mysql_query
from tests.emulator_helpers import wait_for_job
from tests.state_store import DictStateStore

CLASSIFY = Classify([Label("positive", "Does the review praise the product?"),
                     Label("negative", "Does the review complain?")])


def reviews(n, start=0):
    return pd.DataFrame({"review_id": range(start, start + n),
                         "body": [f"Review {i}: the kettle is great, fast shipping." for i in range(start, start + n)]})


@pytest.fixture
def emulator(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(
        server, retry_initial_wait=0.01, retry_max_wait=0.05))
    return server


def run(operator, store=None):
    return operator.execute({"task_state_store": store if store is not None else DictStateStore()})


def frame_op(tmp_path, frame, **kwargs):
    return DataFrameToBatchOperator(task_id="submit", dataframe=frame, id_column="review_id",
                                    text_column="body", request=kwargs.pop("request", CLASSIFY),
                                    manifest_dir=str(tmp_path / "jobs"), **kwargs)


def test_dataframe_1000_rows_50_per_batch_is_20_batches(emulator, tmp_path):
    reference = run(frame_op(tmp_path, reviews(1000), max_items_per_batch=50))
    assert emulator.stats()["batches"] == 20 and emulator.stats()["items"] == 1000
    assert (reference["batches"], reference["rows"], reference["invalid_rows"]) == (20, 1000, 0)
    assert len(json.dumps(reference)) < 1000
    manifest, location = read_manifest(reference)
    assert manifest.model == "classify" and manifest.id_type == "int64" and manifest.total_rows == 1000
    assert [b.rows for b in manifest.batches] == [50] * 20 and len({b.batch_id for b in manifest.batches}) == 20
    with (location / "rows.arrow").open("rb") as handle:
        rows = pa.ipc.open_stream(handle).read_all()
    assert rows.num_rows == 1000 and rows.schema.field("id").type == pa.int64()
    assert rows.column("custom_id").to_pylist()[:3] == ["0", "1", "2"]


def test_bytes_limit_cuts_batches_too(emulator, tmp_path):
    reference = run(frame_op(tmp_path, reviews(100), max_items_per_batch=50, max_bytes_per_batch=4000))
    manifest, _ = read_manifest(reference)
    assert sum(b.rows for b in manifest.batches) == 100 and len(manifest.batches) > 2


def test_callable_dataframe_and_templated_request(emulator, tmp_path):
    op = frame_op(tmp_path, lambda **_: reviews(3), request=Summarize(instructions="Mention {{ params.shop }}."))
    op.render_template_fields({"params": {"shop": "Kettles Ltd"}})
    reference = op.execute({"task_state_store": DictStateStore(), "params": {"shop": "Kettles Ltd"}})
    manifest, _ = read_manifest(reference)
    assert manifest.request == {"instructions": "Mention Kettles Ltd."}


def test_the_rendered_tab_shows_what_was_asked_with_its_templates_rendered(tmp_path):
    from airflow.serialization.helpers import serialize_template_field

    request = Classify([Label("on_topic", "Is it about {{ params.shop }}?"), Label("rude", "Is it rude?")],
                       system_prompt="Reviews of {{ params.shop }}.")
    op = frame_op(tmp_path, reviews(3), request=request)
    assert "request" in op.template_fields and op.template_fields_renderers["request"] == "json"
    op.render_template_fields({"params": {"shop": "Kettles Ltd"}})
    assert op.request == Classify([Label("on_topic", "Is it about Kettles Ltd?"), Label("rude", "Is it rude?")],
                                  system_prompt="Reviews of Kettles Ltd.")
    assert serialize_template_field(op.request, "request") == {
        "model": "classify", "system_prompt": "Reviews of Kettles Ltd.",
        "labels": [{"name": "on_topic", "rubric": "Is it about Kettles Ltd?"}, {"name": "rude", "rubric": "Is it rude?"}]}
    assert request.serialize()["labels"][0]["rubric"] == "Is it about {{ params.shop }}?"  # the DAG's own is untouched


def test_a_request_whose_template_renders_empty_fails_without_airflows_retries(tmp_path):
    op = frame_op(tmp_path, reviews(3), request=Summarize(instructions="{{ params.style }}"))
    with pytest.raises(InvalidInputError, match="once its templates were rendered: instructions must not be empty"):
        op.render_template_fields({"params": {"style": "  "}})


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"review_id": [1, 2, 3], "body": ["ok", None, "fine"]}), "1 of 3 rows cannot be sent.*2: text is null"),
        (pd.DataFrame({"review_id": [1, 2, 3], "body": ["ok", "  ", ""]}), "2 of 3 rows.*2: text is empty; 3: text is empty"),
        (pd.DataFrame({"review_id": [1, 1, 2], "body": ["a", "b", "c"]}), "1 of 3 rows.*1: duplicate id"),
        (pd.DataFrame({"review_id": ["a", None, "c"], "body": ["a", "b", "c"]}), "None: id is null"),
        (pd.DataFrame({"review_id": [1, 2], "body": [5, 6]}), "2 of 2 rows.*holds int64, not strings"),
        (pd.DataFrame({"review_id": [1, 2], "body": ["x" * 2_000_001, "ok"]}), "1: text is longer than 1000000 bytes"),
    ],
)
def test_invalid_rows_are_named_and_nothing_is_submitted(emulator, tmp_path, frame, message):
    with pytest.raises(InvalidRowsError, match=message):
        run(frame_op(tmp_path, frame))
    assert emulator.stats()["batches"] == 0 and emulator.stats()["requests"] == {}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"review_id": [], "body": []}), "holds no rows"),
        (pd.DataFrame({"review_id": [1], "text": ["x"]}), "has no column 'body'"),
        (pd.DataFrame({"review_id": [1.5], "body": ["x"]}), "must hold integers or strings, not double"),
    ],
)
def test_unusable_input_is_refused_before_any_call(emulator, tmp_path, frame, message):
    with pytest.raises(InvalidInputError, match=message):
        run(frame_op(tmp_path, frame))
    assert emulator.stats()["requests"] == {}


def test_skip_policy_reports_and_submits_the_rest(emulator, tmp_path):
    frame = pd.DataFrame({"review_id": [1, 2, 3, 4], "body": ["good", None, "bad", ""]})
    reference = run(frame_op(tmp_path, frame, on_invalid_rows="skip"))
    assert (reference["rows"], reference["invalid_rows"]) == (2, 2)
    assert emulator.stats()["items"] == 2


def test_parquet_file_and_directory(emulator, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for part in range(3):
        pq.write_table(pa.Table.from_pandas(reviews(40, start=part * 40), preserve_index=False),
                       data / f"part-{part}.parquet", row_group_size=10)
    one = run(ParquetToBatchOperator(task_id="p", path=str(data / "part-0.parquet"), id_column="review_id",
                                     text_column="body", request=CLASSIFY, manifest_dir=str(tmp_path / "jobs")))
    assert one["rows"] == 40
    every = run(ParquetToBatchOperator(task_id="p", path=f"file://{data}", id_column="review_id",
                                       text_column="body", request=CLASSIFY, manifest_dir=str(tmp_path / "jobs")))
    assert every["rows"] == 120 and every["batches"] == 3


def test_parquet_with_a_missing_column_is_refused(emulator, tmp_path):
    pq.write_table(pa.table({"review_id": [1], "text": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(InvalidInputError, match="has no column 'body'; its columns are review_id, text"):
        run(ParquetToBatchOperator(task_id="p", path=str(tmp_path / "bad.parquet"), id_column="review_id",
                                   text_column="body", request=CLASSIFY, manifest_dir=str(tmp_path)))
    assert emulator.stats()["requests"] == {}


def test_sql_source_on_sqlite(emulator, tmp_path, monkeypatch):
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE reviews (review_id TEXT, body TEXT)")
        conn.executemany("INSERT INTO reviews VALUES (?, ?)", [(f"r{i}", f"Text {i} is nice.") for i in range(120)])
    monkeypatch.setenv("AIRFLOW_CONN_SRC_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    reference = run(SqlToBatchOperator(task_id="s", conn_id="src_sqlite", sql="SELECT review_id, body FROM reviews",
                                       id_column="review_id", text_column="body", request=CLASSIFY,
                                       manifest_dir=str(tmp_path / "jobs")))
    assert (reference["rows"], reference["batches"]) == (120, 3)


def test_sql_source_on_postgres_streams_with_a_server_side_cursor(emulator, tmp_path, monkeypatch):
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS submit_src; CREATE TABLE submit_src (id BIGINT, body TEXT)")
        cur.execute("INSERT INTO submit_src SELECT g, 'Review ' || g || ' is fine.' FROM generate_series(1, 25000) g")
    monkeypatch.setenv("AIRFLOW_CONN_SRC_PG", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    reference = run(SqlToBatchOperator(task_id="s", conn_id="src_pg", sql="SELECT id, body FROM submit_src ORDER BY id",
                                       id_column="id", text_column="body", request=Summarize(),
                                       max_items_per_batch=5000, manifest_dir=str(tmp_path / "jobs")))
    assert (reference["rows"], reference["batches"]) == (25000, 5)
    assert read_manifest(reference)[0].id_type == "int64"


def test_sql_source_on_mariadb_reads_typed_chunks_and_keeps_large_ids_exact(emulator, tmp_path, monkeypatch):
    """Ids above 2**53 beside a NULL id in one chunk: the numpy read would make them floats (other ids);
    the typed read keeps them, a chunk of NULL ids takes the query's id type, and the round trip through
    the API lands every id as it was."""
    import airflow_batch_provider.operators.submit as submit_module
    from airflow_batch_provider.operators.load import BatchOutputToTableOperator

    monkeypatch.setattr(submit_module, "READ_BATCH_ROWS", 40)  # several chunks, one of them NULL ids only
    mysql_query("DROP TABLE IF EXISTS sql_source")
    mysql_query("CREATE TABLE sql_source (position INT, id BIGINT, body TEXT)")
    ids = [None] * 40 + [2**60 + i if i % 10 else None for i in range(100)]
    for position, row_id in enumerate(ids):
        mysql_query("INSERT INTO sql_source VALUES (%s, %s, %s)", (position, row_id, f"Review {position} is fine."))
    monkeypatch.setenv("AIRFLOW_CONN_SRC_MYSQL", json.dumps(MYSQL_CONNECTION))
    monkeypatch.setenv("AIRFLOW_CONN_LANDED", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "l.db")}))
    reference = run(SqlToBatchOperator(
        task_id="s", conn_id="src_mysql", sql="SELECT id, body FROM sql_source ORDER BY position",
        id_column="id", text_column="body", request=Summarize(), on_invalid_rows="skip",
        manifest_dir=str(tmp_path / "jobs")))
    assert (reference["rows"], reference["invalid_rows"]) == (90, 50)
    assert read_manifest(reference)[0].id_type == "int64"
    wait_for_job(reference)
    BatchOutputToTableOperator(task_id="l", job=reference, conn_id="landed", table="t").execute({})
    with sqlite3.connect(tmp_path / "l.db") as conn:
        assert sorted(r[0] for r in conn.execute("SELECT id FROM t")) == [i for i in ids if i is not None]


def test_sql_source_names_an_id_column_whose_type_changes(emulator, tmp_path, monkeypatch):
    import airflow_batch_provider.operators.submit as submit_module
    from airflow_batch_provider.job.errors import InvalidInputError

    monkeypatch.setattr(submit_module, "READ_BATCH_ROWS", 2)
    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:  # SQLite stores each value's own type
        conn.execute("CREATE TABLE mixed (id, body TEXT)")
        conn.executemany("INSERT INTO mixed VALUES (?, ?)", [(1, "a"), (2, "b"), ("x-3", "c"), ("x-4", "d")])
    monkeypatch.setenv("AIRFLOW_CONN_SRC_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    with pytest.raises(InvalidInputError, match="column 'id' changes type within the query's result"):
        run(SqlToBatchOperator(task_id="s", conn_id="src_sqlite", sql="SELECT id, body FROM mixed ORDER BY rowid",
                               id_column="id", text_column="body", request=Summarize(),
                               manifest_dir=str(tmp_path / "jobs")))
    assert emulator.stats()["requests"] == {}


def test_a_retry_with_nothing_left_submits_nothing(emulator, tmp_path):
    store = DictStateStore()
    first = run(frame_op(tmp_path, reviews(200), max_items_per_batch=50), store)
    second = run(frame_op(tmp_path, reviews(200), max_items_per_batch=50), store)
    assert first["job_id"] == second["job_id"] and emulator.stats()["requests"]["submit"] == 4


def test_changed_input_on_retry_fails_or_restarts(emulator, tmp_path):
    store = DictStateStore()
    first = run(frame_op(tmp_path, reviews(100)), store)
    with pytest.raises(InputChangedError, match="different input"):
        run(frame_op(tmp_path, reviews(101)), store)
    again = run(frame_op(tmp_path, reviews(101), on_input_change="restart"), store)
    assert again["job_id"] != first["job_id"] and again["rows"] == 101


def test_bad_parameters_fail_at_dag_parse_time():
    with pytest.raises(ValueError, match="on_invalid_rows"):
        DataFrameToBatchOperator(task_id="x", dataframe=None, id_column="a", text_column="b",
                                 request=CLASSIFY, on_invalid_rows="drop")
    with pytest.raises(TypeError, match="request must be"):
        DataFrameToBatchOperator(task_id="x", dataframe=None, id_column="a", text_column="b", request={"model": "x"})


def test_allow_empty_gives_an_empty_job_that_waits_and_loads_at_once(emulator, tmp_path, monkeypatch):
    from airflow_batch_provider.operators.load import BatchOutputToTableOperator
    from airflow_batch_provider.sensors.batch import BatchSensor

    job = run(frame_op(tmp_path, pd.DataFrame({"review_id": [], "body": []}), allow_empty=True))
    assert (job["rows"], job["batches"]) == (0, 0) and emulator.stats()["requests"] == {}
    assert BatchSensor(task_id="w", job=job).execute({})["status"] == "success"
    monkeypatch.setenv("AIRFLOW_CONN_WH", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
    summary = BatchOutputToTableOperator(task_id="l", job=job, conn_id="wh", table="t").execute({})
    assert summary["rows"] == 0


def test_a_parquet_directory_as_spark_writes_it(emulator, tmp_path):
    """Hive-style key=value folders are read; _temporary/, _SUCCESS and dot files are not (they would
    be half-written or not Parquet at all)."""
    data = tmp_path / "reviews"
    for part, day in enumerate(["2026-11-01", "2026-11-02"]):
        (data / f"day={day}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(reviews(30, start=part * 30), preserve_index=False),
                       data / f"day={day}" / f"part-{part}.parquet")
    (data / "_temporary" / "0").mkdir(parents=True)
    (data / "_temporary" / "0" / "part-9.parquet").write_bytes(b"half-written")
    (data / "_SUCCESS").write_bytes(b"")
    (data / "day=2026-11-01" / ".part-0.parquet.crc").write_bytes(b"crc")
    job = run(ParquetToBatchOperator(task_id="p", path=str(data), id_column="review_id", text_column="body",
                                     request=CLASSIFY, manifest_dir=str(tmp_path / "jobs")))
    assert job["rows"] == 60 and emulator.stats()["items"] == 60


def test_sql_source_refuses_a_text_column_that_holds_no_text(emulator, tmp_path, monkeypatch):
    from airflow_batch_provider.job.errors import InvalidInputError

    db = tmp_path / "src.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE numbers (id INTEGER, body INTEGER)")
        conn.executemany("INSERT INTO numbers VALUES (?, ?)", [(1, 10), (2, 20)])
    monkeypatch.setenv("AIRFLOW_CONN_SRC_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    with pytest.raises(InvalidInputError, match="text column 'body' must hold text; .* holds int64"):
        run(SqlToBatchOperator(task_id="s", conn_id="src_sqlite", sql="SELECT id, body FROM numbers",
                               id_column="id", text_column="body", request=Summarize(),
                               manifest_dir=str(tmp_path / "jobs")))
    assert emulator.stats()["requests"] == {}


def test_a_parquet_file_of_one_large_row_group_is_read_a_batch_at_a_time(tmp_path):
    """pandas and pyarrow write up to 1 M rows as one row group; the dataset scanner decoded it whole
    before cutting it into batches (for 1 M rows, 100 MB of Arrow memory at once). Read page by page,
    what is held while the rows are read stays near one batch's size; files of another integer type
    come out with the first file's type, as the scanner gave them."""
    from airflow_batch_provider.operators.submit import READ_BATCH_ROWS

    rows = READ_BATCH_ROWS * 12
    text = "Review: the kettle boils fast and the handle stays cool. Shipping took two days, and all was well."
    pq.write_table(pa.table({"id": pa.array(range(rows), pa.int32()), "body": [text] * rows}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": pa.array([rows], pa.int64()), "body": ["One more."]}), tmp_path / "b.parquet")
    decoded = rows * len(text)
    op = ParquetToBatchOperator(task_id="p", path=str(tmp_path), id_column="id", text_column="body", request=CLASSIFY)
    held, sizes, types = [], [], set()
    for batch in op.iter_record_batches():
        held.append(pa.total_allocated_bytes())
        sizes.append(batch.num_rows)
        types.add(batch.schema.field("id").type)
    assert sizes == [READ_BATCH_ROWS] * 12 + [1] and types == {pa.int32()}
    assert max(held) < decoded / 3, (max(held), decoded)
