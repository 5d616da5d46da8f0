"""Apache Airflow provider for the ScaleDown Batch API."""

__version__ = "0.1.0"
