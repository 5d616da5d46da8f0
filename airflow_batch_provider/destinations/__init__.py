"""Where results land: database tables (one writer per dialect, a generic fallback) and Parquet."""

from airflow_batch_provider.destinations.table import TableWriter, table_writer_for

__all__ = ["TableWriter", "table_writer_for"]
