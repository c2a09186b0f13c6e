"""The event spool: a writer process killed with SIGKILL loses less than one batch of the events it accepted,
and the next sink on the same spool replays the rest into the store (real SQLite files and a real PostgreSQL,
real child processes); segments are deleted once committed and never claimed while their process lives."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.gateway_env import running_gateway
from tests.test_event_store import blocked_event, make_event, raw_rows, with_text
from vallum.gateway.monitoring import spool_directory
from vallum.monitor import spool as spool_module
from vallum.monitor.database import make_engine, upgrade
from vallum.monitor.spool import Spool
from vallum.monitor.store import EventStore
from vallum.monitor.writer import StoreSink

BATCH = 50
EMITTED = 20 * BATCH + 17  # the last 17 are still in memory when the process dies

# The child accepts EMITTED events while the store is locked by the test, says so, and waits to be killed.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tests.test_event_store import make_event
    from vallum.monitor.store import EventStore
    from vallum.monitor.writer import StoreSink

    url, spool, emitted, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sink = StoreSink(
        EventStore(url), batch_size=batch, retries=1_000, backoff_s=0.05, spool=Path(spool) if spool else None
    )
    for n in range(emitted):
        sink.emit(make_event(n))
    print("accepted", emitted, flush=True)
    time.sleep(600)
    """
)


@contextmanager
def store_locked(url: str) -> Iterator[None]:
    """Hold the events table so that no other process can commit to it until the block ends."""
    if url.startswith("sqlite:///"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.rollback()
            connection.close()
        return
    engine = make_engine(url)
    try:
        with engine.begin() as held:
            held.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def kill_while_writing(url: str, spool: Path | None) -> int:
    """Run the child against a locked store, SIGKILL it once it has accepted everything; rows it committed."""
    with store_locked(url):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(spool or ""), str(EMITTED), str(BATCH)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().split() == ["accepted", str(EMITTED)]
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    return len(raw_rows(url))


def stored_ids(url: str) -> set[str]:
    return {row["id"] for row in raw_rows(url)}


def test_a_killed_writer_loses_less_than_a_batch_once_restarted(url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    assert kill_while_writing(url, spool) == 0  # the store was locked: nothing was committed before the kill
    restarted = StoreSink(EventStore(url), batch_size=BATCH, spool=spool)
    restarted.close()
    ids = stored_ids(url)
    lost = EMITTED - len(ids)
    assert 0 <= lost < BATCH
    assert ids == {make_event(n)["id"] for n in range(len(ids))}  # the oldest, none twice, none invented
    assert restarted.replayed == len(ids)
    assert list(spool.iterdir()) == []


def test_without_a_spool_the_same_kill_loses_everything_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    upgrade(url)
    assert kill_while_writing(url, None) == 0
    StoreSink(EventStore(url), batch_size=BATCH).close()
    assert stored_ids(url) == set()


def test_a_clean_shutdown_leaves_an_empty_spool_and_nothing_to_replay(url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    sink = StoreSink(EventStore(url), batch_size=BATCH, spool=spool)
    for n in range(1_000):
        sink.emit(make_event(n))
    sink.close()
    assert (sink.written, sink.dropped) == (1_000, 0)
    assert list(spool.iterdir()) == []
    again = StoreSink(EventStore(url), spool=spool)
    again.close()
    assert again.replayed == 0 and len(raw_rows(url)) == 1_000


def test_committed_segments_are_deleted_while_the_sink_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    upgrade(url)
    spool = tmp_path / "spool"
    sink = StoreSink(EventStore(url), queue_size=100, batch_size=10, overflow="block", spool=spool)
    for n in range(1_000):  # ten segments of a hundred events
        sink.emit(make_event(n))
    sink.flush()
    assert len(list(spool.glob("*.events"))) == 1  # only the segment still being appended to
    sink.close()
    assert len(raw_rows(url)) == 1_000 and list(spool.iterdir()) == []


def test_a_live_sinks_segments_are_not_replayed_by_another(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    upgrade(url)
    spool = tmp_path / "spool"
    with store_locked(url):
        first = StoreSink(EventStore(url), batch_size=BATCH, retries=1_000, backoff_s=0.05, spool=spool)
        for n in range(200):
            first.emit(make_event(n))
        second = StoreSink(EventStore(f"sqlite:///{tmp_path / 'other.db'}"), spool=spool)
        second.flush()
        assert second.replayed == 0
        second.close()
        assert len(list(spool.glob("*.events"))) == 1
    first.close()
    assert len(raw_rows(url)) == 200 and list(spool.iterdir()) == []


def test_a_line_cut_short_by_the_crash_is_skipped_and_the_rest_replayed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    upgrade(url)
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = [json.dumps(make_event(n)) + "\n" for n in range(3)]
    (spool / "00000000000000000001-1-dead.events").write_text("".join(lines) + lines[0][:40])
    sink = StoreSink(EventStore(url), spool=spool)
    sink.close()
    assert sink.replayed == 3 and len(raw_rows(url)) == 3
    assert list(spool.iterdir()) == []


def test_a_segment_the_store_refuses_is_kept_for_the_next_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "00000000000000000001-1-dead.events").write_text(json.dumps(make_event(1)) + "\n")
    missing = f"sqlite:///{tmp_path / 'not-yet' / 'events.db'}"
    refused = StoreSink(EventStore(missing), retries=0, spool=spool)
    refused.close()
    assert refused.replayed == 0 and len(list(spool.iterdir())) == 1
    (tmp_path / "not-yet").mkdir()
    upgrade(missing)
    accepted = StoreSink(EventStore(missing), spool=spool)
    accepted.close()
    assert accepted.replayed == 1 and len(raw_rows(missing)) == 1


def test_events_given_up_while_the_database_is_down_stay_journaled_for_the_next_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    missing = f"sqlite:///{tmp_path / 'not-yet' / 'events.db'}"
    down = StoreSink(EventStore(missing), batch_size=BATCH, retries=0, spool=spool)
    for n in range(3 * BATCH):
        down.emit(make_event(n))
    down.close()
    assert down.dropped == 3 * BATCH and down.written == 0
    (tmp_path / "not-yet").mkdir()
    upgrade(missing)
    back = StoreSink(EventStore(missing), batch_size=BATCH, spool=spool)
    back.close()
    assert back.replayed == 3 * BATCH and len(raw_rows(missing)) == 3 * BATCH


@pytest.mark.parametrize(("text_mode", "journaled"), [("none", False), ("redacted", True)])
def test_text_reaches_the_spool_only_where_the_store_keeps_it_in_clear(
    tmp_path: Path, text_mode: str, journaled: bool
) -> None:
    spool = Spool(tmp_path / "spool", keep_text=text_mode == "redacted")
    line = spool.encode(with_text(1))
    assert line is not None
    assert ("4111 1111" in line.decode()) is journaled
    assert json.loads(line)["input"]["findings"] == []


def test_the_gateway_spools_beside_its_sqlite_database_by_default(tmp_path: Path) -> None:
    with running_gateway(tmp_path, events={"sink": "store"}) as gw:
        sink = gw.gateway.monitor.sink
        assert isinstance(sink, StoreSink) and sink.spool is not None
        assert sink.spool.directory == tmp_path / "vallum.db-spool"


@pytest.mark.parametrize(
    ("setting", "database", "expected"),
    [
        ("auto", "sqlite:////var/lib/vallum/vallum.db", Path("/var/lib/vallum/vallum.db-spool")),
        ("auto", "postgresql://postgres@db:5432/vallum", Path("vallum-events-spool")),
        (Path("/data/spool"), "sqlite:///vallum.db", Path("/data/spool")),
        ("off", "sqlite:///vallum.db", None),
    ],
)
def test_spool_directory_follows_the_setting(
    setting: str | Path, database: str, expected: Path | None
) -> None:
    assert spool_directory(setting, database) == expected  # type: ignore[arg-type]


def test_a_journaled_line_reads_back_as_the_event() -> None:
    event = blocked_event(7) | {
        "time": 1_800_000_000.123456,
        "note": "naïve ☃ \u202e text",
        "extra": {1: "a"},
    }
    line = spool_module.encode_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == json.loads(json.dumps(event))  # int keys become strings, as in JSON
