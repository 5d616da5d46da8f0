"""The errors the operators raise themselves, in one place (and importable from the operator
modules, as before)."""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowFailException


class TooManyFailedRowsError(AirflowFailException):
    """More rows failed or went missing than ``max_failed_ratio`` allows. The rows were landed, so a
    retry of the load would land the same rows and fail the same way: Airflow does not retry it."""


class IncrementalModeError(AirflowFailException):
    """A load would delete or duplicate rows an incremental submit left out because they had landed."""
