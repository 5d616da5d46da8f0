"""The pipeline the reliability suite drives: rows -> submit -> wait -> load into PostgreSQL.

Params choose the input (``case``: ok, or one kind of bad input), its size, the batch size and the
destination table. Retries are on, as in production, so transient failures are survived the way a
real deployment survives them.
"""

import os
from datetime import timedelta

import pandas as pd
import pendulum
from airflow.sdk import DAG, Param, task

from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Classify, Label
from airflow_batch_provider.sensors.batch import BatchSensor

REQUEST = Classify([Label("positive", "Does the text praise something?"),
                    Label("negative", "Does the text complain about something?")])


def make_rows(case: str, rows: int) -> pd.DataFrame:
    ids = list(range(rows))
    texts = [f"Row {i}: the kettle is great, fast shipping." if i % 2 else f"Row {i}: it broke, terrible."
             for i in ids]
    frame = pd.DataFrame({"id": ids, "text": texts})
    if case == "nulls":
        frame.loc[[3, 7], "text"] = None
    elif case == "empty":
        frame = frame.iloc[0:0]
    elif case == "duplicates":
        frame.loc[5, "id"] = 4
    elif case == "non_utf8":
        frame["text"] = frame["text"].astype(object)
        frame.at[2, "text"] = b"\xff\xfe not text"
    elif case == "wrong_types":
        frame["text"] = [float(i) for i in ids]
    elif case == "huge":
        frame.loc[6, "text"] = "x" * 2_000_000
    return frame


with DAG("reliable_pipeline", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
         params={"case": Param("ok"), "rows": Param(100), "table": Param("rel_default")}) as dag:

    @task
    def rows(params=None) -> pd.DataFrame:
        return make_rows(params["case"], params["rows"])

    # RELIABILITY_TASK_RETRIES: a scenario's own retries (read when dag.test() loads this file).
    retries = {"retries": int(os.environ.get("RELIABILITY_TASK_RETRIES", "3")), "retry_delay": timedelta(seconds=1)}
    submit = DataFrameToBatchOperator(
        task_id="submit", dataframe=rows(), id_column="id", text_column="text", request=REQUEST,
        max_items_per_batch=50, max_concurrent_submits=2, **retries)
    wait = BatchSensor(task_id="wait", job=submit.output, poll_interval=0.5, max_poll_interval=1,
                       timeout=600, **retries)
    load = BatchOutputToTableOperator(task_id="load", job=submit.output, conn_id="reliability_db",
                                      table="{{ params.table }}", mode="upsert", **retries)
    submit >> wait >> load
