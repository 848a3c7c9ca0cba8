"""Connecting to the database behind a store URL: SQLite or PostgreSQL.

SQLite gets one writer connection (the store serialises writes with a lock; each
write is a ``BEGIN IMMEDIATE`` transaction so concurrent processes queue on the
file lock instead of failing on upgrade) and a small pool of reader connections,
which WAL mode lets run beside the writer.  PostgreSQL uses one pool for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool

from traceway.store._writer_lock import WriterLock
from traceway.store.errors import StoreError

__all__ = ["Database", "connect", "describe_error", "display_url", "refresh_statistics"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT_S = 10
#: Rows ANALYZE samples per index: enough for the planner, cheap at any size.
_ANALYSIS_ROWS = 1_000

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA wal_autocheckpoint=16384",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    # PostgreSQL's LIKE is case-sensitive; make SQLite's agree (ILIKE is lower() LIKE lower()).
    "PRAGMA case_sensitive_like=ON",
    "PRAGMA temp_store=MEMORY",
    # 16 MiB of page cache per connection (the default is 2): the hot index pages
    # of a few million spans stay in memory.
    "PRAGMA cache_size=-16384",
)


@dataclass(slots=True)
class Database:
    """The engines behind one store."""

    url: str  # as the caller gave it
    dialect: str  # "sqlite" | "postgresql"
    writer: Engine
    reader: Engine
    #: True when every operation, reads included, must hold the store's lock
    #: (an in-memory SQLite database lives on a single shared connection).
    single_connection: bool = False
    #: Queues writers of one SQLite file across processes (``None``: not needed).
    writer_lock: WriterLock | None = None

    def dispose(self) -> None:
        if self.writer_lock is not None:
            self.writer_lock.close()
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def refresh_statistics(database: Database) -> None:
    """Refresh SQLite's planner statistics (bounded: a few ms at any database size).

    Without them SQLite guesses, and may answer "newest traces where duration_ms >
    x" by sorting every matching trace instead of walking the start-time index.
    PostgreSQL keeps its own statistics (autovacuum), so this does nothing there.
    """
    if database.dialect != "sqlite":
        return
    with database.writer.begin() as conn:
        conn.exec_driver_sql(f"PRAGMA analysis_limit={_ANALYSIS_ROWS}")
        conn.exec_driver_sql("ANALYZE")
    if database.reader is not database.writer:
        # Open connections keep the statistics they started with; replace them
        # (connections in use are closed when they come back to the pool).
        database.reader.dispose()


def display_url(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def describe_error(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's background links."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


def connect(url: str) -> Database:
    """Validate ``url`` and build its engines, checking the database answers."""
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = _sqlite(url, parsed)
    elif backend in ("postgresql", "postgres"):
        database = _postgresql(url, parsed)
    else:
        raise StoreError(
            f"unsupported store URL scheme {parsed.drivername!r}; "
            "use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    try:
        with database.reader.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except DBAPIError as exc:
        database.dispose()
        raise StoreError(f"cannot open {display_url(url)}: {describe_error(exc)}") from exc
    return database


def _parse(url: str) -> URL:
    if not isinstance(url, str) or not url.strip():
        raise StoreError("empty store URL; use sqlite:///PATH or postgresql://USER@HOST/DB")
    try:
        return make_url(url.strip())
    except ArgumentError as exc:
        raise StoreError(
            f"cannot parse store URL {url!r}; use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from exc


def _sqlite(url: str, parsed: URL) -> Database:
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
        raise StoreError(f"unsupported SQLite driver {parsed.drivername!r}; use sqlite:///PATH")
    path = parsed.database or ""
    if path in ("", ":memory:"):
        engine = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
        _configure_sqlite(engine, begin="BEGIN IMMEDIATE")
        return Database(url, "sqlite", engine, engine, single_connection=True)
    if path.startswith("file:"):
        raise StoreError("SQLite URI filenames are not supported; use sqlite:///PATH")
    try:
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the directory for {path!r}: {exc.strerror}") from exc
    target = parsed.set(drivername="sqlite+pysqlite", database=str(Path(path).expanduser()))
    connect_args: dict[str, Any] = {"check_same_thread": False}
    writer = create_engine(target, pool_size=1, max_overflow=0, connect_args=connect_args)
    reader = create_engine(target, pool_size=4, max_overflow=8, connect_args=connect_args)
    _configure_sqlite(writer, begin="BEGIN IMMEDIATE")
    _configure_sqlite(reader, begin="BEGIN")
    return Database(
        url, "sqlite", writer, reader, writer_lock=WriterLock(Path(target.database or path))
    )


def _configure_sqlite(engine: Engine, *, begin: str) -> None:
    # pysqlite's own transaction handling would defer BEGIN and commit around DDL;
    # take control of it so transactions mean what SQLAlchemy says they mean.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)


def _postgresql(url: str, parsed: URL) -> Database:
    if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise StoreError(
            f"unsupported PostgreSQL driver {parsed.drivername!r}; "
            "use postgresql://USER@HOST/DB (psycopg 3)"
        )
    target = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(
        target,
        pool_size=8,
        max_overflow=8,
        pool_pre_ping=True,
        connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
    )
    return Database(url, "postgresql", engine, engine)
