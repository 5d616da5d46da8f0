"""Provider metadata read by Airflow's provider manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from airflow_batch_provider import __version__

INTEGRATION = "ScaleDown Batch"


def _field(label: str, kind: str, default, description: str) -> dict:
    return {"label": label, "schema": {"type": [kind, "null"], "default": default},
            "description": description}


def get_provider_info() -> dict:
    """What Airflow's providers manager reads of this package."""
    return {
        "package-name": "airflow-batch-provider",
        "name": "ScaleDown Batch",
        "description": "Enrich tables with the ScaleDown Batch API: extract, summarize, classify.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": INTEGRATION, "external-doc-url": "https://docs.scaledown.ai",
             "tags": ["software"]}
        ],
        "hooks": [
            {"integration-name": INTEGRATION,
             "python-modules": ["airflow_batch_provider.hooks.batch_api",
                                "airflow_batch_provider.hooks.batch_api_async"]}
        ],
        "operators": [
            {"integration-name": INTEGRATION,
             "python-modules": ["airflow_batch_provider.operators.submit",
                                "airflow_batch_provider.operators.load"]}
        ],
        "sensors": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_batch_provider.sensors.batch"]}
        ],
        "triggers": [
            {"integration-name": INTEGRATION, "python-modules": ["airflow_batch_provider.triggers.batch"]}
        ],
        "config": {
            "scaledown": {
                "description": "Where the ScaleDown Batch operators keep their job manifests and downloaded outputs.",
                "options": {
                    "manifest_dir": {
                        "description": "Where job manifests are written: a path or an object storage URI that every "
                                       "worker and the triggerer can read. Unset: [common.io] "
                                       "xcom_objectstorage_path + /scaledown when that is set, else scaledown_jobs "
                                       "beside the dags folder.\n",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://aws_default@my-bucket/scaledown",
                        "default": "",
                    },
                    "spool_dir": {
                        "description": "A local folder where a load keeps the outputs it downloaded until the "
                                       "whole job is read and landed (a retry on the same machine reads only "
                                       "what is missing). About the size of the job's output; removed once "
                                       "the job has landed. Unset: scaledown-spool in the temporary directory.\n",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/var/lib/airflow/scaledown-spool",
                        "default": "",
                    },
                    "allow_local_manifest_dir": {
                        "description": "Allow a local manifest_dir under a distributed executor (Celery, "
                                       "Kubernetes, ...): set it only when every worker and the triggerer mount "
                                       "the same folder. Otherwise such a job is refused before anything is paid.\n",
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    },
                },
            }
        },
        "connection-types": [
            {
                "connection-type": "batch_api",
                "hook-class-name": "airflow_batch_provider.hooks.batch_api.BatchApiHook",
                "hook-name": "ScaleDown Batch API",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"host": "Base URL", "password": "API Key"},
                    "placeholders": {"host": "https://api.scaledown.xyz",
                                     "password": "falls back to $SCALEDOWN_API_KEY"},
                },
                "conn-fields": {
                    "connect_timeout": _field("Connect timeout (s)", "number", 10, "seconds to open a connection"),
                    "read_timeout": _field("Read timeout (s)", "number", 120, "seconds to wait for an answer"),
                    "max_items_per_batch": _field("Max requests per batch", "integer", 50,
                                                  "50 is the newest documented limit"),
                    "max_bytes_per_batch": _field("Max bytes per batch", "integer", 50 * 1024 * 1024,
                                                  "JSONL bytes per submitted batch"),
                    "retry_max_attempts": _field("Retry: attempts", "integer", 6,
                                                 "attempts per call for 429/5xx/connection errors (the "
                                                 "trigger's polls, realtime calls); a job's submit, worker "
                                                 "wait and load retry each batch by time instead"),
                    "retry_initial_wait": _field("Retry: first wait (s)", "number", 1.0,
                                                 "exponential backoff with full jitter starts here"),
                    "retry_max_wait": _field("Retry: longest wait (s)", "number", 60.0,
                                             "cap of one backoff wait (Retry-After is honoured)"),
                    "retry_total_timeout": _field("Retry: total time (s)", "number", 600.0,
                                                  "no retry starts after this long"),
                    "retry_ambiguous_submits": _field(
                        "Retry ambiguous submits", "boolean", False,
                        "resubmit after a failure that happened once the body was sent; safe only "
                        "if the server honours Idempotency-Key"),
                    "legacy_realtime_paths": _field(
                        "Realtime: older paths", "boolean", False,
                        "the hook's extract/summarize/classify call /extract, /summarization/abstractive "
                        "and /classify instead of /v1/chat/completions and /v1/scaledown"),
                    "max_output_line_bytes": _field(
                        "Max output line (bytes)", "integer", 16 * 1024 * 1024,
                        "a longer output line is dropped and counted as unattributable"),
                    "requests_per_minute": _field(
                        "Wait: starting requests/min", "number", 600,
                        "a wait's status requests start at this rate and grow while the API keeps up; a "
                        "load's downloads fall back to no less than this after a 429"),
                    "max_requests_per_minute": _field(
                        "Wait and load: most requests/min", "number", None,
                        "a hard ceiling on a wait's status requests and a load's downloads (e.g. the API's "
                        "published limit); empty: none"),
                },
            }
        ],
    }
