"""What `vallum audit verify`, `vallum audit export` and `vallum audit keygen` do; cli.py parses the flags.

Exit codes: 0 the log is intact (or the command did its job), 1 the log is not intact, 2 the command could
not run (no source given, an unreadable file or database, a malformed key or anchor).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vallum.audit.backend import AuditBackend
from vallum.audit.entry import Link
from vallum.audit.errors import AuditError
from vallum.audit.export import export_chain
from vallum.audit.jsonl import JsonlAuditFile
from vallum.audit.signing import SIGNING_KEY_ENV, VERIFY_KEY_ENV, generate_key_pair, load_verify_key
from vallum.audit.sql import DEFAULT_TABLE, SqlAuditTable
from vallum.audit.verify import Verification, verify_chain

_ANCHOR = re.compile(r"(\d+):([0-9a-f]{64})")


def run_verify(
    file: Path | None,
    db_url: str | None,
    public_key: str | None,
    *,
    anchor: str | None = None,
    table: str = DEFAULT_TABLE,
) -> int:
    """Check the log in `file` or `db_url` and print what was found; `public_key` falls back to
    VALLUM_AUDIT_VERIFY_KEY; `anchor` ("SEQ:HASH", a head printed by an earlier verify) must still be there."""
    try:
        key = _public_key(public_key)
        head = _anchor(anchor)
        source = open_source(file, db_url, table)
        try:
            result = verify_chain(source.read(), public_key=key, anchor=head)
        finally:
            source.close()
    except AuditError as exc:
        return _usage_error("verify", str(exc))
    print(report(source.name, result, anchor=head))
    return 0 if result.ok else 1


def run_export(file: Path | None, db_url: str | None, output: Path, *, table: str = DEFAULT_TABLE) -> int:
    """Write the log as JSONL to `output`; exits 1 (the file still written) when the chain is not intact."""
    try:
        source = open_source(file, db_url, table)
        try:
            count = export_chain(source, output)
        finally:
            source.close()
        result = verify_chain(JsonlAuditFile(output, create=False).read())
    except AuditError as exc:
        return _usage_error("export", str(exc))
    print(f"exported {count} audit entries from {source.name} to {output}")
    if result.ok:
        return 0
    problem = result.problem
    assert problem is not None
    print(f"warning: the exported chain is not intact: {problem.kind} at {problem.where}: {problem.message}")
    return 1


def run_keygen() -> int:
    """Print a fresh Ed25519 key pair as the two environment variables that use it."""
    private, public = generate_key_pair()
    print(
        f"# the gateway's environment only; whoever holds it can sign audit entries\n{SIGNING_KEY_ENV}={private}"
    )
    print(f"# for `vallum audit verify`; safe to share\n{VERIFY_KEY_ENV}={public}")
    return 0


def open_source(file: Path | None, db_url: str | None, table: str = DEFAULT_TABLE) -> AuditBackend:
    """The existing log to read: a JSONL file or a database table, never both, never created."""
    if (file is None) == (db_url is None):
        raise AuditError("give the audit log to read: --file FILE or --db URL (one of them)")
    if file is not None:
        return JsonlAuditFile(file, create=False)
    assert db_url is not None
    return SqlAuditTable(db_url, table=table, create=False)


def report(name: str, result: Verification, *, anchor: Link | None = None) -> str:
    """The verification as an operator reads it: the verdict first, then the head to keep."""
    problem = result.problem
    head = result.head
    lines = []
    if problem is None:
        lines.append(f"audit log {name}: intact, {result.entries} entries")
        if head is not None:
            lines.append(f"  head: {head}")
    else:
        lines.append(f"audit log {name}: NOT INTACT")
        seq = f" (seq {problem.seq})" if problem.seq is not None else ""
        lines.append(f"  first problem: {problem.kind} at {problem.where}{seq}: {problem.message}")
        up_to = f", up to {head}" if head is not None else ""
        lines.append(f"  intact before it: {result.entries} entries{up_to}")
    if problem is None and anchor is not None:
        lines.append(f"  anchor {anchor.seq}:{anchor.hash[:16]}… found unchanged")
    lines.append("  " + _signatures(result))
    if problem is None and anchor is None and head is not None:
        lines.append(
            "  keep the head outside this log: `--anchor SEQ:HASH` with it later also detects entries cut "
            "from the end, which the chain alone cannot"
        )
    return "\n".join(lines)


def _signatures(result: Verification) -> str:
    if result.signatures_checked:
        return f"signatures: {result.signed} of {result.entries} entries verified with the public key"
    if result.signed == 0:
        return "signatures: none"
    return (
        f"signatures: {result.signed} of {result.entries} entries signed, not checked "
        f"(give --public-key or set {VERIFY_KEY_ENV})"
    )


def _public_key(given: str | None) -> Ed25519PublicKey | None:
    text = given if given is not None else os.environ.get(VERIFY_KEY_ENV)
    return load_verify_key(text) if text else None


def _anchor(text: str | None) -> Link | None:
    if text is None:
        return None
    match = _ANCHOR.fullmatch(text.strip())
    if match is None:
        raise AuditError(
            f"the anchor must be SEQ:HASH as verify prints it (64 lowercase hex digits), not {text!r}"
        )
    return Link(int(match[1]), match[2])


def _usage_error(command: str, message: str) -> int:
    print(f"vallum audit {command}: error: {message}", file=sys.stderr)
    return 2
