"""Runs the headline DAG with dag.test() in this process, then prints (JSON) each task's start and
end (Unix time), this process's peak RSS, and the peak RSS seen while each task ran (sampled every
0.2 s): the benchmark reads them (tests/benchmarks/test_headline.py)."""

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "bench_headline.py"


def main(path: str, manifest_dir: str) -> None:
    """Airflow's settings (home, metadata database, default_deferrable) come from the environment
    the benchmark gives this process."""
    from airflow.utils import db

    samples: list[tuple[float, float]] = []  # (Unix time, RSS in MB)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            samples.append((time.time(), _status_kb("VmRSS:") / 1024))

    threading.Thread(target=sample, daemon=True).start()
    db.resetdb()
    spec = importlib.util.spec_from_file_location("bench_headline", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before_tasks = _status_kb("VmRSS:") / 1024  # Airflow, its metadata database and the DAG, loaded
    run = module.dag.test(run_conf={"path": path, "manifest_dir": manifest_dir})
    done.set()
    tasks = {ti.task_id: [ti.start_date.timestamp(), ti.end_date.timestamp()] for ti in run.get_task_instances()}
    task_peaks = {task: max((mb for at, mb in samples if start <= at <= end), default=0.0)
                  for task, (start, end) in tasks.items()}
    print("HEADLINE " + json.dumps({"state": run.state, "tasks": tasks, "peak_mb": _status_kb("VmHWM:") / 1024,
                                    "task_peak_mb": task_peaks, "before_tasks_mb": before_tasks}))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field))


if __name__ == "__main__":
    main(*sys.argv[1:])
