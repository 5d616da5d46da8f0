"""The wait's request budget: starts polite, doubles while the API keeps up, halves when told to
slow down, never below the start nor above the ceiling."""

from __future__ import annotations

import logging

from airflow_batch_provider.job.budget import RequestBudget

LOG = logging.getLogger("budget")


def test_it_doubles_while_answers_are_quick_and_the_rate_is_what_limits():
    budget = RequestBudget(600, None, concurrency=32, log=LOG)
    assert budget.per_cycle(5) == 50
    for _ in range(7):
        budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.05, saturated=True)
    assert budget.rate == 600 * 2 ** 7  # 76,800 a minute: past 60,000 in 7 cycles


def test_it_holds_when_nothing_more_is_waiting_or_answers_slow_down_or_concurrency_binds():
    budget = RequestBudget(600, None, concurrency=8, log=LOG)
    budget.cycle_done(answered=3, throttled=0, seconds_per_answer=0.05, saturated=False)
    assert budget.rate == 600  # all there was to ask, was asked
    budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.05, saturated=True)
    assert budget.rate == 1200
    budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.5, saturated=True)
    assert budget.rate == 1200  # ten times slower than the quickest cycle: the server is straining
    for _ in range(10):
        budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.05, saturated=True)
    assert budget.rate <= 2 * 8 / 0.05 * 60  # 8 in flight answer 160 a second: more rate cannot help
    assert budget.per_cycle(5) <= 8 * 5 / 0.05


def test_it_halves_when_throttled_but_never_below_its_start_nor_above_its_ceiling(caplog):
    caplog.set_level(logging.INFO)
    budget = RequestBudget(600, 2000, concurrency=32, log=LOG)
    for _ in range(5):
        budget.cycle_done(answered=50, throttled=0, seconds_per_answer=0.05, saturated=True)
    assert budget.rate == 2000
    budget.cycle_done(answered=40, throttled=3, seconds_per_answer=0.05, saturated=True)
    assert budget.rate == 1000
    for _ in range(5):
        budget.cycle_done(answered=40, throttled=1, seconds_per_answer=0.05, saturated=True)
    assert budget.rate == 600  # random 429s cannot starve a job
    assert "Status requests: 1,000 a minute (the API asked to slow down 3 time(s))" in caplog.messages
    assert RequestBudget(600, 100, concurrency=8, log=LOG).rate == 100  # a ceiling below the start wins
