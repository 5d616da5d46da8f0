"""What each destination can hold, so the submit refuses before paying what a load could not land.

A string id goes into a key column (bounded: an index must hold it), and column names — the id
column's and the ``score_<label>`` / ``entity_<type>`` ones derived from the request — into the
database's catalog (bounded too). Each writer declares its limits; a submit checks its ids and
columns against the destination it was told of, or against every database this package writes to
natively when it was told of none (the strictest of them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from airflow_batch_provider.protocol import InvalidRequestError


@dataclass(frozen=True)
class DestinationLimits:
    """Limits of one destination (None: no limit this package knows of)."""

    name: str
    key_chars: int | None = None  # a string id, in characters
    key_bytes: int | None = None  # a string id, in UTF-8 bytes
    identifier_chars: int | None = None  # a column name, in characters
    identifier_bytes: int | None = None  # a column name, in UTF-8 bytes

    def check_identifiers(self, names: Iterable[tuple[str, str]], hint: str) -> None:
        """``names``: (column name, where it comes from). Refuses a name this destination cannot
        hold, or holds only shortened (PostgreSQL truncates to 63 bytes, and the next load then
        misses the column)."""
        for name, source in names:
            size = len(name.encode("utf-8", "surrogatepass"))
            if ((self.identifier_chars is not None and len(name) > self.identifier_chars)
                    or (self.identifier_bytes is not None and size > self.identifier_bytes)):
                raise InvalidRequestError(
                    f"{source} gives the column name {name!r} ({len(name)} characters, {size} bytes), longer than "
                    f"{self.name} holds ({self.describe_identifiers()}); nothing was submitted. Shorten it{hint}")

    def describe_identifiers(self) -> str:
        """The column-name limit, as a message says it (e.g. ``63 bytes``)."""
        parts = [f"{self.identifier_chars} characters" if self.identifier_chars else "",
                 f"{self.identifier_bytes} bytes" if self.identifier_bytes else ""]
        return " and ".join(p for p in parts if p)

    def describe_key(self) -> str:
        """The string-id limit, as a message says it, naming the destination."""
        parts = [f"{self.key_chars} characters" if self.key_chars else "",
                 f"{self.key_bytes} UTF-8 bytes" if self.key_bytes else ""]
        return f"a string id of at most {' and '.join(p for p in parts if p)} ({self.name})"


def strictest(name: str, limits: Iterable[DestinationLimits]) -> DestinationLimits:
    """What every one of ``limits`` holds."""
    every = list(limits)

    def least(attribute: str) -> int | None:
        values = [getattr(limit, attribute) for limit in every if getattr(limit, attribute) is not None]
        return min(values) if values else None

    return DestinationLimits(name, least("key_chars"), least("key_bytes"), least("identifier_chars"),
                             least("identifier_bytes"))


UNLIMITED = DestinationLimits("Parquet")
# PostgreSQL: NAMEDATALEN 64 (63 bytes, longer names are truncated); a B-tree entry holds at most
# 2,704 bytes including its 8-byte tuple header and the text's 4-byte length, and an upsert table's
# unique index holds the id (uncompressed at worst): 2,692 bytes, kept a little below.
POSTGRES = DestinationLimits("PostgreSQL", key_bytes=2_688, identifier_bytes=63)
# MySQL/MariaDB: 64-character names; the key is VARCHAR(768) (InnoDB's 3,072-byte key in utf8mb4).
MYSQL = DestinationLimits("MySQL/MariaDB", key_chars=768, identifier_chars=64)
SQLITE = DestinationLimits("SQLite")
DUCKDB = DestinationLimits("DuckDB")
# Any other database through the generic writer: keys Unicode(255); names of 128 characters
# (MSSQL, Oracle 12.2+, DB2; Snowflake takes 255).
GENERIC = DestinationLimits("a SQL database through the generic writer", key_chars=255, identifier_chars=128)
NATIVE = strictest("every database this package writes to natively (PostgreSQL, MySQL/MariaDB, SQLite, DuckDB)",
                   [POSTGRES, MYSQL, SQLITE, DUCKDB])
