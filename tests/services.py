"""Shared services (PostgreSQL, Redis) for tests: skipped where absent, unless CI says they must be there.

With VALLUM_REQUIRE_SERVICES set (CI sets it), an unreachable service fails the test instead of skipping it,
so a green run cannot hide tests that never ran.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

POSTGRES_URL = os.environ.get("VALLUM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("VALLUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _require(name: str, url: str, default_port: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("VALLUM_REQUIRE_SERVICES"):
        pytest.fail(f"{message}, and VALLUM_REQUIRE_SERVICES is set")
    pytest.skip(message)


def postgres_url() -> str:
    """A SQLAlchemy URL of the test PostgreSQL database (trust auth); skips or fails when it is down."""
    _require("PostgreSQL", POSTGRES_URL, 5432)
    return POSTGRES_URL


def redis_url() -> str:
    """The URL of the test Redis; skips or fails when it is down."""
    _require("Redis", REDIS_URL, 6379)
    return REDIS_URL


@contextmanager
def fresh_postgres_schema(prefix: str = "vallum_test") -> Iterator[str]:
    """A URL of the test PostgreSQL database whose search path is a new, empty schema, dropped afterwards."""
    with fresh_schema(postgres_url(), prefix) as url:
        yield url


@contextmanager
def fresh_schema(base: str, prefix: str) -> Iterator[str]:
    """`base` (any PostgreSQL URL) with its search path set to a new, empty schema, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()
