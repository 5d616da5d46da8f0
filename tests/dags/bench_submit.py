"""The submit task alone, with its ledger in task_state_store or without it (the bookkeeping
benchmark, tests/benchmarks/test_submit_bookkeeping.py)."""

import pandas as pd
import pendulum
from airflow.sdk import DAG, Param

from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize


class SubmitWithOrWithoutLedger(DataFrameToBatchOperator):
    def execute(self, context):
        if not context["params"]["ledger"]:
            context = {**context, "task_state_store": None}
        return super().execute(context)


def rows(context=None, **_):
    n = context["params"]["rows"]
    return pd.DataFrame({"id": range(n), "text": [f"Row {i}: the kettle is great, fast shipping." for i in range(n)]})


with DAG("bench_submit", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         params={"rows": Param(30_000), "ledger": Param(True), "manifest_dir": Param("/tmp")}) as dag:
    SubmitWithOrWithoutLedger(task_id="submit", dataframe=rows, id_column="id", text_column="text",
                              request=Summarize(max_tokens=20), max_items_per_batch=50,
                              manifest_dir="{{ params.manifest_dir }}")
