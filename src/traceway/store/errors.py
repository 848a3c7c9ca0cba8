"""The errors the store raises: one hierarchy for the whole boundary.

::

    StoreError              the store cannot do what was asked: a bad URL, an
     │                      unreachable database, a failed migration, a database
     │                      error in the middle of an operation
     ├── ExperimentExists   create_experiment() with a name that is taken
     └── FilterError        the caller's query is malformed: the filter text, the
                            order_by text, the page token or the page size;
                            ``position`` is the 0-based offset where it broke

Messages are one line and written for the person who typed the query or the URL,
so the REST API can pass them through unchanged.  Driver errors are translated
into these once, with the original chained as ``__cause__``.
"""

from __future__ import annotations

__all__ = ["ExperimentExists", "FilterError", "StoreError"]


class StoreError(Exception):
    """The store could not do what was asked; the message is one human line."""


class ExperimentExists(StoreError):
    """An experiment with this name already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"an experiment named {name!r} already exists")
        self.name = name


class FilterError(StoreError):
    """A filter, order_by, page token or page size the store cannot accept.

    ``position`` is the 0-based character offset in the text where parsing broke
    (0 for a page token or page size, which are judged as a whole).
    """

    def __init__(self, message: str, position: int = 0) -> None:
        super().__init__(message)
        self.position = position
