"""Why a job is refused or stopped: the errors of ``job/``, raised by the submit, the wait and the load
(and importable from the modules that raise them, as before).

Those that derive from ``AirflowFailException`` fail the task without Airflow's retries: a retry of
the same task on the same input and settings would meet the same answer, or could pay twice. The
others may be fixed by a later try (an API that answers again, a job that finishes late)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_batch_provider.hooks.errors import BatchApiError

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


class LocalManifestDirError(AirflowFailException):
    """A local manifest directory where the trigger and the load may run on other machines."""


class UnsafeSpoolError(AirflowFailException):
    """The spool folder is not this user's alone: its files could be another user's forgeries."""


class SubmitGaveUpError(AirflowException):
    """A chunk was not accepted within the connection's ``retry_total_timeout``: the API, or the way
    to it, kept failing. What was accepted is recorded; a retry of the task sends the rest."""


class BatchJobFailedError(AirflowFailException):
    """Batches of the job failed as a whole; their rows will not come back, and a retry of the wait
    would find them failed again, so the task fails without Airflow's retries."""


class BatchJobTimeoutError(AirflowException):
    """The job did not finish by its deadline. Its batches keep running on the server, and a retry
    of the task waits for them again (an ``AirflowSensorTimeout`` would never be retried)."""


class BatchPollingError(AirflowException):
    """Polling gave up (key refused, batch unknown, or too many failures in a row)."""


class BatchPollingRefusedError(BatchPollingError, AirflowFailException):
    """Polling failed for a cause no retry fixes until a setting changes (a refused key, an untrusted
    certificate, a proxy refusing its credentials): the task fails without Airflow's retries."""


class BatchDownloadError(AirflowException):
    """A batch's status or output could not be read within the retry budget; nothing was landed."""


class BatchDownloadRefusedError(BatchDownloadError, AirflowFailException):
    """A batch cannot be read as the connection is set (a refused key, an untrusted certificate, a
    proxy refusing its credentials): a retry of the task cannot help until the connection changes."""


class OutputNotReadyError(BatchApiError):
    """The batch said it had completed, but its output was not there yet: read again later."""


class GaveUp(Exception):
    """A batch should not be tried again; the message says why (the caller names the batch)."""


class NotSent(Exception):
    """Raised on the way to the POST (connection lookup, reading the spool): nothing left."""
