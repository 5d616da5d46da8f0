"""``[core] hostname_callable`` for the Celery e2e test: two workers on one machine each record
their own name on the task instances they run, as two hosts would."""

import os


def from_environment() -> str:
    return os.environ["SCALEDOWN_E2E_HOSTNAME"]
