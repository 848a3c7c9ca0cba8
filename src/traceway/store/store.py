"""The trace store: experiments, spans and the trace rows derived from them.

>>> store = open_store("sqlite:///:memory:")
>>> experiment = store.get_or_create_experiment("my-app")
>>> store.search_traces(experiment_ids=[experiment.experiment_id], filter="status = 'ERROR'")
([], None)
>>> store.close()

One :class:`Store` serves many threads.  On SQLite, writes are serialised by a
lock in the store (SQLite allows one writer at a time anyway) while reads run on
their own connections beside them; on PostgreSQL both share a connection pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from traceway.store import experiments, ingest, queries, trace_info
from traceway.store.database import (
    Database,
    connect,
    describe_error,
    display_url,
    refresh_statistics,
)
from traceway.store.errors import ExperimentExists, StoreError
from traceway.store.migrate import upgrade
from traceway.store.paging import check_page_size, parse_order_by
from traceway.store.records import Experiment, SpanRecord, StoredTrace, TraceSummary

__all__ = ["Store", "open_store"]

#: Experiments looked up by name and kept in memory (ids never change).
_EXPERIMENT_CACHE_SIZE = 10_000
#: Writes between refreshes of SQLite's planner statistics.
_WRITES_PER_STATISTICS = 1_000


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def open_store(url: str, *, now_ms: Callable[[], int] = _wall_clock_ms) -> Store:
    """Connect to ``url``, bring its schema up to date and return the store.

    ``url`` is ``sqlite:///PATH`` (a file, created with its directory if missing;
    ``sqlite://`` is a private in-memory database) or ``postgresql://USER@HOST/DB``.
    ``now_ms`` is the clock stamped on new experiments.  Raises :class:`StoreError`
    with a one-line message when the URL is wrong, the database does not answer or
    a migration fails.
    """
    database = connect(url)
    try:
        upgrade(database)
        refresh_statistics(database)
    except SQLAlchemyError as exc:
        database.dispose()
        raise StoreError(f"cannot open {display_url(url)}: {describe_error(exc)}") from exc
    except BaseException:
        database.dispose()
        raise
    return Store(database, now_ms=now_ms)


class Store:
    """Experiments, spans and traces on SQLite or PostgreSQL; thread-safe."""

    def __init__(self, database: Database, *, now_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self._db = database
        self._now_ms = now_ms
        # SQLite has one writer at a time; queueing here beats spinning on busy_timeout.
        # PostgreSQL takes concurrent writers (ingest locks the trace rows it touches).
        self._write_lock = threading.Lock()
        self._serialize_writes = database.dialect == "sqlite"
        self._experiments: dict[str, Experiment] = {}
        self._writes = 0
        self._closed = False

    @property
    def url(self) -> str:
        """The URL the store was opened with."""
        return self._db.url

    @property
    def database(self) -> Database:
        """The engines behind the store, for read-only views such as the dashboard."""
        return self._db

    @property
    def write_lock(self) -> threading.Lock:
        """Held while writing; readers sharing one connection (in-memory SQLite) take it too."""
        return self._write_lock

    def close(self) -> None:
        """Release every connection; safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._db.dispose()

    # --- experiments -------------------------------------------------------------

    def get_or_create_experiment(self, name: str) -> Experiment:
        """The experiment with this name, created if missing (safe against races).

        Its counts (``trace_count`` ...) are not filled in: this is the ingest path;
        :meth:`get_experiment` and :meth:`list_experiments` count.
        """
        experiments.validate_name(name)
        cached = self._experiments.get(name)
        if cached is not None:
            return _uncounted(cached)
        with self._read() as conn:
            found = experiments.find(conn, name)
        if found is None:
            with self._write() as conn:
                found = experiments.insert(conn, self._db.dialect, name, self._now_ms())
                found = found or experiments.find(conn, name)
            if found is None:  # pragma: no cover - only if the row vanished meanwhile
                raise StoreError(f"experiment {name!r} could not be created")
        if len(self._experiments) < _EXPERIMENT_CACHE_SIZE:
            self._experiments[name] = found
        return _uncounted(found)

    def create_experiment(self, name: str) -> Experiment:
        """Create an experiment; :class:`ExperimentExists` if the name is taken."""
        experiments.validate_name(name)
        with self._write() as conn:
            created = experiments.insert(conn, self._db.dialect, name, self._now_ms())
        if created is None:
            raise ExperimentExists(name)
        return created

    def get_experiment(self, experiment_id: int) -> Experiment | None:
        """The experiment with this id, with its counts; ``None`` if there is none."""
        with self._read() as conn:
            return experiments.by_id(conn, experiment_id)

    def get_experiment_by_name(self, name: str, *, counts: bool = True) -> Experiment | None:
        """The experiment with this name; ``None`` if there is none.

        Counting its traces reads an index over all of them: pass ``counts=False``
        when only the id is needed.
        """
        with self._read() as conn:
            return experiments.by_name(conn, name) if counts else experiments.find(conn, name)

    def list_experiments(self) -> list[Experiment]:
        """Every experiment in creation order, with trace and error counts."""
        with self._read() as conn:
            return experiments.list_all(conn)

    # --- spans and traces ------------------------------------------------------

    def write_spans(self, experiment_id: int, spans: Sequence[SpanRecord]) -> int:
        """Store spans (idempotent on trace id + span id); returns how many were new.

        Spans may come in any order and over several calls; every trace they touch
        is recomputed from all of its stored spans.  A trace stays in the experiment
        of its first write, except that one first written to ``Default`` moves to
        the experiment of a later write that names another.
        """
        if not spans:
            return 0
        with self._write() as conn:
            new = ingest.write_spans(conn, self._db.dialect, experiment_id, spans)
        self._writes += 1
        if self._serialize_writes and self._writes % _WRITES_PER_STATISTICS == 0:
            # The tables' shape drifts as they grow; keep SQLite's planner up to date.
            with self._write_lock, _translated():
                refresh_statistics(self._db)
        return new

    def search_traces(
        self,
        *,
        experiment_ids: Sequence[int] | None = None,
        filter: str | None = None,
        order_by: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> tuple[list[TraceSummary], str | None]:
        """One page of traces and the token of the next page (``None`` on the last).

        ``filter`` is the filter language of :mod:`traceway.store.filters`;
        ``order_by`` is ``"<field> [ASC|DESC]"`` (newest first by default).  Bad
        input raises :class:`FilterError`.
        """
        ordering = parse_order_by(order_by)
        check_page_size(page_size)
        conditions = queries.trace_conditions(experiment_ids, filter)
        after = ordering.decode_token(page_token) if page_token else None
        with self._read() as conn:
            page, last = queries.search(conn, conditions, ordering, page_size, after)
        return page, None if last is None else ordering.encode_token(*last)

    def get_trace(self, trace_id: str) -> StoredTrace | None:
        """A trace with all of its spans (start-time order), JSON fields parsed."""
        with self._read() as conn:
            return queries.trace(conn, trace_id)

    def get_trace_summary(self, trace_id: str) -> TraceSummary | None:
        """The trace row alone, with tags and metadata."""
        with self._read() as conn:
            return queries.trace_summary(conn, trace_id)

    def delete_traces(
        self,
        *,
        experiment_ids: Sequence[int] | None = None,
        trace_ids: Sequence[str] | None = None,
        filter: str | None = None,
    ) -> int:
        """Delete the traces matching every given criterion; returns how many.

        At least one criterion is required, so a bare call cannot empty the store.
        """
        if experiment_ids is None and trace_ids is None and not (filter and filter.strip()):
            raise StoreError("delete_traces needs experiment_ids, trace_ids or a filter")
        conditions = queries.trace_conditions(experiment_ids, filter)
        with self._write() as conn:
            return queries.delete_matching(conn, conditions, trace_ids)

    def set_trace_tags(
        self,
        trace_id: str,
        *,
        set: Mapping[str, str] | None = None,
        delete: Sequence[str] = (),
    ) -> TraceSummary | None:
        """Delete, then set, tags of a trace; ``None`` if there is no such trace."""
        with self._write() as conn:
            return queries.set_tags(conn, self._db.dialect, trace_id, set or {}, delete)

    def merge_trace_info(self, info: trace_info.TraceInfoRecord) -> TraceSummary | None:
        """Merge a client's description of a whole trace into it, before or after its spans.

        See :mod:`traceway.store.trace_info`; returns the trace row as it now stands.
        """
        with self._write() as conn:
            trace_info.merge_trace_info(conn, self._db.dialect, info)
            return queries.trace_summary(conn, info.trace_id)

    # --- connections -----------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._check_open()
        lock = self._write_lock if self._serialize_writes else nullcontext()
        writer_lock = self._db.writer_lock or nullcontext()
        with lock, writer_lock, _translated(), self._db.writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._check_open()
        lock = self._write_lock if self._db.single_connection else nullcontext()
        with lock, _translated(), self._db.reader.connect() as conn:
            yield conn

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def __repr__(self) -> str:
        return f"<Store {self._db.dialect}>"


@contextmanager
def _translated() -> Iterator[None]:
    """Driver and pool errors become StoreError, once, here."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreError(f"database error: {describe_error(exc)}") from exc


def _uncounted(experiment: Experiment) -> Experiment:
    return Experiment(experiment.experiment_id, experiment.name, experiment.created_at_ms)
