"""The latency benchmark's pipeline: Parquet -> submit -> deferred sensor -> PostgreSQL upsert
(tests/benchmarks/test_latency.py)."""

import os

import pendulum
from airflow.sdk import DAG, Param

from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import ParquetToBatchOperator
from airflow_batch_provider.protocol import Summarize
from airflow_batch_provider.sensors.batch import BatchSensor

with DAG("bench_latency", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         params={"path": Param("/tmp/rows.parquet"), "concurrency": Param(8), "manifest_dir": Param("/tmp")}) as dag:
    submit = ParquetToBatchOperator(
        task_id="submit", path="{{ params.path }}", id_column="id", text_column="text", request=Summarize(),
        max_concurrent_submits=int(os.environ.get("BENCH_SUBMIT_CONCURRENCY", 8)), manifest_dir="{{ params.manifest_dir }}")
    wait = BatchSensor(task_id="wait", job=submit.output, deferrable=True)  # deferred; every other setting its default
    load = BatchOutputToTableOperator(task_id="load", job=submit.output, conn_id="bench_pg", table="bench_latency",
                                      mode="upsert", max_concurrent_downloads=8)
    submit >> wait >> load
