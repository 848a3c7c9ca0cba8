"""Stores to test against: a SQLite file and the real PostgreSQL server.

Every store test runs on both backends.  SQLite stores are copies of one
migrated template file; PostgreSQL stores live in a schema of their own, created
for the test module and dropped after it, and emptied before each test.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from store_helpers import create_schema, driver_url, drop_schema, schema_url

from traceway.store import Store, open_store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
TABLES = ("trace_metadata", "trace_tags", "spans", "traces", "experiments")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite store file to copy (migrating each test is slower)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    open_store(f"sqlite:///{path}").close()
    return path


@pytest.fixture(scope="module")
def postgres_schema() -> Iterator[str]:
    name = create_schema()
    open_store(schema_url(name)).close()
    yield name
    drop_schema(name)


StoreFactory = Callable[[], Store]


@pytest.fixture(params=BACKENDS)
def new_store(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[StoreFactory]:
    """Opens empty stores on the backend under test (closing them afterwards)."""
    opened: list[Store] = []
    if request.param == "sqlite":

        def make() -> Store:
            path = tmp_path / f"store-{len(opened)}.db"
            shutil.copy(sqlite_template, path)
            opened.append(open_store(f"sqlite:///{path}", now_ms=_clock()))
            return opened[-1]

    else:
        schema = request.getfixturevalue("postgres_schema")

        def make() -> Store:
            with psycopg.connect(driver_url(), autocommit=True) as conn:
                conn.execute(
                    f'SET search_path TO "{schema}"; '
                    f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"
                )
            opened.append(open_store(schema_url(schema), now_ms=_clock()))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(new_store: StoreFactory) -> Store:
    """An empty store on the backend under test."""
    return new_store()


def _clock() -> Callable[[], int]:
    """A clock that ticks one millisecond per reading, from a fixed start."""
    ticks = iter(range(1_700_000_000_000, 1_800_000_000_000))
    return lambda: next(ticks)
