"""Fixtures for the integration tests: see warehouse.py."""

from tests.integration.warehouse import database, env  # noqa: F401 - fixtures, found by name
