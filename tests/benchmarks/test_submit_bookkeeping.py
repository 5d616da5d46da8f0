"""What the submission ledger costs: 30,000 rows (600 batches) submitted through ``dag.test()``,
with durable progress in ``task_state_store`` against the same submit with progress off, in one
run, alternating to even out the machine's noise. Target: at most 1.15x. Run with `make benchmarks`.
"""

from __future__ import annotations

import json

import pytest

from airflow_batch_provider.job.ledger import Ledger
from tests.conftest import load_dag
from tests.emulator_helpers import EmulatorProcess

pytestmark = [pytest.mark.benchmark, pytest.mark.usefixtures("airflow_db")]
ROWS = 30_000


def submit_seconds(dag, manifest_dir, ledger: bool) -> float:
    run = dag.test(run_conf={"rows": ROWS, "ledger": ledger, "manifest_dir": manifest_dir})
    (ti,) = run.get_task_instances()
    assert run.state == "success", ti.state
    return (ti.end_date - ti.start_date).total_seconds()


def test_ledger_cost_against_no_bookkeeping(tmp_path, monkeypatch):
    # What a SIGKILL after any write would leave ambiguous: the chunks the ledger shows in flight.
    shown: dict[int, int] = {}
    most_shown = [0]
    real_write = Ledger.write_values

    def write_values(self, values):
        real_write(self, values)
        shown.update((window, len(value["in_flight"])) for window, value in values.items())
        most_shown[0] = max(most_shown[0], sum(shown.values()))

    monkeypatch.setattr(Ledger, "write_values", write_values)
    emulator = EmulatorProcess(["--api-version", "2"], tmp_path).start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
            {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key}))
        dag = load_dag("bench_submit")
        submit_seconds(dag, str(tmp_path / "warm-up"), True)
        times = {True: [], False: []}
        for attempt in range(3):
            for ledger in (False, True):
                times[ledger].append(submit_seconds(dag, str(tmp_path / f"jobs-{attempt}-{ledger}"), ledger))
        batches = emulator.stats()["batches"]
    finally:
        emulator.stop()
    with_ledger, without = min(times[True]), min(times[False])
    print(f"\nsubmit of {ROWS} rows ({ROWS // 50} batches) through dag.test(): with the ledger {with_ledger:.2f} s, "
          f"without {without:.2f} s, ratio {with_ledger / without:.2f}x (all runs: {times}); {batches} batches; "
          f"at most {most_shown[0]} chunks in flight in the ledger (bound: 4 x max_concurrent_submits = 32)")
    assert most_shown[0] <= 32
