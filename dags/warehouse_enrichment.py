"""warehouse_enrichment: nightly, incremental enrichment of a PostgreSQL table.

Support tickets are classified by topic and urgency. Only tickets that are new, or whose text
changed since they were last enriched, are sent (``skip_landed_*``): the rest already landed with
status ``ok`` and the same request fingerprint, so the nightly run pays only for what changed.
Results are upserted back next to the source table.

Connections: ``batch_api_default`` and ``warehouse`` (PostgreSQL).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import SqlToBatchOperator
from airflow_batch_provider.protocol import Classify, Label
from airflow_batch_provider.sensors.batch import BatchSensor

TOPICS = Classify(labels=[
    Label("billing", "Is the ticket about an invoice, a charge, a refund or a payment?"),
    Label("delivery", "Is the ticket about shipping, delivery or a late or lost parcel?"),
    Label("defect", "Does the ticket report a broken, faulty or damaged product?"),
    Label("account", "Is the ticket about logging in, a password or account settings?"),
])

with DAG(
    "warehouse_enrichment",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    tags=["scaledown", "example"],
    doc_md=__doc__,
    # Retries are safe by design: a retried submit re-attaches to what its ledger recorded and never
    # pays for a row twice, a retried wait only reads, and a retried load lands each row once.
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
) as dag:
    submit = SqlToBatchOperator(
        task_id="submit_new_tickets", conn_id="warehouse",
        sql="SELECT ticket_id, body FROM support_tickets WHERE created_at < '{{ data_interval_end }}'",
        id_column="ticket_id", text_column="body", request=TOPICS,
        skip_landed_conn_id="warehouse", skip_landed_table="ticket_topics",
        on_invalid_rows="skip", allow_empty=True)
    wait = BatchSensor(task_id="wait", job=submit.output, poll_interval=5)
    load = BatchOutputToTableOperator(
        task_id="upsert_topics", job=submit.output, conn_id="warehouse", table="ticket_topics",
        mode="upsert", label_scores=True, max_failed_ratio=0.01)
    submit >> wait >> load
