"""partitioned_enrichment: scaling out with dynamic task mapping, one job per Parquet partition.

Each partition is submitted, waited for and landed by mapped task instances of its own, so a large
day spreads over many workers (Celery or Kubernetes executors) and a failed partition is retried
alone. Everything lands in one table; ``append`` is idempotent per batch, so retries of any
partition land each row exactly once.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, task

from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import ParquetToBatchOperator
from airflow_batch_provider.protocol import Classify, Label
from airflow_batch_provider.sensors.batch import BatchSensor

PARTITIONS = os.environ.get("REVIEW_PARTITIONS", str(Path(__file__).parent / "data" / "partitions"))

with DAG(
    "partitioned_enrichment",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["scaledown", "example"],
    doc_md=__doc__,
    # Retries are safe by design: a retried submit re-attaches to what its ledger recorded and never
    # pays for a row twice, a retried wait only reads, and a retried load lands each row once.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
) as dag:

    @task
    def partitions() -> list[str]:
        return sorted(str(p) for p in Path(PARTITIONS).glob("*.parquet"))

    submit = ParquetToBatchOperator.partial(
        task_id="submit", id_column="review_id", text_column="body",
        request=Classify([Label("positive", "Does the review praise the product?"),
                          Label("negative", "Does the review complain?")]),
    ).expand(path=partitions())
    wait = BatchSensor.partial(task_id="wait", poll_interval=2).expand(job=submit.output)
    load = BatchOutputToTableOperator.partial(
        task_id="load", conn_id="reviews_db", table="partitioned_sentiment", mode="append",
    ).expand(job=submit.output)
    wait >> load  # every partition finished before any lands; each load is still one partition
