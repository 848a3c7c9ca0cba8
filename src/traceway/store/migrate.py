"""Bringing a database's schema up to date with Alembic, run in-process.

The migration scripts ship inside the package (``migrations/``), so no
``alembic.ini`` is needed: :func:`upgrade` builds the configuration in memory.
Upgrades are serialised across processes (a PostgreSQL advisory lock, SQLite's
``BEGIN IMMEDIATE``), so several servers starting at once migrate once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from traceway.store.database import Database, describe_error, display_url
from traceway.store.errors import StoreError

__all__ = ["VERSION_TABLE", "current_revision", "head_revision", "upgrade"]

VERSION_TABLE = "traceway_alembic_version"
_SCRIPT_LOCATION = Path(__file__).parent / "migrations"
# Any fixed 64-bit number; it only has to be the same for every Traceway process.
_ADVISORY_LOCK_ID = 0x7472_6163_6577_6179 & 0x7FFF_FFFF_FFFF_FFFF


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    return config


def head_revision() -> str:
    """The newest revision the package ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise StoreError("the traceway package ships no store migrations")
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the connected database is at (``None`` when never migrated)."""
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(database: Database) -> None:
    """Apply every pending migration; a database already at head is left untouched."""
    config = _config()
    try:
        with database.writer.begin() as conn:
            if database.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_ID})")
            if current_revision(conn) == head_revision():
                return
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    except (DBAPIError, CommandError) as exc:
        # CommandError: e.g. the database was migrated by a newer Traceway.
        raise StoreError(
            f"cannot migrate {display_url(database.url)}: {describe_error(exc)}"
        ) from exc
