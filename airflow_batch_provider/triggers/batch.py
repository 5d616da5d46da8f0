"""``BatchTrigger``: waits for every batch of a job on the triggerer, without a worker slot.

One trigger per job. Each cycle it polls only the batches still running — the newest one, and the
oldest ones with the rest of the budget (``job/polling.py``, shared with the worker-side wait) — at
most ``max_concurrency`` at a time, paced within a request rate that finds the API's limit
(``job/budget.py``); cycles follow at once while they confirm a backlog of finished batches, and
while nothing changes the interval grows gently (x1.5 up to ``max_poll_interval``). Its deadline is an absolute
wall-clock time fixed on the worker at submission and carried in the trigger's kwargs, so a
triggerer restart neither resets nor extends it. It yields exactly one terminal event — success,
failed, timeout or error — with ids and counts only, then returns.

Success ends the task from the triggerer (``end_with``): the return value is written as the task's
XCom and a ``TaskSuccessEvent`` sets it to success, so no resumed try exists. A resumed try is what
Airflow 3.3's stale defer-exit executor event fails ("finished with state success, but the task
instance's state attribute is queued/running": apache/airflow#66374, #67287, #71580, #72716), at
random on a busy scheduler. Failure, timeout and error still resume the task, which raises the
typed error (its retries, callbacks and lineage run on the worker as for any failure).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_batch_provider.hooks.batch_api_async import BatchApiAsyncHook
from airflow_batch_provider.hooks.errors import BatchApiError
from airflow_batch_provider.job.budget import budget_for
from airflow_batch_provider.job.manifest import JobReference, connection_of, read_manifest
from airflow_batch_provider.job.polling import Poller, Stop
from airflow_batch_provider.job.retry_by_time import RetryByTime
from airflow_batch_provider.job.waiting import (
    SHOWN_IDS,
    BatchPollingError,
    JobProgress,
    Verdict,
    stopped_waiting,
    verdict_error,
    verdict_message,
)
from airflow_batch_provider.logs import ProgressLog
from airflow_batch_provider.protocol import BatchStatus, ProtocolError

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

DEFERRAL_GRACE = timedelta(minutes=10)


class BatchTrigger(BaseTrigger):
    """
    :param job: the submit operator's job reference (XCom): manifest location, ids, counts.
    :param batch_api_conn_id: the ``batch_api`` connection.
    :param deadline: absolute Unix time after which the job counts as timed out; None waits forever.
    :param poll_interval: seconds between cycles while batches progress (the API docs advise 5).
    :param max_poll_interval: longest interval the backoff reaches while nothing changes.
    :param max_concurrency: status requests in flight at most (the rate decides how many are needed).
    :param requests_per_minute: the most status requests a minute (None: the connection's
        ``max_requests_per_minute``); the rate starts at the connection's ``requests_per_minute`` and
        grows while the API keeps up (job/budget.py).
    :param max_consecutive_failures: deprecated and ignored (accepted from triggers serialized by an
        earlier version): a batch whose status cannot be read is asked about again, and the wait
        gives up once it has failed, or nothing has been answered, for the connection's
        ``retry_total_timeout``.
    :param end_with: on success, end the task from here with this return value: ``"counts"`` (the
        success event's payload, what the sensor returns), ``"job"`` (the job reference, what a
        submit that waits returns) or ``"no_xcom"`` (none: the operator's ``do_xcom_push`` is off);
        None resumes the task with the event.
    """

    def __init__(self, *, job: JobReference, batch_api_conn_id: str = BatchApiAsyncHook.default_conn_name,
                 deadline: float | None = None, poll_interval: float = 5.0, max_poll_interval: float = 60.0,
                 max_concurrency: int = 32, requests_per_minute: float | None = None,
                 max_consecutive_failures: int | None = None, end_with: str | None = None) -> None:
        super().__init__()
        self.job = job
        self.batch_api_conn_id = batch_api_conn_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.max_poll_interval = max(max_poll_interval, poll_interval)
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute
        del max_consecutive_failures  # see the docstring
        if end_with not in (None, "counts", "job", "no_xcom"):
            raise ValueError(f"end_with must be None, 'counts', 'job' or 'no_xcom', not {end_with!r}")
        self.end_with = end_with
        self._progress: JobProgress | None = None  # for on_kill: what was still running

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The trigger's class path and arguments, as the triggerer rebuilds it (no credential)."""
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "job": self.job, "batch_api_conn_id": self.batch_api_conn_id, "deadline": self.deadline,
            "poll_interval": self.poll_interval, "max_poll_interval": self.max_poll_interval,
            "max_concurrency": self.max_concurrency, "requests_per_minute": self.requests_per_minute,
            "end_with": self.end_with,
        })

    def _event(self, status: str, progress: JobProgress | None, message: str) -> TriggerEvent:
        payload: dict[str, Any] = {"status": status, "job": self.job, "message": message}
        if progress is not None:
            payload.update(vars(progress.counts()))
            payload["failed_batches"] = progress.failed()[:SHOWN_IDS]
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the job's batches until they have all finished or the deadline passes; one event says which."""
        job_id = self.job.get("job_id")
        try:
            manifest, _ = await asyncio.to_thread(read_manifest, self.job)  # storage I/O off the loop
        except (OSError, ValueError, KeyError) as exc:
            yield self._event("error", None, f"cannot read the manifest of job {job_id}: {exc}")
            return
        progress = self._progress = JobProgress.of(manifest)
        self.log.info("Waiting for job %s: %d batches, %d rows; deadline %s", job_id,
                      len(manifest.batches), manifest.total_rows,
                      time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.deadline)) if self.deadline else "none")
        interval = self.poll_interval
        progress_log = ProgressLog(self.log, f"Job {job_id}: finished", "batches", len(progress.batch_ids))
        limit = asyncio.Semaphore(self.max_concurrency)
        if not self._ends_task():
            # Resuming on success too: the first look comes one interval after deferral, which
            # narrows (without closing) the window of the stale executor event (module docstring).
            await asyncio.sleep(self._pause(self.poll_interval))
        async with BatchApiAsyncHook(self.batch_api_conn_id) as hook:
            settings = await hook.settings()
            poller = Poller(progress, budget_for(settings, self.requests_per_minute, self.max_concurrency, self.log),
                            max_concurrency=self.max_concurrency, retry=RetryByTime.of(settings),
                            job_id=str(job_id), log=self.log)
            hook.on_throttled = poller.budget.slow_down  # a 429 slows the whole wait at once
            while True:
                verdict = progress.verdict(time.time(), self.deadline)
                changed = False
                if verdict is Verdict.RUNNING:
                    chosen = poller.plan(interval)
                    hook.throttled = 0
                    results = await asyncio.gather(*(self._ask(hook, poller, limit, batch) for batch in chosen))
                    changed, stop = poller.settle(chosen, results, throttled=hook.throttled)
                    if stop is not None:
                        event = self._event("error", progress, stop.message)
                        event.payload["refused"] = stop.refused  # the resumed task fails without retries
                        yield event
                        return
                    seen = progress.counts()
                    progress_log.update(seen.batches_done, seen.describe())
                    verdict = progress.verdict(time.time(), self.deadline)
                if verdict is not Verdict.RUNNING:
                    yield await self._finished(progress, verdict)
                    return
                interval = self.poll_interval if changed else min(interval * 1.5, self.max_poll_interval)
                await asyncio.sleep(self._pause(poller.pause(interval)))

    @staticmethod
    async def _ask(hook: BatchApiAsyncHook, poller: Poller, limit: asyncio.Semaphore,
                   batch_id: str) -> BatchStatus | BaseException:
        """One batch's status, or what went wrong asking for it (the poller decides what that means)."""
        await poller.budget.await_turn()  # its turn, before a place among those in flight
        async with limit:
            sent = time.monotonic()
            try:
                return await hook.get_batch(batch_id)
            except (BatchApiError, ProtocolError) as exc:
                return exc
            finally:
                poller.answered_after(time.monotonic() - sent)

    async def _finished(self, progress: JobProgress, verdict: Verdict) -> TriggerEvent:
        """The event that ends the wait: the verdict's, or the task's own success where the trigger
        ends the task."""
        message = verdict_message(self.job, progress, verdict)
        self.log.info(message)
        event = self._event(verdict.value, progress, message)
        if verdict is Verdict.SUCCESS and self._ends_task() and await self._set_return_value(event):
            return TaskSuccessEvent()
        return event

    def _ends_task(self) -> bool:
        # No task instance under `airflow dags test`, which runs triggers in line and resumes the
        # task with whatever they yield (and has no stale executor event to avoid).
        return self.end_with is not None and getattr(self, "task_instance", None) is not None

    async def _set_return_value(self, event: TriggerEvent) -> bool:
        """Write the XCom the resumed task would have returned, through the SDK (the configured
        XCom backend, values kept as they are: ``TaskSuccessEvent(xcoms=...)`` would store JSON
        text). False if it could not be written: the task is then resumed with the event instead,
        and returns the same value itself."""
        if self.end_with == "no_xcom":  # the operator's do_xcom_push=False
            return True
        from airflow.sdk.execution_time.xcom import resolve_xcom_backend

        ti = self.task_instance
        assert ti is not None  # _ends_task() said so
        value = event.payload if self.end_with == "counts" else self.job
        try:
            await resolve_xcom_backend().aset("return_value", value, dag_id=ti.dag_id, task_id=ti.task_id,
                                              run_id=ti.run_id, map_index=ti.map_index)
        except Exception as exc:  # noqa: BLE001 - any backend's failure: resuming still returns the value
            self.log.warning("Could not write the task's return value from the triggerer (%s: %s); resuming the "
                             "task to return it", type(exc).__name__, exc)
            return False
        return True

    async def on_kill(self) -> None:
        """A user marked the deferred task failed or success, or cleared it (Airflow 3.3 calls this
        only then): say, in the task's log, that the batches go on and are billed (the API has no
        cancel endpoint) and which ones were still running."""
        self.log.warning(stopped_waiting(self.job, self._progress))

    def _pause(self, interval: float) -> float:
        """Sleep for ``interval``, but never past the deadline."""
        return interval if self.deadline is None else max(0.0, min(interval, self.deadline - time.time()))


def defer_until_done(operator: BaseOperator, job: JobReference, *, poll_interval: float,
                     timeout: timedelta, method_name: str, end_with: str | None = None,
                     **trigger_kwargs: Any) -> None:
    """Defer ``operator`` to a :class:`BatchTrigger`; the deadline is fixed here, on the worker, once.
    On success the trigger ends the task with ``end_with``'s value (None: it resumes it);
    ``method_name``, which must return the same, runs for the other outcomes and under
    ``airflow dags test``."""
    deadline = time.time() + timeout.total_seconds()
    if end_with is not None and not operator.do_xcom_push:
        end_with = "no_xcom"
    operator.defer(
        trigger=BatchTrigger(job=job, batch_api_conn_id=connection_of(job),
                             deadline=deadline, poll_interval=poll_interval, end_with=end_with, **trigger_kwargs),
        method_name=method_name,
        timeout=timeout + DEFERRAL_GRACE,  # a backstop only: the trigger's own deadline decides
    )


def check_event(event: dict[str, Any] | None) -> dict[str, Any]:
    """The trigger's event if it says success (the trigger has logged it); otherwise the typed error
    it stands for."""
    if not isinstance(event, dict) or "status" not in event:
        raise BatchPollingError(f"the trigger returned no usable event: {event!r}")
    status, message = event["status"], event.get("message", "")
    if status == "success":
        return event
    if status in (Verdict.FAILED, Verdict.TIMEOUT):
        raise verdict_error(Verdict(status), message)
    if status == "error":
        raise Stop(message, refused=bool(event.get("refused"))).error()
    raise BatchPollingError(f"the trigger returned an unknown status {status!r}: {event!r}")
