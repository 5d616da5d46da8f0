"""One wait's polling, the same on the triggerer (``BatchTrigger``) and on a worker (the sensor's
poke and reschedule modes, a submit's ``wait_for_completion`` without a triggerer).

Each cycle :meth:`Poller.plan` chooses the batches to ask about (:func:`choose`) within the request
budget (job/budget.py); the caller asks, at most ``max_concurrency`` at a time (asyncio on the
triggerer, threads on a worker); :meth:`Poller.settle` records the answers, adapts the budget and
says whether polling must stop. Only the asking differs between the two.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from airflow.sdk.exceptions import AirflowFailException

from airflow_batch_provider.hooks.errors import BatchApiError
from airflow_batch_provider.hooks.retry import is_retryable, slowed_down
from airflow_batch_provider.hooks.thread_hooks import ThreadHooks
from airflow_batch_provider.job.budget import RequestBudget
from airflow_batch_provider.job.errors import GaveUp
from airflow_batch_provider.job.retry_by_time import RetryByTime
from airflow_batch_provider.job.waiting import BatchPollingError, BatchPollingRefusedError, JobProgress
from airflow_batch_provider.logs import TaskLog
from airflow_batch_provider.protocol import BatchStatus, ProtocolError


def choose(running: list[str], budget: int, cycle: int = 0) -> list[str]:
    """The batches to poll this cycle, at most ``budget`` of them.

    Batches finish roughly in submission order. So the newest unfinished batch is polled every
    cycle (while it runs, the job runs), and the rest of the budget goes to the oldest unfinished
    ones, which finish first: what is confirmed grows from the front as batches finish, and once
    the job is done only the batches that finished since the last cycles are left to confirm. The
    job is noticed within about two intervals plus ``running / budget`` cycles, without full sweeps.
    One slot rotates (by ``cycle``) through the batches in between, so one that failed is noticed
    while the oldest still run.
    """
    if len(running) <= budget:
        return list(running)
    if budget < 3:
        return running[: budget - 1] + running[-1:]
    middle = running[budget - 2: -1]  # one slot rotates through these, so a failed one is seen too
    return running[: budget - 2] + [middle[cycle % len(middle)]] + running[-1:]


@dataclass(frozen=True)
class Stop:
    """Polling cannot go on: ``message`` says why; ``refused`` when no retry can fix it (a key, a
    certificate), so the task fails without Airflow's retries."""

    message: str
    refused: bool = False

    def error(self) -> BatchPollingError:
        """The error the waiting task raises: one no retry fixes fails it without Airflow's retries."""
        return (BatchPollingRefusedError if self.refused else BatchPollingError)(self.message)


BACKLOG_SPAN = 1.0  # seconds: a cycle's length while finished batches wait to be confirmed


class Poller:
    """``retry``: when a batch whose status could not be read is given up
    on; until then it is asked about again in later cycles, as any running batch is."""

    def __init__(self, progress: JobProgress, budget: RequestBudget, *, max_concurrency: int,
                 retry: RetryByTime, job_id: str, log: TaskLog) -> None:
        self.progress = progress
        self.budget = budget
        self.max_concurrency = max_concurrency
        self.retry = retry
        self.job_id = job_id
        self.log = log
        self.cycles = 0
        # The last cycle asked for all the budget allowed and more batches were waiting (or some of its
        # reads failed), and most answers said "finished": a backlog of finished batches to confirm,
        # so the next cycle starts at once (the budget's pace, not the poll interval, spaces it).
        self.backlog = False
        self._running = 0
        self._started = 0.0
        self._round_trips: list[float] = []

    def plan(self, interval: float, *, sweep: bool = False) -> list[str]:
        """The batches to ask about in a cycle ``interval`` seconds long (:data:`BACKLOG_SPAN` for the
        first and while a backlog is confirmed); with ``sweep``, every batch still running."""
        running = self.progress.running()
        self._running = len(running)
        # The first cycle is short too: if the job has finished, the backlog is found a second in.
        span = min(interval, BACKLOG_SPAN) if self.backlog or not self.cycles else interval
        chosen = list(running) if sweep else choose(running, self.budget.per_cycle(span), self.cycles)
        self.cycles += 1
        self._started = time.monotonic()
        self._round_trips = []
        return chosen

    def answered_after(self, seconds: float) -> None:
        """One request's round trip (from sending to its answer, not its wait for a turn): the
        budget grows only while these stay short. Safe from the polling threads (list.append)."""
        self._round_trips.append(seconds)

    def pause(self, interval: float) -> float:
        """Seconds from now to the next cycle: none while a backlog is confirmed, else what is left of
        ``interval`` since this cycle started (the budget's pace may have spread it out)."""
        return 0.0 if self.backlog else max(0.0, interval - (time.monotonic() - self._started))

    def settle(self, chosen: Sequence[str], results: Sequence[BatchStatus | BaseException], *,
               throttled: int) -> tuple[bool, Stop | None]:
        """Record a cycle's answers (statuses, or the errors the hook raised): whether anything
        changed, and why polling must stop, if it must."""
        changed, confirmed, answered, failed, faulted = False, 0, 0, 0, 0
        failure: BaseException | None = None
        self.backlog = False
        for batch_id, result in zip(chosen, results, strict=True):  # answers first: the API is up
            if isinstance(result, BatchStatus):
                answered += 1
                self.retry.succeeded(batch_id)
                changed |= self.progress.update(result)
                confirmed += result.terminal  # chosen among the running: a terminal answer is news
        for batch_id, result in zip(chosen, results, strict=True):
            if isinstance(result, BatchStatus):
                continue
            if isinstance(result, BatchApiError) and not is_retryable(result, idempotent=True):
                # The hooks' one rule (hooks/retry.py): a poll it would not repeat (a refused key, an
                # unknown batch, a redirect, the router not configured, a TLS or proxy failure)
                # fails alike on every later cycle.
                return changed, Stop(f"polling batch {batch_id} of job {self.job_id} failed and will not recover: "
                                     f"{result}", refused=isinstance(result, AirflowFailException))
            failed += 1
            faulted += not slowed_down(result)  # a throttled read waits the next cycle, as asked
            failure = failure or result
            try:  # asked about again in a later cycle, as every running batch is
                self.retry.failed(batch_id, result, started=self._started)
            except GaveUp as exc:
                return changed, Stop(f"gave up polling batch {batch_id} of job {self.job_id}: {exc}")
        trips = self._round_trips
        saturated = self._running > len(chosen)
        self.budget.cycle_done(answered, throttled, sum(trips) / len(trips) if answered and trips else None,
                               saturated=saturated, confirmed=confirmed)
        # Reads that failed (not throttled) count as waiting: in the tail of a job under faults they
        # are mostly finished batches, and each level of that tail would otherwise wait an interval.
        self.backlog = (saturated or faulted > 0) and answered > 0 and 2 * confirmed >= answered
        if failed:
            self.log.warning("%d of %d status requests failed in this cycle; those "
                             "batches are asked about again: %s", failed, len(chosen), failure)
        return changed, None


class WorkerPolling:
    """The worker's way of asking: up to ``max_concurrency`` threads, each with its own hook (and so
    its own pooled connections), kept for the wait's life. ``with WorkerPolling(poller, batch_api_conn_id) as
    polling: changed, stop = polling.cycle(interval)``."""

    def __init__(self, poller: Poller, batch_api_conn_id: str) -> None:
        self.poller = poller
        self.hooks = ThreadHooks(batch_api_conn_id, on_throttled=poller.budget.slow_down,
                                 one_attempt=True)  # a batch failed is asked again next cycle
        self.pool = ThreadPoolExecutor(poller.max_concurrency, thread_name_prefix="scaledown-poll")

    def _status(self, batch_id: str) -> BatchStatus | BaseException:
        if not self.poller.budget.wait_turn():
            return BatchPollingError(f"not asked about batch {batch_id}: the wait was stopped")
        sent = time.monotonic()
        try:
            return self.hooks.get().get_batch(batch_id)
        except (BatchApiError, ProtocolError) as exc:
            return exc
        finally:
            self.poller.answered_after(time.monotonic() - sent)

    def cycle(self, interval: float, *, sweep: bool = False) -> tuple[bool, Stop | None]:
        """One cycle: whether anything changed, and why polling must stop, if it must. While
        ``poller.backlog`` holds, the next cycle is due at once."""
        chosen = self.poller.plan(interval, sweep=sweep)
        results = list(self.pool.map(self._status, chosen))
        return self.poller.settle(chosen, results, throttled=self.hooks.take_throttled())

    def close(self) -> None:
        """Stop the polling threads."""
        self.poller.budget.stop()  # threads waiting for a turn end now, without sending
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.hooks.close()

    def __enter__(self) -> WorkerPolling:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
