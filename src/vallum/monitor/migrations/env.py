"""Alembic's entry point for the event store migrations.

`vallum.monitor.database.upgrade` hands over an open connection in `config.attributes["connection"]`;
run by hand (`alembic -x url=sqlite:///events.db upgrade head` with script_location pointing here), the
URL comes from `-x url=...`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from vallum.monitor.database import make_engine
from vallum.monitor.schema import metadata


def _migrate(connection: Connection) -> None:
    # Batch mode rebuilds SQLite tables for the ALTERs SQLite cannot do; PostgreSQL ignores it.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database URL: alembic -x url=sqlite:///events.db upgrade head")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


_run()
