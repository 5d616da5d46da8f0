"""Why a job is refused or stopped. Each one fails the task without Airflow's retries: a retry of
the same task on the same input and settings would meet the same answer, or could pay twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow_batch_provider.tabular.rows_to_requests import InvalidRow

SHOWN = 10


class InvalidInputError(AirflowFailException, ValueError):
    """The input or a setting cannot be sent as it is. Nothing was submitted."""


class InvalidRowsError(InvalidInputError):
    """Rows that cannot be sent. Nothing was submitted."""

    def __init__(self, invalid: Sequence[InvalidRow], count: int, total: int) -> None:
        shown = "; ".join(f"{row.row_id!r}: {row.reason}" for row in invalid[:SHOWN])
        more = f" (and {count - SHOWN} more)" if count > SHOWN else ""
        super().__init__(
            f"{count} of {total} rows cannot be sent, so nothing was submitted: {shown}{more}. "
            "Fix these rows, or pass on_invalid_rows='skip' to send the others and report these.")
        self.invalid = list(invalid)
        self.count = count


class InputChangedError(AirflowFailException):
    """A retry found different input or settings than the try that already paid for batches."""


class AmbiguousSubmissionError(AirflowFailException):
    """Chunks whose POST may have created a batch, which is not resent without the user's word.

    ``chunks`` maps each chunk to ``(idempotency_key, first_id, last_id, rows)``.
    """

    def __init__(self, job_id: str, chunks: dict[int, tuple[str, str, str, int]], cause: str) -> None:
        shown = "; ".join(f"chunk {c} (Idempotency-Key {key}: {rows} rows, ids {first!r} to {last!r})"
                          for c, (key, first, last, rows) in list(chunks.items())[:SHOWN])
        more = f" and {len(chunks) - SHOWN} more" if len(chunks) > SHOWN else ""
        what = (f"{len(chunks)} chunk(s) may have been created and billed, but no batch id came back ({cause}): "
                f"{shown}{more}" if chunks else cause)
        super().__init__(
            f"job {job_id}: {what}. Nothing was resent, so nothing is paid twice. Two ways on: set "
            "retry_ambiguous_submits on the batch_api connection if the server honours Idempotency-Key (a "
            "resend then returns the same batch), or pass on_ambiguous='resubmit' to send them again "
            "deliberately, which may charge them twice.")
        self.job_id = job_id
        self.chunks = chunks
