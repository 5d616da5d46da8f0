"""What submit accepts, every load lands: a property over id types, ids, texts and labels.

For each generated input the submit operator either refuses it before any call (with the package's
own refusal, never a driver's or Arrow's exception), or pays for it; whatever it paid for must then
land in SQLite, DuckDB, PostgreSQL, MariaDB and Parquet, every row once — and, submitted with the
generic writer's database declared as its destination, through the generic writer too.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from unittest import mock

import duckdb
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from airflow_batch_provider.destinations import WRITERS
from airflow_batch_provider.destinations.table import GenericTableWriter
from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.job.manifest import read_manifest
from airflow_batch_provider.operators.load import BatchOutputToParquetOperator, BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import BaseBatchSubmitOperator, InvalidInputError
from airflow_batch_provider.protocol import Classify, Extract, Label, Summarize
from airflow_batch_provider.tabular.results_to_columns import column_name
from tests.conftest import MYSQL_CONNECTION, POSTGRES_DSN, mysql_query
from tests.emulator_helpers import EmulatorFactory, wait_for_job
from tests.state_store import DictStateStore

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
STRING_TYPES = [pa.string(), pa.large_string(), pa.string_view()]


class ArrowSource(BaseBatchSubmitOperator):
    """A submit operator whose rows are one Arrow table, in whatever types it holds."""

    def __init__(self, *, table: pa.Table, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def iter_record_batches(self) -> Iterator[pa.RecordBatch]:
        yield from self.table.to_batches(max_chunksize=7)


@st.composite
def id_columns(draw) -> pa.Array:
    n = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["int", "string", "dict-string", "dict-int"]))
    if kind in ("int", "dict-int"):
        arrow_type = draw(st.sampled_from(INT_TYPES)) if kind == "int" else pa.int64()
        bits = arrow_type.bit_width
        low, high = (0, 2**bits - 1) if pa.types.is_unsigned_integer(arrow_type) else (-(2**(bits - 1)), 2**(bits - 1) - 1)
        values = draw(st.lists(st.integers(low, high), min_size=min(n, high - low + 1), max_size=n, unique=True))
        array = pa.array(values, arrow_type)
    else:
        # Up to 2,000 characters: past every key column's limit (MariaDB 768, PostgreSQL 2,688 bytes).
        values = draw(st.lists(st.text(max_size=draw(st.sampled_from([12, 300, 2000]))), min_size=n, max_size=n,
                               unique=True))
        array = pa.array(values, draw(st.sampled_from(STRING_TYPES)) if kind == "string" else pa.string())
    return array.dictionary_encode() if kind.startswith("dict") else array


# Names that would share a result column are refused when the operator is built (a ValueError at
# DAG parse time, tested below), so each request's names are distinct as columns.
# Up to 100 characters with %, quotes, spaces and non-ASCII: the derived column names must fit everywhere.
name_text = st.text(st.characters(codec="utf-8") | st.sampled_from("%'\"` ;"), min_size=1, max_size=100)
names_ = st.lists(name_text.filter(str.strip), min_size=1, max_size=3, unique_by=lambda name: column_name("x", name))
requests_ = st.one_of(
    st.builds(lambda names: Classify([Label(name, f"Is it about {name}?") for name in names]), names_),
    st.builds(lambda names: Extract({name: f"the {name}" for name in names}), names_),
    st.just(Summarize(max_tokens=30)),
)


@pytest.fixture(scope="module")
def setting():
    """One emulator for every example, and the four destinations' connections."""
    factory = EmulatorFactory()
    server = factory()
    saved = dict(os.environ)
    os.environ["AIRFLOW_CONN_BATCH_API_DEFAULT"] = connection_json(server, retry_initial_wait=0.01)
    os.environ["AIRFLOW_CONN_PROP_PG"] = POSTGRES_DSN.replace("postgresql://", "postgres://")
    os.environ["AIRFLOW_CONN_PROP_MYSQL"] = json.dumps(MYSQL_CONNECTION)
    os.environ["AIRFLOW_CONN_PROP_GENERIC"] = POSTGRES_DSN.replace("postgresql://", "postgres://")
    yield server
    os.environ.clear()
    os.environ.update(saved)
    factory.close()




def landed_ids(kind: str, where: str, table: str) -> list[str]:
    sql = f'SELECT CAST(id AS VARCHAR(4000)) FROM "{table}"' if kind != "sqlite" else f'SELECT CAST(id AS TEXT) FROM "{table}"'
    if kind == "mysql":
        rows = mysql_query(f"SELECT CAST(id AS CHAR) FROM `{table}`")
        mysql_query(f"DROP TABLE `{table}`")
        return [r[0] for r in rows]
    if kind in ("postgres", "generic"):
        with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
            cur.execute(sql)
            rows = cur.fetchall()
            cur.execute(f'DROP TABLE "{table}"')
        return [r[0] for r in rows]
    if kind == "duckdb":
        with duckdb.connect(where) as conn:
            return [r[0] for r in conn.execute(sql).fetchall()]
    import sqlite3

    with sqlite3.connect(where) as conn:
        return [r[0] for r in conn.execute(sql).fetchall()]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ids=id_columns(), texts=st.lists(st.text(max_size=40), min_size=12, max_size=12), request_=requests_)
def test_accepted_by_submit_is_landed_by_every_load(setting, tmp_path_factory, ids, texts, request_):
    server = setting
    tmp = tmp_path_factory.mktemp("prop")
    table = pa.table({"id": ids, "body": pa.array(texts[: len(ids)])})
    native = submitted(server, table, request_, tmp / "native")
    if native is not None:
        land_everywhere(native, request_, tmp, {
            "sqlite": ({"conn_type": "sqlite", "host": str(tmp / "w.db")}, str(tmp / "w.db")),
            "duckdb": ({"conn_type": "duckdb", "host": str(tmp / "w.duckdb")}, str(tmp / "w.duckdb")),
            "postgres": (None, ""), "mysql": (None, "")})
    with mock.patch.dict(WRITERS, {"postgres": GenericTableWriter}):  # prop_generic: PostgreSQL, generic path
        generic = submitted(server, table, request_, tmp / "generic", destination="prop_generic")
        if generic is not None:
            land_everywhere(generic, request_, tmp, {"generic": (None, "")}, parquet=False)


def submitted(server, table: pa.Table, request_, tmp, **options) -> dict | None:
    """The job reference, or None when submit refused everything before paying."""
    before = server.stats()["requests"].get("submit", 0)
    try:
        submit = ArrowSource(task_id="submit", table=table, id_column="id", text_column="body", request=request_,
                             on_invalid_rows="skip", allow_empty=True, manifest_dir=str(tmp / "jobs"), **options)
        job = submit.execute({"task_state_store": DictStateStore()})
    except InvalidInputError:  # refused before paying (the package's own refusal): nothing may have been sent
        assert server.stats()["requests"].get("submit", 0) == before
        event("refused before paying")
        return None
    if not job["batches"]:
        event("every row refused")
        return None
    event("paid for and landed")
    return job


def land_everywhere(job: dict, request_, tmp, destinations: dict, parquet: bool = True) -> None:
    wait_for_job(job)
    manifest, location = read_manifest(job)
    with pa.ipc.open_stream(str(location / "rows.arrow")) as rows:
        accepted = sorted(rows.read_all().column("custom_id").to_pylist())
    options = {"label_scores": True} if request_.model == "classify" else (
        {"entity_columns": "all"} if request_.model == "extract" else {})
    name = f"prop_{uuid.uuid4().hex[:10]}"
    for kind, (conn, where) in destinations.items():
        conn_id = "prop_pg" if kind == "postgres" else f"prop_{kind}"
        if conn is not None:
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
        hook_params = {"hook_params": {"local_infile": True}} if kind == "mysql" else {}
        summary = BatchOutputToTableOperator(task_id="load", job=job, conn_id=conn_id, table=name, mode="replace",
                                             max_failed_ratio=1.0, **options, **hook_params).execute({})
        assert summary["rows"] == len(accepted), kind
        assert sorted(landed_ids(kind, where, name)) == accepted, kind
    if not parquet:
        return
    BatchOutputToParquetOperator(task_id="pq", job=job, path=str(tmp / "out.parquet"), max_failed_ratio=1.0,
                                 **options).execute({})
    landed = pq.read_table(tmp / "out.parquet")
    assert sorted(str(v) for v in landed.column("id").to_pylist()) == accepted


# -- the reproductions of the issue, one by one --------------------------------------------------------

@pytest.mark.parametrize("dtype", ["int32", "uint64", "Int16"])
def test_narrow_and_unsigned_integer_ids_from_pandas_land(setting, tmp_path, dtype):
    import pandas as pd

    from airflow_batch_provider.operators.submit import DataFrameToBatchOperator

    frame = pd.DataFrame({"id": pd.array([3, 1, 2], dtype=dtype), "body": ["good", "bad", "fine"]})
    job = DataFrameToBatchOperator(task_id="s", dataframe=frame, id_column="id", text_column="body",
                                   request=Summarize(), manifest_dir=str(tmp_path)).execute({"task_state_store": DictStateStore()})
    wait_for_job(job)
    os.environ["AIRFLOW_CONN_PROP_SQLITE"] = json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")})
    assert BatchOutputToTableOperator(task_id="l", job=job, conn_id="prop_sqlite", table="t").execute({})["ok"] == 3
    assert sorted(landed_ids("sqlite", str(tmp_path / "w.db"), "t")) == ["1", "2", "3"]


def test_uint64_ids_beyond_what_sql_stores_are_refused_before_paying(setting, tmp_path):
    from airflow_batch_provider.operators.submit import InvalidRowsError

    table = pa.table({"id": pa.array([1, 2**63], pa.uint64()), "body": ["a", "b"]})
    before = setting.stats()["requests"].get("submit", 0)
    with pytest.raises(InvalidRowsError, match=r"9223372036854775808: id is larger than 9223372036854775807"):
        ArrowSource(task_id="s", table=table, id_column="id", text_column="body", request=Summarize(),
                    manifest_dir=str(tmp_path)).execute({})
    assert setting.stats()["requests"].get("submit", 0) == before


def test_labels_that_would_share_a_column_are_refused_at_construction():
    labels = Classify([Label("very positive", "Is it?"), Label("very-positive", "Is it?")])
    with pytest.raises(ValueError, match="label 'very-positive' and label 'very positive' would both land in "
                                         "column 'score_very_positive'"):
        ArrowSource(task_id="s", table=pa.table({}), id_column="id", text_column="body", request=labels)
    with pytest.raises(ValueError, match="entity type 'Price' and entity type 'price'"):
        ArrowSource(task_id="s", table=pa.table({}), id_column="id", text_column="body",
                    request=Extract({"price": "a price", "Price": "a price"}))
    with pytest.raises(ValueError, match="the id column 'status' and the result column 'status'"):
        ArrowSource(task_id="s", table=pa.table({}), id_column="status", text_column="body", request=Summarize())


def test_nul_characters_are_refused_before_paying_naming_the_rows(setting, tmp_path):
    from airflow_batch_provider.operators.submit import InvalidRowsError

    table = pa.table({"id": ["a", "b\x00", "c"], "body": ["fine", "fine", "te\x00xt"]})
    before = setting.stats()["requests"].get("submit", 0)
    with pytest.raises(InvalidRowsError, match=r"2 of 3 rows.*'b\\x00': id contains a NUL.*'c': text contains a NUL"):
        ArrowSource(task_id="s", table=table, id_column="id", text_column="body", request=Summarize(),
                    manifest_dir=str(tmp_path)).execute({})
    assert setting.stats()["requests"].get("submit", 0) == before
