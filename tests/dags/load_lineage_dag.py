"""Submit, wait and load into SQLite: the load emits its table's standard asset URI, and a DAG
scheduled on that URI (written by hand, as a downstream team would) is the one it triggers."""

import os

import pandas as pd
import pendulum
from airflow.sdk import DAG, Asset

from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize

DB = os.environ.get("TEST_LINEAGE_DB", "/tmp/scaledown-lineage.db")  # the lineage_db connection's file

with DAG("load_lineage", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
    submit = DataFrameToBatchOperator(
        task_id="submit", dataframe=pd.DataFrame({"id": range(40), "text": [f"Row {i}. Fine." for i in range(40)]}),
        id_column="id", text_column="text", request=Summarize(), wait_for_completion=True, poll_interval=0.2,
        manifest_dir=os.environ.get("TEST_MANIFEST_DIR", "/tmp/scaledown-test-jobs"))
    BatchOutputToTableOperator(task_id="load", job=submit.output, conn_id="lineage_db", table="summaries")

with DAG("load_lineage_consumer", schedule=[Asset(f"sqlite://localhost{DB}/main/summaries")],
         start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as consumer:
    pass
