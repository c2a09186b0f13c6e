"""Opening the event database and bringing its schema to the latest migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from vallum.errors import EventStoreError

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works: replicas that start together take this PostgreSQL lock so that one migrates at a time.
_MIGRATION_LOCK = 0x76616C6C756D


def make_engine(url: str) -> Engine:
    """An engine for `url` (sqlite:///path or postgresql://...); SQLite in WAL mode.

    A plain postgresql:// URL means psycopg 3, the driver vallum ships with.
    """
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError as exc:
        raise EventStoreError(
            f"event store URL {url!r} is not usable ({exc}); use sqlite:///path/events.db or "
            "postgresql://user@host:5432/database"
        ) from exc
    if backend not in ("sqlite", "postgresql"):
        raise EventStoreError(f"event store URL {display_url(url)}: only SQLite and PostgreSQL are supported")
    options: dict[str, Any] = {}
    if backend == "postgresql" and "connect_timeout" not in url:
        # An unreachable host must fail a batch in seconds, not hang the writer for the TCP timeout.
        options["connect_args"] = {"connect_timeout": 10}
    try:
        # pre_ping replaces pooled connections that died with a restarted server before a batch uses them.
        engine = create_engine(url, pool_pre_ping=True, **options)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise EventStoreError(f"event store URL {display_url(url)} is not usable: {exc}") from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    # WAL lets dashboards read while the writer appends; NORMAL syncs at checkpoints only, so a process
    # crash loses no committed batch (a power cut may lose the last few).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Erased rows (purge) are overwritten on disk rather than left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def alembic_config() -> Config:
    """Alembic's configuration for the shipped migrations; no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(url: str) -> None:
    """Create or migrate the event tables of the database at `url` to the latest revision."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as exc:
        raise EventStoreError(f"could not migrate the event store at {display_url(url)}: {exc}") from exc
    finally:
        engine.dispose()


def display_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
