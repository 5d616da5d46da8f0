"""What a rescheduled poke keeps of a wait for the next one: the finished batches' statuses, run-length
encoded by position, taken back exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from airflow_batch_provider.job.waiting import JobProgress
from airflow_batch_provider.protocol.status import BatchState, BatchStatus

STATES = st.sampled_from([None, "running", "completed", "failed"])


def status(batch_id: str, state: str, completed: int) -> BatchStatus:
    return BatchStatus(batch_id, BatchState(state), state, 50, completed, 50 - completed, 2)


@given(st.lists(st.tuples(STATES, st.integers(0, 50)), max_size=60))
def test_the_finished_batches_come_back_exactly_and_nothing_else(seen):
    ids = [f"batch_{i}" for i in range(len(seen))]
    progress = JobProgress(ids)
    for batch_id, (state, completed) in zip(ids, seen, strict=True):
        if state is not None:
            progress.update(status(batch_id, state, completed))
    taken_back = JobProgress(ids)
    taken_back.restore_finished(progress.finished_runs())
    assert taken_back.running() == progress.running()
    finished = [b for b in ids if b not in progress.running()]
    assert [taken_back._latest[b] for b in finished] == [progress._latest[b] for b in finished]


def test_a_job_finishing_in_order_keeps_a_few_entries_whatever_its_size():
    ids = [f"batch_{i}" for i in range(20_000)]
    progress = JobProgress(ids)
    for batch_id in ids[:15_000]:
        progress.update(status(batch_id, "completed", 50))
    progress.update(status(ids[7], "completed", 49))  # one item failed in batch 7
    assert len(progress.finished_runs()) == 3
