"""enrich_reviews: product reviews from a Parquet file, enriched three ways, landed in SQLite.

- sentiment: classify every review against yes/no rubrics (submit >> wait >> load, the main flow);
- entities: extract product, price, brand, person and date (one task submits and waits);
- summaries: summarise only the long reviews, chosen by a task.

Connections: ``batch_api_default`` (the ScaleDown API or the emulator) and ``reviews_db`` (any
DbApiHook database; the demo points it at a SQLite file).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pendulum
from airflow.sdk import DAG, task

from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator, ParquetToBatchOperator
from airflow_batch_provider.protocol import Classify, Extract, Label, Summarize
from airflow_batch_provider.sensors.batch import BatchSensor

REVIEWS = str(Path(__file__).parent / "data" / "reviews.parquet")
LONG_REVIEW_CHARS = 400

SENTIMENT = Classify(labels=[
    Label("positive", "Does the review praise the product or recommend it?"),
    Label("negative", "Does the review complain about the product, its delivery or the support?"),
    Label("neutral", "Is the review matter-of-fact, neither praising nor complaining?"),
])
ENTITIES = Extract(entities={
    "product": "the product reviewed, with its model name",
    "price": "the price paid, with currency",
    "brand": "the brand or company that makes the product",
    "person": "a person named in the review",
    "date": "a date mentioned in the review",
})

with DAG(
    "enrich_reviews",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["scaledown", "example"],
    doc_md=__doc__,
    # Retries are safe by design: a retried submit re-attaches to what its ledger recorded and never
    # pays for a row twice, a retried wait only reads, and a retried load lands each row once.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
) as dag:
    classify = ParquetToBatchOperator(
        task_id="submit_sentiment", path=REVIEWS, id_column="review_id", text_column="body",
        request=SENTIMENT)
    wait = BatchSensor(task_id="wait_sentiment", job=classify.output, poll_interval=2)
    load_sentiment = BatchOutputToTableOperator(
        task_id="load_sentiment", job=classify.output, conn_id="reviews_db", table="review_sentiment",
        mode="upsert", label_scores=True)
    classify >> wait >> load_sentiment

    extract = ParquetToBatchOperator(
        task_id="submit_entities", path=REVIEWS, id_column="review_id", text_column="body",
        request=ENTITIES, wait_for_completion=True, poll_interval=2)
    BatchOutputToTableOperator(
        task_id="load_entities", job=extract.output, conn_id="reviews_db", table="review_entities",
        mode="upsert", entity_columns="first")

    @task
    def long_reviews() -> pd.DataFrame:
        reviews = pd.read_parquet(REVIEWS, columns=["review_id", "body"])
        return reviews[reviews.body.str.len() > LONG_REVIEW_CHARS]

    summarize = DataFrameToBatchOperator(
        task_id="submit_summaries", dataframe=long_reviews(), id_column="review_id", text_column="body",
        request=Summarize(instructions="Use bullet points.", max_tokens=80),
        wait_for_completion=True, poll_interval=2)
    BatchOutputToTableOperator(
        task_id="load_summaries", job=summarize.output, conn_id="reviews_db", table="review_summaries",
        mode="upsert")
