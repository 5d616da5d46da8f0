"""Parquet input for the reliability suite's bad-input scenario (a file without the text column)."""

import os

import pendulum
from airflow.sdk import DAG

from airflow_batch_provider.operators.submit import ParquetToBatchOperator
from airflow_batch_provider.protocol import Summarize

with DAG("reliable_parquet", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    ParquetToBatchOperator(task_id="submit", path=os.environ.get("RELIABILITY_PARQUET", "/nonexistent.parquet"),
                           id_column="id", text_column="text", request=Summarize())
