"""Submit a job that takes about a minute at the emulator, then wait with a deferrable sensor."""

import os

import pendulum
import pandas as pd

from airflow.sdk import DAG, task
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
from airflow_batch_provider.sensors.batch import BatchSensor

with DAG("wait_through_restart", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         catchup=False) as dag:
    submit = DataFrameToBatchOperator(
        task_id="submit", id_column="id", text_column="text", request=Summarize(),
        dataframe=pd.DataFrame({"id": range(240), "text": [f"Row {i}. Text here." for i in range(240)]}),
        max_items_per_batch=40, manifest_dir=os.environ["TEST_MANIFEST_DIR"])
    wait = BatchSensor(task_id="wait", job=submit.output, poll_interval=1, max_poll_interval=2,
                       timeout=900)

    @task
    def done(counts: dict) -> int:
        return counts["items_completed"]

    done(wait.output)
