"""What the operators read and write, named as Airflow assets and OpenLineage datasets.

``Location.asset_uri`` is the URI other operators use for the same table or file
(``postgres://host:5432/db/schema/table``, ``mysql://host:3306/db/table``, ``s3://bucket/key``,
``file:///path``) and a fixed point of Airflow's URI sanitizer, so ``Asset(uri)`` written in another
DAG is the same asset (Airflow 3 matches name *and* uri). SQLite and DuckDB register no asset scheme;
their files are ``sqlite://localhost/<path>/main/<table>`` (an empty authority would lose its ``//``
in Airflow). ``namespace``/``name`` follow https://openlineage.io/docs/spec/naming. The OpenLineage
provider is optional: it is imported only when lineage is asked for.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.sql.hooks.sql import DbApiHook
from airflow.sdk import Asset

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Connection

FILE_DATABASES = ("sqlite", "duckdb")
TWO_LEVEL = ("mysql", "mariadb")  # database.table: no schemas
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306}
DIALECTS = {"postgres": "postgres", "redshift": "redshift", "mysql": "mysql", "sqlite": "sqlite"}
PYFORMAT = re.compile(r"%\(\w+\)s|%s")  # psycopg placeholders the OpenLineage SQL parser rejects


@dataclass(frozen=True)
class Location:
    """A dataset's place: its Airflow asset URI and its OpenLineage namespace and name."""
    asset_uri: str  # a fixed point of Airflow's URI sanitizer: Asset(asset_uri) anywhere is this asset
    namespace: str
    name: str

    def asset(self) -> Asset:
        """The Airflow asset for this place."""
        return Asset(name=self.asset_uri, uri=self.asset_uri)


@dataclass(frozen=True)
class Database:
    """A database as lineage names it: scheme, host or file, database and default schema."""
    scheme: str
    authority: str  # host:port, or the database file's absolute path
    database: str | None
    default_schema: str | None

    @property
    def namespace(self) -> str:
        """The OpenLineage namespace, ``scheme://authority``."""
        return f"{self.scheme}://{self.authority}"

    def table(self, table: str) -> Location | None:
        """Where a table of this database is, its name completed with the defaults; None if it cannot be named."""
        *prefix, name = table.split(".")
        raw: list[str | None]
        if self.scheme in TWO_LEVEL:
            raw = [prefix[-1] if prefix else self.database, name]
        else:
            schema = prefix[-1] if prefix else (self.default_schema or "public")
            raw = [prefix[-2] if len(prefix) > 1 else self.database, schema, name]
        parts = [p for p in raw if p]
        if self.scheme in FILE_DATABASES:  # "localhost": an empty authority would lose its "//" in Airflow
            uri = f"{self.scheme}://localhost{self.authority}/{'/'.join(parts[-2:])}"
        else:
            uri = f"{self.scheme}://{self.authority}/{'/'.join(parts)}"
        try:
            if Asset(uri=uri).uri != uri:  # e.g. postgres without a database: not a stable asset
                return None
        except ValueError:
            return None
        return Location(uri, self.namespace, ".".join(parts))


def database_of(conn: Connection, hook: Any) -> Database | None:
    """Call in execute (it may query: PostgreSQL's CURRENT_SCHEMA). None: no lasting identity."""
    kind = (conn.conn_type or "").lower()
    if kind == "sqlite":
        return Database("sqlite", os.path.abspath(conn.host), None, "main") if conn.host else None
    if kind == "duckdb":
        path = hook.get_database() if hasattr(hook, "get_database") else (conn.host or ":memory:")
        if path == ":memory:" or path.startswith(("md:", "motherduck:")):
            return None
        path = os.path.abspath(path)
        return Database("duckdb", path, PurePosixPath(path).stem, "main")
    if not conn.host:
        return None
    try:  # the hook's own OpenLineage naming (Postgres, MySQL, Redshift, Trino, ...) when it has one
        info = hook.get_openlineage_database_info(conn)
    except ImportError:  # those hooks import the OpenLineage provider, which is optional
        info = None
    scheme = info.scheme if info else {"postgresql": "postgres"}.get(kind, kind)
    authority = (info.authority if info else None) or DbApiHook.get_openlineage_authority_part(
        conn, default_port=DEFAULT_PORTS.get(scheme))
    # A `database=` override: PostgresHook keeps it as .database, MySqlHook (whose OpenLineage info
    # has no database) and the generic hooks as .schema.
    database = ((info.database if info else None) or getattr(hook, "database", None)
                or getattr(hook, "schema", None) or conn.schema or None)
    if scheme in TWO_LEVEL:
        return Database(scheme, authority, database, None)
    try:
        schema = hook.get_openlineage_default_schema()  # PostgresHook: SELECT CURRENT_SCHEMA
    except Exception:  # naming must never fail a load that landed
        schema = None
    return Database(scheme, authority, database, schema or "public")


def path_location(path: str) -> Location:
    """A file or folder, local or object storage; a connection id in the URI (s3://conn@bucket/…) is dropped.
    Parses the string only: no filesystem or connection is touched (safe at DAG parse time)."""
    parts = urlsplit(path)
    if parts.scheme in ("", "file", "local"):
        absolute = os.path.abspath(parts.path if parts.scheme else path).rstrip("/") or "/"
        return Location(f"file://{absolute}", "file", absolute)
    bucket, key = parts.netloc.rpartition("@")[2], parts.path.strip("/")
    return Location(f"{parts.scheme}://{bucket}/{key}", f"{parts.scheme}://{bucket}", key or "/")


def ol_input(namespace: str, name: str, rows: int | None = None, files: int | None = None) -> Any:
    """An OpenLineage input dataset, with the rows (and files) read."""
    from airflow.providers.common.compat.openlineage.facet import InputDataset
    from openlineage.client.generated.input_statistics_input_dataset import InputStatisticsInputDatasetFacet

    stats: dict[str, Any] = {} if rows is None else {
        "inputStatistics": InputStatisticsInputDatasetFacet(rowCount=rows, fileCount=files)}
    return InputDataset(namespace=namespace, name=name, inputFacets=stats)


def ol_output(loc: Location, rows: int, schema: pa.Schema | None = None, files: int | None = None) -> Any:
    """An OpenLineage output dataset, with the rows (and files) written and its schema."""
    from airflow.providers.common.compat.openlineage.facet import (
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )

    facets: dict[str, Any] = {} if schema is None else {"schema": SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name=f.name, type=str(f.type)) for f in schema])}
    return OutputDataset(namespace=loc.namespace, name=loc.name, facets=facets, outputFacets={
        "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=rows, fileCount=files)})


def sql_lineage(db: Database | None, sql: str, rows: int | None = None) -> tuple[list[Any], dict[str, Any]]:
    """Tables a query reads (parsed, no database call) and the SQL job facet (the query as written)."""
    from airflow.providers.common.compat.openlineage.facet import SQLJobFacet
    from airflow.providers.openlineage.sqlparser import DatabaseInfo, SQLParser

    job_facets = {"sql": SQLJobFacet(query=SQLParser.normalize_sql(sql))}
    if db is None:
        return [], job_facets
    two_level = db.scheme in TWO_LEVEL
    parser = SQLParser(dialect=DIALECTS.get(db.scheme, "generic"),
                       default_schema=db.database if two_level else db.default_schema)
    meta = parser.parse(parser.split_sql_string(PYFORMAT.sub("NULL", sql)))
    info = DatabaseInfo(scheme=db.scheme, authority=db.authority, database=None if two_level else db.database)
    tables, _ = SQLParser.get_metadata_from_parser(inputs=meta.in_tables if meta else [], outputs=[],
                                                   database_info=info, namespace=db.namespace)
    one = rows if len(tables) == 1 else None  # a per-table count is known only for a single table
    return [ol_input(t.namespace, t.name, rows=one) for t in tables], job_facets


def submit_lineage(reference: Mapping[str, Any],
                   source_lineage: Callable[[int], tuple[list[Any], dict[str, Any]]]) -> Any:
    """A submit's lineage: the source's inputs and job facets (``source_lineage``, given the rows
    read) and, unless it was a dry run, the job's manifest as output, with the rows submitted."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    read = reference["rows"] + reference.get("invalid_rows", 0) + reference.get("skipped_rows", 0)
    inputs, job_facets = source_lineage(read)
    outputs = [] if reference.get("dry_run") else [ol_output(path_location(reference["manifest"]),
                                                             reference["rows"])]
    return OperatorLineage(inputs=inputs, outputs=outputs, job_facets=job_facets)


def openlineage_enabled() -> bool:
    """Whether this deployment emits OpenLineage events: the provider installed and configured."""
    try:
        from airflow.providers.openlineage.conf import is_disabled
    except ImportError:
        return False
    return not is_disabled()
