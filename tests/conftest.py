"""Fixtures shared by the tests of the event store and what is built on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import fresh_postgres_schema
from vallum.monitor.database import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without the schema: a fresh SQLite file, or a fresh PostgreSQL schema on the search path."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    with fresh_postgres_schema() as url:
        yield url


@pytest.fixture
def url(empty_url: str) -> str:
    """The same database, migrated to the newest schema."""
    upgrade(empty_url)
    return empty_url
