"""Opening stores: URLs, connection settings, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from store_helpers import create_schema, drop_schema, schema_url

import traceway.store
from traceway.store import Store, StoreError, open_store
from traceway.store import migrate as migrate_module
from traceway.store.migrate import VERSION_TABLE, current_revision, head_revision
from traceway.store.schema import metadata

TABLES = {
    "experiments",
    "traces",
    "spans",
    "trace_tags",
    "trace_metadata",
    "gateway_keys",
    "virtual_keys",
    VERSION_TABLE,
}


def test_public_names_are_sorted_and_importable() -> None:
    names = traceway.store.__all__
    assert names == sorted(names)
    assert all(hasattr(traceway.store, name) for name in names)
    assert {"open_store", "Store", "StoreError", "FilterError", "ExperimentExists"} <= set(names)


def test_sqlite_store_is_created_with_its_directory_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "traces.db"
    store = open_store(f"sqlite:///{path}")
    store.close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == TABLES
        assert current_revision(conn) == head_revision()
    engine.dispose()


def test_sqlite_connections_use_wal_and_the_documented_pragmas(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    with store._db.writer.connect() as conn:  # the settings are per connection
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    store.close()
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "foreign_keys": 1,
        "busy_timeout": 10_000,
    }


def test_reopening_keeps_the_data_and_runs_no_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = open_store(url)
    experiment = store.create_experiment("kept")
    store.close()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a store already at head was migrated again")

    monkeypatch.setattr(migrate_module.command, "upgrade", fail)
    reopened = open_store(url)
    assert reopened.get_experiment_by_name("kept") == experiment
    reopened.close()


@pytest.mark.postgres
def test_postgres_store_is_migrated_once() -> None:
    schema = create_schema()
    try:
        url = schema_url(schema)
        open_store(url).close()
        store = open_store(url)  # second open: already at head
        store.close()
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == TABLES
            assert current_revision(conn) == head_revision()
            versions = conn.exec_driver_sql(f"SELECT count(*) FROM {VERSION_TABLE}").scalar()
        engine.dispose()
        assert versions == 1
    finally:
        drop_schema(schema)


def test_migrations_create_exactly_the_declared_schema(store: Store) -> None:
    with store._db.writer.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty store URL; use sqlite:///PATH or postgresql://USER@HOST/DB"),
        ("not a url", "cannot parse store URL 'not a url'"),
        ("mysql://root@localhost/db", "unsupported store URL scheme 'mysql'"),
        ("postgresql+psycopg2://root@localhost/db", "unsupported PostgreSQL driver"),
        ("sqlite+aiosqlite:///a.db", "unsupported SQLite driver"),
    ],
)
def test_bad_urls_fail_with_one_line(url: str, message: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.postgres
def test_unreachable_database_fails_with_one_line_and_no_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://someone:s3cret@127.0.0.1:1/nothing")
    message = str(caught.value)
    assert message.startswith("cannot open postgresql://someone:***@127.0.0.1:1/nothing: ")
    assert "\n" not in message
    assert "s3cret" not in message


def test_unwritable_sqlite_path_fails_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as caught:
        open_store(f"sqlite:///{blocker / 'traces.db'}")
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_a_database_fails_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as caught:
        open_store(f"sqlite:///{path}")
    assert str(caught.value) == f"cannot open sqlite:///{path}: file is not a database"


def test_in_memory_store_works() -> None:
    store = open_store("sqlite://")
    experiment = store.get_or_create_experiment("Default")
    assert store.list_experiments() == [experiment]
    store.close()


def test_closed_store_refuses_work_and_closes_twice(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="the store is closed"):
        store.list_experiments()


def test_journal_mode_persists_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


def test_store_url_is_the_one_given(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = open_store(url)
    assert store.url == url
    store.close()


def test_a_database_from_a_newer_version_fails_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = 'from_the_future'")
    conn.close()
    with pytest.raises(StoreError) as caught:
        open_store(f"sqlite:///{path}")
    assert str(caught.value) == (
        f"cannot migrate sqlite:///{path}: Can't locate revision identified by 'from_the_future'"
    )
