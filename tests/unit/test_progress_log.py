"""Progress lines: at most every few seconds and at the end, with done of total, share, rate and time left."""

from __future__ import annotations

import logging

import pytest

from airflow_batch_provider import logs
from airflow_batch_provider.logs import ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    ticking = Clock()
    monkeypatch.setattr(logs.time, "monotonic", ticking)
    return ticking


def test_lines_come_every_few_seconds_and_at_the_end_with_rate_and_time_left(clock, caplog):
    caplog.set_level(logging.INFO)
    progress = ProgressLog(logging.getLogger("t"), "Submitted", "batches", 20_000)
    for done in range(0, 1_000, 10):  # 100 updates within 4.9 s: no line yet
        clock.now += 0.049
        progress.update(done)
    assert caplog.messages == []
    clock.now += 0.2
    progress.update(1_000, "8 in flight")
    assert caplog.messages == ["Submitted 1,000 of 20,000 batches (5.0 %), 196.1 a second, about 1 min 37 s left; "
                               "8 in flight"]
    clock.now += 1
    progress.update(20_000)  # the end is always said, without a time left, once
    assert caplog.messages[-1] == "Submitted 20,000 of 20,000 batches (100.0 %)"
    clock.now += 10
    progress.update(20_000)
    assert len(caplog.messages) == 2


def test_a_wait_where_nothing_moves_says_so_every_five_minutes_not_every_cycle(clock, caplog):
    caplog.set_level(logging.INFO)
    progress = ProgressLog(logging.getLogger("t"), "Job j: finished", "batches", 100)
    clock.now += 5
    progress.update(0)  # the first cycle says where the wait starts
    for _ in range(59):  # 59 more cycles of 5 s without a batch finishing: quiet
        clock.now += 5
        progress.update(0)
    assert caplog.messages == ["Job j: finished 0 of 100 batches (0.0 %)"]
    clock.now += 5
    progress.update(0)  # five minutes on: still waiting
    assert len(caplog.messages) == 2


def test_the_rate_counts_only_what_this_try_did(clock, caplog):
    caplog.set_level(logging.INFO)
    progress = ProgressLog(logging.getLogger("t"), "Read", "batches", 100, every=0)
    progress.update(50)  # an earlier try had read 50
    clock.now += 10
    progress.update(60)
    assert caplog.messages[-1] == "Read 60 of 100 batches (60.0 %), 1.0 a second, about 40 s left"


def test_long_waits_are_said_in_hours():
    assert logs._duration(7_500) == "2 h 5 min" and logs._duration(59.6) == "1 min 0 s"
