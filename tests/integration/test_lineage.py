"""Lineage: the asset URIs other operators use for the same table or file, and OpenLineage facets
(input, output, row counts, the SQL) read through the OpenLineage provider's own extractor manager,
the code path its listener runs after a task."""

from __future__ import annotations

import json
from unittest import mock

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
from airflow.providers.openlineage.extractors.manager import ExtractorManager
from airflow.sdk import Asset
from airflow.utils.state import TaskInstanceState

from airflow_batch_provider.operators.lineage import Database, path_location
from airflow_batch_provider.operators.load import BatchOutputToTableOperator, TooManyFailedRowsError
from airflow_batch_provider.operators.submit import ParquetToBatchOperator, SqlToBatchOperator
from airflow_batch_provider.protocol import Summarize
from tests.conftest import MYSQL_CONNECTION, POSTGRES_DSN, mysql_query
from tests.integration.test_load_operators import frame, submit
from tests.state_store import DictStateStore


def lineage(operator, state=TaskInstanceState.SUCCESS):
    """What the OpenLineage listener would emit for the task, through the provider's own manager."""
    return ExtractorManager().extract_metadata(dagrun=mock.MagicMock(run_id="r"), task=operator,
                                               task_instance_state=state, task_instance=mock.MagicMock())


@pytest.mark.parametrize("location, namespace, name", [
    (Database("postgres", "db.example:5432", "wh", "public").table("summaries"),
     "postgres://db.example:5432", "wh.public.summaries"),
    (Database("postgres", "db.example:5432", "wh", "public").table("analytics.labels"),
     "postgres://db.example:5432", "wh.analytics.labels"),
    (Database("mysql", "db.example:3306", "shop", None).table("labels"), "mysql://db.example:3306", "shop.labels"),
    (path_location("s3://aws_default@lake/labels/2026.parquet"), "s3://lake", "labels/2026.parquet"),
    (path_location("/data/labels.parquet"), "file", "/data/labels.parquet"),
])
def test_uris_are_the_ones_airflow_and_openlineage_give_the_same_table(location, namespace, name):
    assert Asset(location.asset_uri).uri == location.asset_uri  # unchanged by Airflow's sanitizer
    assert Asset(location.asset_uri) == location.asset()  # so a consumer's Asset(uri) is this asset
    assert (location.namespace, location.name) == (namespace, name)
    converted = translate_airflow_asset(location.asset(), None)  # the providers' own converters
    assert (converted.namespace, converted.name) == (namespace, name)


def test_file_databases_have_a_stable_uri_and_in_memory_ones_none(tmp_path):
    sqlite = Database("sqlite", str(tmp_path / "w.db"), None, "main").table("t")
    assert sqlite.asset_uri == f"sqlite://localhost{tmp_path}/w.db/main/t" and Asset(sqlite.asset_uri).uri == sqlite.asset_uri
    assert Database("postgres", "h:5432", None, "public").table("t") is None  # no database: no lasting name


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_load_reports_its_table_with_the_rows_and_schema(env, tmp_path, monkeypatch, kind):  # noqa: F811
    env()
    if kind == "postgres":
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", POSTGRES_DSN.replace("postgresql://", "postgres://"))
        with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS lineage_labels")
        namespace, name = "postgres://127.0.0.1:5432", "test.public.lineage_labels"
    else:
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps(MYSQL_CONNECTION))
        mysql_query("DROP TABLE IF EXISTS lineage_labels")
        namespace, name = "mysql://127.0.0.1:3306", "test.lineage_labels"
    job = submit(tmp_path, frame(12))
    op = BatchOutputToTableOperator(task_id="load", job=job, conn_id="warehouse", table="lineage_labels")
    op.execute({})
    facts = lineage(op)
    [output] = facts.outputs
    assert (output.namespace, output.name) == (namespace, name)
    assert output.outputFacets["outputStatistics"].rowCount == 12
    assert {"review_id", "status", "top_label"} <= {f.name for f in output.facets["schema"].fields}
    [manifest] = facts.inputs  # the submit task's output: source -> submit -> load -> table
    assert (manifest.namespace, manifest.name) == ("file", job["manifest"])
    assert manifest.inputFacets["inputStatistics"].rowCount == 12


def test_a_load_that_fails_its_ratio_after_landing_still_reports_what_it_landed(env, tmp_path, monkeypatch):  # noqa: F811
    env(item_failure_rate=0.3)
    db = tmp_path / "w.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    job = submit(tmp_path, frame(20))
    op = BatchOutputToTableOperator(task_id="load", job=job, conn_id="warehouse", table="t")
    with pytest.raises(TooManyFailedRowsError):
        op.execute({})
    [output] = lineage(op, TaskInstanceState.FAILED).outputs  # the listener's failure path
    assert (output.namespace, output.name) == (f"sqlite://{db}", "main.t")
    assert output.outputFacets["outputStatistics"].rowCount == 20


def test_a_parquet_submit_reports_its_file_and_its_manifest(env, tmp_path):  # noqa: F811
    env()
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": range(7), "text": [f"Text {i}." for i in range(7)]}), path)
    op = ParquetToBatchOperator(task_id="submit", path=str(path), id_column="id", text_column="text",
                                request=Summarize(), manifest_dir=str(tmp_path / "jobs"))
    reference = op.execute({"task_state_store": DictStateStore()})
    facts = lineage(op)
    assert [(i.namespace, i.name, i.inputFacets["inputStatistics"].rowCount) for i in facts.inputs] == [
        ("file", str(path), 7)]
    assert [(o.namespace, o.name, o.outputFacets["outputStatistics"].rowCount) for o in facts.outputs] == [
        ("file", reference["manifest"], 7)]


def test_a_sql_submit_reports_the_tables_its_query_reads_and_the_query(env, tmp_path, monkeypatch):  # noqa: F811
    env()
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS lineage_src; CREATE TABLE lineage_src (id BIGINT, body TEXT, day DATE)")
        cur.execute("INSERT INTO lineage_src SELECT g, 'Review ' || g, '2026-11-26' FROM generate_series(1, 9) g")
    monkeypatch.setenv("AIRFLOW_CONN_SRC", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    sql = "SELECT id, body FROM lineage_src WHERE day = %(day)s"  # psycopg's placeholder, which parsers reject
    op = SqlToBatchOperator(task_id="submit", conn_id="src", sql=sql, parameters={"day": "2026-11-26"},
                            id_column="id", text_column="body", request=Summarize(),
                            manifest_dir=str(tmp_path / "jobs"))
    op.execute({"task_state_store": DictStateStore()})
    facts = lineage(op)
    assert [(i.namespace, i.name) for i in facts.inputs] == [("postgres://127.0.0.1:5432", "test.public.lineage_src")]
    assert facts.job_facets["sql"].query == sql


def test_a_dataframe_submit_has_no_input_dataset(env, tmp_path):  # noqa: F811
    from airflow_batch_provider.operators.submit import DataFrameToBatchOperator

    env()
    op = DataFrameToBatchOperator(task_id="submit", dataframe=pd.DataFrame({"id": [1], "text": ["x"]}),
                                  id_column="id", text_column="text", request=Summarize(),
                                  manifest_dir=str(tmp_path / "jobs"))
    op.execute({"task_state_store": DictStateStore()})
    facts = lineage(op)
    assert facts.inputs == [] and len(facts.outputs) == 1
