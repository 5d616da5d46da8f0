"""Submit, wait and load into SQLite: the load declares its table as an outlet asset (dag.test() tests)."""

import os

import pandas as pd
import pendulum
from airflow.sdk import DAG

from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize

with DAG("load_lineage", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    submit = DataFrameToBatchOperator(
        task_id="submit", dataframe=pd.DataFrame({"id": range(40), "text": [f"Row {i}. Fine." for i in range(40)]}),
        id_column="id", text_column="text", request=Summarize(), wait_for_completion=True, poll_interval=0.2,
        manifest_dir=os.environ.get("TEST_MANIFEST_DIR", "/tmp/scaledown-test-jobs"))
    BatchOutputToTableOperator(task_id="load", job=submit.output, conn_id="lineage_db", table="summaries")
