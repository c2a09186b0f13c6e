"""What `vallum db upgrade`, `vallum events purge` and `vallum events rotate` do; cli.py parses the arguments."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError

from vallum.errors import EventStoreError
from vallum.monitor.database import display_url, upgrade
from vallum.monitor.snapshots import purge as purge_snapshots
from vallum.monitor.store import EventStore

_DAY_S = 86_400.0


def run_db_upgrade(url: str) -> int:
    upgrade(url)
    print(f"event store at {display_url(url)} is at the latest schema")
    return 0


def run_events_purge(
    url: str,
    older_than_days: float | None = None,
    tenant: str | None = None,
    user: str | None = None,
    api_key: str | None = None,
) -> int:
    """Delete events (and risk snapshots) older than the given age and/or of one identity; criteria combine
    with AND."""
    if older_than_days is not None and older_than_days < 0:
        raise EventStoreError(f"--older-than-days must not be negative, got {older_than_days}")
    older_than = None if older_than_days is None else time.time() - older_than_days * _DAY_S
    store = EventStore(url)
    with _store_command(store, "purge events"):
        deleted = store.purge(older_than=older_than, tenant=tenant, user=user, api_key=api_key)
        # An identity's risk history goes with its events, by age and on erasure.
        snapshots = purge_snapshots(store.engine, older_than, tenant, user, api_key)
    print(f"deleted {deleted} events and {snapshots} risk snapshots from {display_url(url)}")
    return 0


def run_rotate(url: str) -> int:
    """Re-encrypt stored text under the first key of VALLUM_EVENT_KEYS."""
    store = EventStore(url, text_mode="encrypted")  # fails here, clearly, without usable keys
    with _store_command(store, "rotate keys"):
        rotated = store.rotate()
    print(f"re-encrypted {rotated} events under the current key")
    return 0


@contextmanager
def _store_command(store: EventStore, purpose: str) -> Iterator[None]:
    """Close the store afterwards; a database failure becomes an error message for the command line."""
    try:
        yield
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise EventStoreError(
            f"could not {purpose} at {display_url(store.url)}: {cause} (run `vallum db upgrade` if the tables are missing)"
        ) from exc
    finally:
        store.close()
