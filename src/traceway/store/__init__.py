"""The trace store: SQLite or PostgreSQL, the filter language, migrations.

>>> from traceway.store import open_store
>>> store = open_store("sqlite:///:memory:")
>>> store.list_experiments()
[]
>>> store.close()
"""

from __future__ import annotations

from traceway.store.errors import ExperimentExists, FilterError, StoreError
from traceway.store.records import (
    Experiment,
    SpanRecord,
    StoredSpan,
    StoredTrace,
    TraceSummary,
)
from traceway.store.store import Store, open_store

__all__ = [
    "Experiment",
    "ExperimentExists",
    "FilterError",
    "SpanRecord",
    "Store",
    "StoreError",
    "StoredSpan",
    "StoredTrace",
    "TraceSummary",
    "open_store",
]
