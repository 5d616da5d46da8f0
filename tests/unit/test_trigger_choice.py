"""What the trigger polls each cycle (pure: no I/O)."""

from airflow_batch_provider.job.polling import choose


def test_the_newest_and_the_oldest_unfinished_batches_are_polled():
    running = [f"b{i}" for i in range(100)]
    assert choose(running, 5) == ["b0", "b1", "b2", "b3", "b99"]
    assert choose(running, 5, cycle=1) == ["b0", "b1", "b2", "b4", "b99"]  # the rotating slot
    assert {choose(running, 5, cycle=c)[3] for c in range(97)} == {f"b{i}" for i in range(3, 99)}
    assert choose(running[:3], 5) == ["b0", "b1", "b2"]
    assert choose(running, 1) == ["b99"]


def test_a_finished_job_is_confirmed_in_running_over_budget_cycles():
    """Every batch finished at once: each cycle confirms `budget` of them, none twice."""
    running, cycles, polled = [f"b{i}" for i in range(1000)], 0, set()
    while running:
        chosen = choose(running, 50, cycles)
        assert not polled & set(chosen)
        polled |= set(chosen)
        running = [b for b in running if b not in chosen]
        cycles += 1
    assert cycles == 1000 // 50
