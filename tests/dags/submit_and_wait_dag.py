"""Submit, then wait two ways: a deferrable BatchSensor, and wait_for_completion on the submit
operator itself (one-task pipeline). Used by dag.test() tests; the trigger runs in line."""

import os

import pandas as pd
import pendulum
from airflow.sdk import DAG, task

from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
from airflow_batch_provider.sensors.batch import BatchSensor

FRAME = pd.DataFrame({"id": [f"r{i}" for i in range(90)], "text": [f"Row {i}. Short text." for i in range(90)]})
MANIFESTS = os.environ.get("TEST_MANIFEST_DIR", "/tmp/scaledown-test-jobs")

with DAG("submit_and_wait", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    submit = DataFrameToBatchOperator(task_id="submit", dataframe=FRAME, id_column="id", text_column="text",
                                      request=Summarize(), max_items_per_batch=30, manifest_dir=MANIFESTS)
    wait = BatchSensor(task_id="wait", job=submit.output, poll_interval=0.2, timeout=120)
    one_task = DataFrameToBatchOperator(task_id="submit_and_wait", dataframe=FRAME, id_column="id",
                                        text_column="text", request=Summarize(instructions="One sentence."),
                                        max_items_per_batch=30, manifest_dir=MANIFESTS,
                                        wait_for_completion=True, poll_interval=0.2)

    @task
    def counts(waited: dict, job: dict) -> list:
        return [waited["items_completed"], job["rows"], job["batches"]]

    submit >> wait
    counts(wait.output, one_task.output)
