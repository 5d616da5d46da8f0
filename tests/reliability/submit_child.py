"""One try of a 70-chunk submit, in a process of its own, killed with SIGKILL at a named point
(tests/reliability/test_submit_sigkill.py). Its ledger is a FileStateStore, so what the kill leaves
is what the next try reads.

    python -m tests.reliability.submit_child STORE JOBS POINT N ON_AMBIGUOUS

POINT: ``marked`` (right after the N-th ledger write), ``posting`` (while the N-th POST is on the
wire), ``accepted`` (the N-th POST answered, before the try records it), or ``none``. Exit status
0 with the job reference on stdout, or 3 with the ambiguous chunks' count when the try refuses.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import pandas as pd

from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.job.ledger import Ledger
from airflow_batch_provider.operators.submit import AmbiguousSubmissionError, DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
from tests.state_store import FileStateStore

CHUNKS = 70


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, n: int) -> None:
    """Kill this process at the named point, the n-th time it comes."""
    seen = [0]
    lock = threading.Lock()

    def nth() -> bool:
        with lock:
            seen[0] += 1
            return seen[0] == n

    if point == "marked":
        real_write = Ledger.write_values

        def write_values(self, values):
            real_write(self, values)
            if nth():
                die()

        Ledger.write_values = write_values  # type: ignore[method-assign]
    elif point in ("posting", "accepted"):
        real_submit = BatchApiHook.submit_batch

        def submit_batch(self, lines, **kwargs):
            if point == "posting" and nth():
                threading.Timer(0.05, die).start()  # the emulator answers 0.2 s late: the POST is on the wire
            status = real_submit(self, lines, **kwargs)
            if point == "accepted" and nth():
                die()
            return status

        BatchApiHook.submit_batch = submit_batch  # type: ignore[method-assign]


class FakeTI:
    dag_id, task_id, run_id, map_index, try_number = "sigkill", "submit", "manual__1", -1, 2


def main(store: str, jobs: str, point: str, n: str, on_ambiguous: str) -> int:
    arm(point, int(n))
    rows = pd.DataFrame({"id": range(CHUNKS * 10), "text": [f"Row {i}: fine." for i in range(CHUNKS * 10)]})
    operator = DataFrameToBatchOperator(task_id="submit", dataframe=rows, id_column="id", text_column="text",
                                        request=Summarize(), max_items_per_batch=10, manifest_dir=jobs,
                                        on_ambiguous=on_ambiguous)
    try:
        reference = operator.execute({"task_state_store": FileStateStore(store), "ti": FakeTI()})
    except AmbiguousSubmissionError as exc:
        print(json.dumps({"ambiguous": len(exc.chunks)}))
        return 3
    print(json.dumps(reference))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
