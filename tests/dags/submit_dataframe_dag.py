"""A DataFrame built by a task reaches the submit operator through XCom (used by dag.test() tests)."""

import pandas as pd
import pendulum
from airflow.sdk import DAG, task

from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Classify, Label

with DAG("submit_dataframe", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         params={"manifest_dir": "/tmp"}) as dag:

    @task
    def make_frame() -> pd.DataFrame:
        return pd.DataFrame({"id": range(120), "text": [f"Row {i} is great." for i in range(120)]})

    submit = DataFrameToBatchOperator(
        task_id="submit", dataframe=make_frame(), id_column="id", text_column="text",
        request=Classify([Label("praise", "Does the text praise {{ dag.dag_id }}?"),
                          Label("complaint", "Does the text complain?")]),
        max_items_per_batch=50, manifest_dir="{{ params.manifest_dir }}",
    )

    @task
    def report(job: dict) -> int:
        from airflow_batch_provider.job.manifest import read_manifest

        manifest, _ = read_manifest(job)
        assert manifest.request["labels"][0]["rubric"] == "Does the text praise submit_dataframe?"
        return manifest.total_rows

    report(submit.output)
