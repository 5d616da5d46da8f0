"""pytest fixtures to test DAGs offline against the emulator.

Enable with ``pytest_plugins = ["airflow_batch_provider.emulator.pytest_plugin"]`` in a conftest.py
(or ``-p airflow_batch_provider.emulator.pytest_plugin``). Then::

    def test_my_dag(batch_api_connection):      # batch_api_default now points at the emulator
        ...
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from airflow_batch_provider.emulator.config import EmulatorConfig
from airflow_batch_provider.emulator.server import EmulatorServer


@pytest.fixture(scope="session")
def batch_api_emulator() -> Iterator[EmulatorServer]:
    """One emulator for the session, on a free loopback port, with a random API key."""
    with EmulatorServer(EmulatorConfig(api_key=secrets.token_urlsafe(16))) as server:
        yield server


def connection_json(server: EmulatorServer, **extra: object) -> str:
    """The ``AIRFLOW_CONN_...`` value of a ``batch_api`` connection to ``server``."""
    return json.dumps({"conn_type": "batch_api", "host": server.url, "password": server.api_key,
                       "extra": extra})


@pytest.fixture
def batch_api_connection(batch_api_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> EmulatorServer:
    """Points the ``batch_api_default`` connection at the session's emulator for one test."""
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(batch_api_emulator))
    return batch_api_emulator
