"""A mapped submit (partial + expand) whose request holds templates: each mapped task renders them."""

import pandas as pd
import pendulum
from airflow.sdk import DAG, task

from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Classify, Label

with DAG("mapped_submit", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         params={"manifest_dir": "/tmp"}) as dag:
    submits = DataFrameToBatchOperator.partial(
        task_id="submit", id_column="id", text_column="text", manifest_dir="{{ params.manifest_dir }}",
        dataframe=lambda **_: pd.DataFrame({"id": range(30), "text": [f"Row {i} is great." for i in range(30)]}),
        request=Classify([Label("praise", "Does the text praise {{ dag.dag_id }}?"),
                          Label("complaint", "Does the text complain?")]),
    ).expand(max_items_per_batch=[10, 15])

    @task
    def rubrics(jobs: list[dict]) -> list[str]:
        from airflow_batch_provider.job.manifest import read_manifest

        return [read_manifest(job)[0].request["labels"][0]["rubric"] for job in jobs]

    rubrics(submits.output)
