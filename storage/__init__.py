"""Persistence: one SQLite database per account (sqlmodel tables, WAL, migrations).

``AccountDatabase`` reads and writes ``core.models`` objects; ``database_path`` names an
account's file under the data directory.
"""

from storage.database import AccountDatabase, database_path
from storage.migrations import SchemaVersionError

__all__ = ["AccountDatabase", "SchemaVersionError", "database_path"]
