"""A local ScaleDown-compatible Batch API: ``python -m airflow_batch_provider.emulator``.

Its engines are deterministic stand-ins, not ML: they make plausible, repeatable results so that
pipelines can be built and tested offline.
"""

from airflow_batch_provider.emulator.app import create_app
from airflow_batch_provider.emulator.config import EmulatorConfig, FaultSettings
from airflow_batch_provider.emulator.server import EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorServer", "FaultSettings", "create_app"]
