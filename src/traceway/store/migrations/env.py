"""Alembic environment for the trace store.

Migrations run only through :func:`traceway.store.migrate.upgrade`, which hands
over an open connection (already in a transaction, already locked against a
concurrent upgrade) in ``config.attributes["connection"]``; there is no
``alembic.ini`` and no offline mode.
"""

from __future__ import annotations

from alembic import context

from traceway.store.migrate import VERSION_TABLE
from traceway.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
