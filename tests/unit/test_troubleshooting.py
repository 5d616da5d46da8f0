"""docs/troubleshooting.md lists every error a user can meet: the package's exception classes are found
by introspection, so a new one must be documented there (or said here to never reach a user)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import airflow_batch_provider

ROOT = Path(__file__).resolve().parents[2]
# Exceptions that never reach a task log or a user's code, and why.
INTERNAL = {
    "ProtocolError": "the base of the protocol's errors; its subclasses have rows",
    "MalformedLineError": "read by the emulator only: it answers a submit with a bad line 400",
    "NotSent": "the submit's marker for a failure before the POST; the cause is raised",
    "_Unsent": "the submit's marker for a chunk not sent because the run stopped",
    "GaveUp": "retry_by_time's signal; the job raises SubmitGaveUpError, BatchPollingError or BatchDownloadError",
    "OutputNotReadyError": "the load reads such a batch again; BatchDownloadError if it never comes",
    "ItemFailure": "the emulator's engines: becomes an item error line",
    "ApiError": "the emulator's HTTP answers",
    "LandedTableError": "raised to the user as InvalidInputError, which names it",
}


def package_exceptions() -> dict[str, type]:
    found: dict[str, type] = {}
    for module in pkgutil.walk_packages(airflow_batch_provider.__path__, "airflow_batch_provider."):
        if module.name.endswith("__main__"):
            continue
        for name, value in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("airflow_batch_provider"):
                found[name] = value
    return found


def documented() -> set[str]:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    return set(re.findall(r"^\| `(\w+)` \|", text, re.M))


def test_every_exception_a_user_can_meet_is_in_troubleshooting():
    exceptions = package_exceptions()
    assert len(exceptions) > 30  # the walk found the package's modules
    missing = sorted(set(exceptions) - documented() - set(INTERNAL))
    assert not missing, f"add these to docs/troubleshooting.md (or to INTERNAL, saying why): {missing}"


def test_troubleshooting_names_only_real_classes_and_internal_ones_exist():
    exceptions = package_exceptions()
    assert documented() - set(exceptions) == set()
    assert set(INTERNAL) - set(exceptions) == set(), "INTERNAL names a class that is gone"
    assert set(INTERNAL) & documented() == set(), "a class is both documented and said to be internal"


def test_a_row_says_the_task_fails_without_airflows_retries_exactly_when_it_does():
    from airflow.sdk.exceptions import AirflowFailException

    exceptions = package_exceptions()
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \|(.*)$", text, re.M))
    wrong = {name: issubclass(exceptions[name], AirflowFailException) for name, row in rows.items()
             if ("without Airflow's retries" in row) != issubclass(exceptions[name], AirflowFailException)
             and name != "BatchApiError"}  # the base: its row points at the others'
    assert not wrong, f"rows to correct (True: fails fast, but its row does not say so): {wrong}"
