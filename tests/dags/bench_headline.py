"""The headline benchmark's pipeline (tests/benchmarks/test_headline.py), every setting at its
default: Parquet -> submit -> BatchSensor -> PostgreSQL upsert. Whether the sensor defers is the
deployment's `[operators] default_deferrable`, as for a user's DAG."""

import pendulum
from airflow.sdk import DAG, Param

from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import ParquetToBatchOperator
from airflow_batch_provider.protocol import Summarize
from airflow_batch_provider.sensors.batch import BatchSensor

with DAG("bench_headline", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         params={"path": Param("/tmp/rows.parquet"), "manifest_dir": Param("/tmp")}) as dag:
    submit = ParquetToBatchOperator(task_id="submit", path="{{ params.path }}", id_column="id", text_column="text",
                                    request=Summarize(), manifest_dir="{{ params.manifest_dir }}")
    wait = BatchSensor(task_id="wait", job=submit.output)
    load = BatchOutputToTableOperator(task_id="load", job=submit.output, conn_id="bench_pg", table="bench_headline",
                                      mode="upsert")
    submit >> wait >> load
