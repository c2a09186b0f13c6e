"""The monitoring sub-commands of `vallum`, on a database the gateway code wrote."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from vallum.audit.log import AuditLog
from vallum.cli import main
from vallum.monitor.store import EventStore


def event(n: int, user: str, action: str = "block") -> dict[str, object]:
    stage = {"action": action, "categories": ["injection"] if action == "block" else [], "findings": []}
    return {
        "id": f"e{n}",
        "time": 1_800_000_000.0 + n,
        "identity": {"tenant": "acme", "user": user},
        "status": 400 if action == "block" else 200,
        "input": stage,
        "output": {"action": "allow", "categories": [], "findings": []},
    }


def test_db_upgrade_then_purge_erases_one_identity(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    assert main(["db", "upgrade", "--db", url]) == 0
    store = EventStore(url)
    store.write_batch([event(1, "alice"), event(2, "bob"), event(3, "alice")])
    store.close()
    assert main(["events", "purge", "--db", url, "--tenant", "acme", "--user", "alice"]) == 0
    with sqlite3.connect(tmp_path / "v.db") as db:
        assert db.execute("select id from events").fetchall() == [("e2",)]


def test_audit_verify_finds_an_entry_edited_in_the_database(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    log = AuditLog.open(db_url=url)
    for n in range(3):
        log.record("admin_action", actor="admin-1", target=f"user:u{n}", detail={"n": n})
    log.close()
    assert main(["audit", "verify", "--db", url]) == 0
    with sqlite3.connect(tmp_path / "v.db") as db:
        db.execute("update vallum_audit set actor = 'someone-else' where seq = 2")
    assert main(["audit", "verify", "--db", url]) == 1
    assert "2" in capsys.readouterr().out


def test_alerts_test_reads_the_gateways_jsonl_events(tmp_path: Path, capsys) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- id: burst\n  match: {action: block}\n  threshold: {count: 3, window_s: 60}\n  channels: []\n"
    )
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(event(n, "mallory")) + "\n" for n in range(4)))
    assert main(["alerts", "test", str(rules), "--events", str(events)]) == 0
    assert "burst" in capsys.readouterr().out
    assert main(["alerts", "test", str(rules)]) == 2
