"""How fast the audit log appends and verifies, per backend, one entry per write and in batches.

    python benchmarks/audit_log.py                         # JSONL file, SQLite, and PostgreSQL when reachable
    python benchmarks/audit_log.py --entries 2000 --no-postgres

Each row appends `--entries` block entries (the detail a gateway block leaves, about 400 bytes), signed
with Ed25519, either one per write (one fsync or one transaction each: what a lone admin action costs)
or in batches of `--batch` (what a writer thread draining blocking decisions gets). Then the whole chain
is read back and verified with the public key. The file and the SQLite database live in a temporary
directory; PostgreSQL gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from vallum.audit import AuditAction, AuditLog, JsonlAuditFile, Signer, SqlAuditTable, generate_key_pair
from vallum.audit import load_verify_key as verify_key

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

DETAIL = {
    "event": "356c0ffee0ddf00d356c0ffee0ddf00d",
    "identity": {"tenant": "acme", "user": "alice", "api_key": "team-a", "ip": "127.0.0.1"},
    "policy_version": "default@52fffbb37359",
    "route": "chat/completions",
    "model": "sim-echo",
    "status": 400,
    "code": "input_blocked",
    "enforced": True,
    "phases": {
        "input": {
            "categories": ["injection"],
            "rules": ["VAL-INJ-0001", "VAL-INJ-0007"],
            "detectors": ["injection_classifier", "injection_signatures"],
        }
    },
}


def measure(name: str, open_log: Callable[[], AuditLog], entries: int, batch: int, public: str) -> list[str]:
    rows = []
    for per_write in (1, batch):
        log = open_log()
        started = time.perf_counter()
        for first in range(0, entries, per_write):
            count = min(per_write, entries - first)
            drafts = [
                log.draft(AuditAction.BLOCK, actor="gateway", target="e", detail=DETAIL) for _ in range(count)
            ]
            log.record_many(drafts)
        appended = time.perf_counter() - started
        started = time.perf_counter()
        result = log.verify(public_key=verify_key(public))
        verified = time.perf_counter() - started
        log.close()
        assert result.ok and result.entries >= entries, result
        rows.append(
            f"| {name} | {per_write} | {entries / appended:,.0f} | {result.entries / verified:,.0f} | "
            f"{result.entries} |"
        )
    return rows


def postgres_up(url: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            pass
        create_engine(url).connect().close()
    except Exception:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    private, public = generate_key_pair()
    signer = Signer.from_base64(private)
    print("| backend | entries per write | appended/s | verified/s | chain length |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        for row in measure(
            "JSONL file (fsync)",
            lambda: AuditLog(JsonlAuditFile(path), signer=signer),
            args.entries,
            args.batch,
            public,
        ):
            print(row)
        url = f"sqlite:///{Path(tmp) / 'audit.db'}"
        for row in measure(
            "SQLite (WAL)",
            lambda: AuditLog(SqlAuditTable(url), signer=signer),
            args.entries,
            args.batch,
            public,
        ):
            print(row)
    if args.no_postgres or not postgres_up(args.postgres):
        return
    schema = f"audit_bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(args.postgres)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        for row in measure(
            "PostgreSQL",
            lambda: AuditLog(SqlAuditTable(args.postgres, schema=schema), signer=signer),
            args.entries,
            args.batch,
            public,
        ):
            print(row)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
