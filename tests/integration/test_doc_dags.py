"""Every Python block in README.md and docs/ that is a DAG runs through ``dag.test()`` against the
emulator, with what it names made real: its Parquet input on S3 (moto in server mode), its warehouse
a SQLite file. A block that cannot run says why in a ``# Not run here:`` comment."""

from __future__ import annotations

import io
import json
import sqlite3

import pendulum
import pyarrow.parquet as pq
import pytest
from airflow.sdk import DAG

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from tests.conftest import aws_connection
from tests.unit.test_docs import ROOT, blocks

DAG_BLOCKS = [block for block in blocks("python") if "with DAG(" in block.values[0]]
EXAMPLE_DAG = (ROOT / "dags" / "partitioned_enrichment.py").read_text()
LOGICAL_DATE = pendulum.datetime(2026, 11, 20, tz="UTC")


def test_the_docs_hold_dag_blocks():
    assert len(DAG_BLOCKS) >= 3


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("code", DAG_BLOCKS)
def test_a_documented_dag_runs(code, make_emulator, moto_s3, monkeypatch, tmp_path):
    if "# Not run here:" in code:
        pytest.skip(code.split("# Not run here:")[1].splitlines()[0].strip())
    if code.strip() in EXAMPLE_DAG:
        pytest.skip("the example DAG's file: tests/e2e run it with `airflow dags test` and on Celery")
    endpoint, s3 = moto_s3
    s3.create_bucket(Bucket="raw")  # what the blocks read: s3://raw/reviews/{{ ds }}.parquet
    body = io.BytesIO()
    pq.write_table(pq.read_table(ROOT / "dags" / "data" / "reviews.parquet").slice(0, 60), body)
    s3.put_object(Bucket="raw", Key=f"reviews/{LOGICAL_DATE:%Y-%m-%d}.parquet", Body=body.getvalue())
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(endpoint))
    import s3fs
    from airflow.sdk.io import store

    # An earlier test's moto is gone: no filesystem cached for it, by fsspec or by Airflow.
    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setattr(store, "_STORE_CACHE", {})
    # The blocks name no connection for their s3:// path: the worker's ambient AWS settings apply.
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
    monkeypatch.setenv("AIRFLOW__SCALEDOWN__MANIFEST_DIR", str(tmp_path / "jobs"))
    # dag.test() serializes the DAG from its file, found in the dags folder's bundle
    (tmp_path / "dags").mkdir()
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "dags"))
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([{
        "name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(tmp_path / "dags")}}]))
    module = load_as_file(code, tmp_path / "dags" / "doc_dag.py")
    namespace = vars(module)
    dags = {dag for dag in namespace.values() if isinstance(dag, DAG)} or set(DAG_REGISTRY(namespace))
    assert dags, "the block defines no DAG this test can find"
    for dag in dags:
        run = dag.test(logical_date=LOGICAL_DATE)
        assert run.state == "success", dag.dag_id
    with sqlite3.connect(tmp_path / "w.db") as conn:
        landed = conn.execute("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels").fetchall()
    assert landed == [(60, 60)] and server.stats()["items"] == 60


def load_as_file(code: str, path):
    import importlib.util

    path.write_text(code)
    spec = importlib.util.spec_from_file_location(f"doc_dag_{abs(hash(code))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def DAG_REGISTRY(namespace):  # noqa: N802 - `with DAG(...):` without `as`: the DAG is found through its tasks
    from airflow.sdk import BaseOperator

    return {value.dag for value in namespace.values() if isinstance(value, BaseOperator) and value.has_dag()}
