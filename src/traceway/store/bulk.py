"""Running one Core statement over many rows with the driver's own executemany.

``Connection.execute(statement, rows)`` sends every row through SQLAlchemy's
parameter processing, which for a batch of wide span rows costs as much as the
database's own work.  A :class:`BulkStatement` compiles its statement once per
dialect and hands the driver plain tuples (positional drivers such as sqlite3,
in the order the rows already have when it matches) or dicts (named ones such
as psycopg).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql.expression import Executable

__all__ = ["BulkStatement"]

Rows = Sequence[tuple[Any, ...]]


class BulkStatement:
    """A statement whose bind parameters all come from each row.

    ``names`` are the bind parameter names, in the order of each row's values.
    The statement must bind no constants of its own: the rows supply everything.
    """

    def __init__(self, statement: Executable, names: Sequence[str]) -> None:
        self.statement = statement
        self.names = tuple(names)
        self._compiled: dict[str, tuple[str, Callable[[Rows], Any]]] = {}

    def execute(self, conn: Connection, rows: Rows) -> None:
        """Run the statement once per row, in one driver call."""
        if not rows:
            return
        compiled = self._compiled.get(conn.dialect.name)
        if compiled is None:
            compiled = self._compile(conn)
        sql, convert = compiled
        conn.exec_driver_sql(sql, convert(rows))

    def _compile(self, conn: Connection) -> tuple[str, Callable[[Rows], Any]]:
        compiled = self.statement.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
        names = self.names
        binds = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        missing = set(binds) - set(names)
        if missing:
            raise ValueError(f"rows do not supply bind parameters {sorted(missing)}")
        convert: Callable[[Rows], Any]
        if not compiled.positional:

            def convert(rows: Rows) -> Any:
                return [dict(zip(names, row, strict=True)) for row in rows]

        elif binds == list(names):

            def convert(rows: Rows) -> Any:
                return rows

        else:
            getter = itemgetter(*(names.index(name) for name in binds))
            if len(binds) == 1:
                # itemgetter of one index returns the value, not a 1-tuple.
                def convert(rows: Rows) -> Any:
                    return [(getter(row),) for row in rows]

            else:

                def convert(rows: Rows) -> Any:
                    return [getter(row) for row in rows]

        entry = (compiled.string, convert)
        self._compiled[conn.dialect.name] = entry
        return entry
