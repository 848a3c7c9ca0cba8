"""Experiments: named groups of traces, with counts for the list view."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select

from traceway.store import schema
from traceway.store.errors import StoreError
from traceway.store.records import STATUS_ERROR, Experiment
from traceway.store.sql import insert_for

__all__ = ["by_id", "by_name", "find", "insert", "list_all", "validate_name"]

_experiments = schema.experiments.c
_traces = schema.traces.c


def validate_name(name: str) -> str:
    """The name as stored; StoreError when it is empty or too long."""
    if not isinstance(name, str) or not name.strip():
        raise StoreError("an experiment needs a non-empty name")
    if len(name) > schema.MAX_EXPERIMENT_NAME_CHARS:
        raise StoreError(
            f"experiment names are at most {schema.MAX_EXPERIMENT_NAME_CHARS} characters, "
            f"this one has {len(name)}"
        )
    if "\x00" in name:
        raise StoreError("experiment names may not contain NUL characters")
    return name


def insert(conn: Connection, dialect: str, name: str, now_ms: int) -> Experiment | None:
    """Create the experiment; ``None`` if the name is taken (also by a racing writer)."""
    statement = (
        insert_for(dialect, schema.experiments)
        .values(name=name, created_at_ms=now_ms)
        .on_conflict_do_nothing(index_elements=[_experiments.name])
        .returning(_experiments.experiment_id, _experiments.name, _experiments.created_at_ms)
    )
    row = conn.execute(statement).first()
    return None if row is None else Experiment(row.experiment_id, row.name, row.created_at_ms)


def by_id(conn: Connection, experiment_id: int) -> Experiment | None:
    """The experiment with this id, counts included."""
    return _with_counts(conn, _experiments.experiment_id == experiment_id)


def by_name(conn: Connection, name: str) -> Experiment | None:
    """The experiment with this name, counts included."""
    return _with_counts(conn, _experiments.name == name)


def find(conn: Connection, name: str) -> Experiment | None:
    """The experiment with this name, without counting its traces (cheap)."""
    row = conn.execute(select(*_COLUMNS).where(_experiments.name == name)).first()
    return None if row is None else Experiment(*row)


def list_all(conn: Connection) -> list[Experiment]:
    """Every experiment in creation order, with its trace and error counts."""
    rows = conn.execute(select(*_COLUMNS).order_by(_experiments.experiment_id)).all()
    counts = _counts(conn, None)
    return [_counted(Experiment(*row), counts) for row in rows]


_COLUMNS = (_experiments.experiment_id, _experiments.name, _experiments.created_at_ms)


def _with_counts(conn: Connection, condition: ColumnElement[bool]) -> Experiment | None:
    row = conn.execute(select(*_COLUMNS).where(condition)).first()
    if row is None:
        return None
    experiment = Experiment(*row)
    return _counted(experiment, _counts(conn, experiment.experiment_id))


def _counts(conn: Connection, experiment_id: int | None) -> dict[int, Any]:
    # Answered from the (experiment_id, status, start_time_ms, trace_id) index alone.
    query = select(
        _traces.experiment_id,
        func.count().label("trace_count"),
        func.sum(case((_traces.status == STATUS_ERROR, 1), else_=0)).label("error_count"),
        func.max(_traces.start_time_ms).label("last_trace_ms"),
    ).group_by(_traces.experiment_id)
    if experiment_id is not None:
        query = query.where(_traces.experiment_id == experiment_id)
    return {row.experiment_id: row for row in conn.execute(query)}


def _counted(experiment: Experiment, counts: dict[int, Any]) -> Experiment:
    row = counts.get(experiment.experiment_id)
    if row is not None:
        experiment.trace_count = int(row.trace_count)
        experiment.error_count = int(row.error_count or 0)
        experiment.last_trace_ms = row.last_trace_ms
    return experiment
