"""Runs the headline DAG with dag.test() in this process, then prints (JSON) each task's start and
end (Unix time) and this process's peak RSS: the benchmark reads them (tests/benchmarks/test_headline.py)."""

import importlib.util
import json
import sys
from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "bench_headline.py"


def main(path: str, manifest_dir: str) -> None:
    """Airflow's settings (home, metadata database, default_deferrable) come from the environment
    the benchmark gives this process."""
    from airflow.utils import db

    db.resetdb()
    spec = importlib.util.spec_from_file_location("bench_headline", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.dag.test(run_conf={"path": path, "manifest_dir": manifest_dir})
    tasks = {ti.task_id: [ti.start_date.timestamp(), ti.end_date.timestamp()] for ti in run.get_task_instances()}
    with open("/proc/self/status") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print("HEADLINE " + json.dumps({"state": run.state, "tasks": tasks, "peak_mb": peak_kb / 1024}))


if __name__ == "__main__":
    main(*sys.argv[1:])
