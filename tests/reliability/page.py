"""Renders docs/reliability.md from what a run of the reliability suite recorded.

``make reliability-page`` runs the suite with ``SCALEDOWN_RELIABILITY_RESULTS`` pointing at a
temporary file, then calls ``python -m tests.reliability.page RESULTS docs/reliability.md``. Every
figure on the page comes from the recorded results; the closing totals are summed from them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Measured by `make stress` (tests/e2e/stress_example_dag.py), which takes about 15 minutes and is
# not part of the suite: the figures are kept here, and updated when it is run again.
STRESS = """## The example DAG on a loaded machine

`make stress`: `dags/enrich_reviews.py` (three jobs: a submit >> deferred sensor >> load, and two
submits that wait, each with its load) run 20 times back to back on real components (api-server,
scheduler, dag-processor, triggerer; LocalExecutor; PostgreSQL metadata; `default_deferrable`
True) while two busy processes load both cores. Failed tries are counted from the task-instance
history, so retries cannot hide them. Measured on 2026-12-03, on the project's 2-core machine.

| provider | runs succeeded | failed tries (of tries run) | the scheduler's "state attribute is" lines | median run |
|---|---|---|---|---|
| before: the trigger resumed the task | 10 of 20 | 10 of 150 (`submit_entities` 4, `submit_summaries` 3, `wait_sentiment` 3) | 10 | 22 s |
| after: the trigger ends the task on success; the DAG sets `retries` | 20 of 20 | 0 of 160 | 0 | 19 s |

Every failure was Airflow 3.3's stale defer-exit executor event (see
[troubleshooting](troubleshooting.md#a-deferred-task-failed-with-state-attribute-is-queued-or-running)),
on a task whose trigger had fired: the scheduler failed a resumed try that was queued or running."""

SECURITY = """## Security

Each class of problem below is checked by a test that failed before its fix (`tests/integration/test_hostile.py`
unless named), and stands for a family, not one line.

| class | what is checked | how |
|---|---|---|
| SQL injection | table and column names from template fields (`skip_landed_table`, `id_column`, `table`) are quoted one way (`destinations.table.quote`), never pasted; tables are looked up in the database's catalog (SQLAlchemy inspector), so a table that exists under another case is an error naming it, not a silent full re-send; a missing column is an error naming it | a hostile `skip_landed_table` on PostgreSQL creates nothing; a mixed-case table is found; the wrong case and a missing column are refused before paying |
| Secret handling | the API key is stripped and checked (printable ASCII) before use, never quoted in an error (also `requests`' `InvalidHeader`), registered with Airflow's secrets masker even when it comes from `SCALEDOWN_API_KEY`; a refused key names the connection, not the key | a key with surrounding whitespace works; one with a newline inside is refused without being echoed; the masker redacts an environment key; scenario 7 above scans every log, file and metadata row |
| Redirects | neither hook follows a redirect (`requests` and `aiohttp` strip only `Authorization` across origins, so `x-api-key` would travel): a 3xx fails with `BatchApiRedirectError` naming the target | a redirecting host with a recording second origin, for both hooks and in scenario 7: the second origin receives nothing |
| Hostile responses | any output line that cannot be parsed (invalid UTF-8, nesting too deep, not an object, no id) is counted as unattributable, never raised; duplicated ids prefer the `ok` line; a resumed download skips by `custom_id`, not by count; `Retry-After` is read only in its two HTTP forms, honoured on 429 and 503, capped at `retry_max_wait`, and a wait beyond the retry budget gives up the hook's call at once (a job tries the batch again within its own budget); a TLS set-up failure (an untrusted certificate, a refused client certificate) and a proxy refusing its credentials are "not sent, not transient" and name the host, the CA bundle and the proxy, while an unreachable proxy is retried like a host | a hypothesis fuzz of the output reader over arbitrary bytes; resumed streams in another order; Retry-After forms; an HTTP server spoken to over TLS; a dead proxy; a private CA, mutual TLS and a CONNECT proxy with a password (`tests/integration/test_transport.py`, `tests/e2e/test_company_network.py`) |
| Resource limits | the emulator's engines are linear in the text (bounded regex repetition, a position map for overlaps), CPU work runs off the event loop, request bodies are capped (`--max-body-bytes`, 413), duplicate `custom_id`s in a batch are refused (400 naming the line), an `Idempotency-Key` reused with another body is 422, the key is checked before any fault is drawn, and control routes check their types (422) | cost ratios at 4x the text; a stats request answered while a 3 MB extract computes; a hypothesis fuzz of the JSONL decoder over arbitrary bytes (accepted, or 400 naming the line) |
| Errors retrying cannot fix | a missing or unusable key, a target table that does not fit, a wrong `dataframe` type, invalid rows, ambiguous submits: `AirflowFailException`s, so Airflow does not retry them | each raised and checked for its type |"""


def render(recorded: dict) -> str:
    results = recorded["results"]
    lines = ["# Reliability", "",
             f"Generated by `make reliability-page` from a run of `tests/reliability/` on {recorded['when']}. Each "
             "scenario runs the real pipeline (submit → wait → load) on real Airflow against the emulator and "
             "checks the destination.", "",
             "| # | scenario | injected | counted |", "|---|---|---|---|"]
    lines += [f"| {r['number']} | {r['scenario']} | {r['injected']} | {r['counted']} |" for r in results]
    with_rows = [r["rows"] for r in results if r.get("rows")]
    with_batches = [r["batches"] for r in results if r.get("batches")]
    lost = sum(expected - distinct for expected, _, distinct in with_rows)
    twice = sum(landed - distinct for _, landed, distinct in with_rows)
    extra = sum(paid - expected for expected, paid in with_batches)
    lines += ["", f"Lost rows: {lost}. Rows landed twice: {twice} (of {sum(r[0] for r in with_rows):,} rows, "
                  f"{len(with_rows)} scenarios). Extra batches paid for: {extra} (of "
                  f"{sum(b[0] for b in with_batches):,} expected, counted at the emulator, {len(with_batches)} "
                  "scenarios).", ""]
    return "\n".join(lines + STRESS.splitlines() + [""] + SECURITY.splitlines()) + "\n"


def main(argv: list[str]) -> None:
    results, page = argv
    Path(page).write_text(render(json.loads(Path(results).read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
