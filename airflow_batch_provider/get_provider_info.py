"""Provider metadata read by Airflow's provider manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from airflow_batch_provider import __version__


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-batch-provider",
        "name": "ScaleDown Batch",
        "description": "Enrich tables with the ScaleDown Batch API: extract, summarize, classify.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "ScaleDown Batch",
                "external-doc-url": "https://docs.scaledown.ai",
                "tags": ["software"],
            }
        ],
    }
