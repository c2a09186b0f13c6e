"""Tamper-evident audit log: policy changes, key changes, admin actions and blocking decisions.

Every entry commits to the one before it (a SHA-256 hash chain) and may carry an Ed25519 signature of its
hash, so that editing, removing or reordering entries is found by `verify_chain`, which names the first
entry that is wrong. Entries live in a JSON Lines file or in a SQL table (SQLite by default, PostgreSQL
when several gateway replicas write one chain); both read back alike, and `export_chain` turns either
into the JSONL form that `vallum audit verify --file` checks.

A hash chain alone cannot show that entries were cut from its end, nor stop someone who rewrites the
whole file with fresh hashes: verification reports the head (last seq and hash) so that operators can
keep it elsewhere and check it later as an anchor, and signatures need the private key to forge.
"""

from vallum.audit.backend import AuditBackend, StoredEntry
from vallum.audit.blocks import block_detail, is_blocking
from vallum.audit.entry import GENESIS_HASH, AuditAction, AuditEntry, Draft, Link
from vallum.audit.errors import AuditError, AuditKeyError
from vallum.audit.export import export_chain
from vallum.audit.jsonl import JsonlAuditFile
from vallum.audit.log import AuditLog
from vallum.audit.signing import SIGNING_KEY_ENV, VERIFY_KEY_ENV, Signer, generate_key_pair, load_verify_key
from vallum.audit.sql import SqlAuditTable
from vallum.audit.verify import Problem, Verification, verify_chain

__all__ = [
    "GENESIS_HASH",
    "SIGNING_KEY_ENV",
    "VERIFY_KEY_ENV",
    "AuditAction",
    "AuditBackend",
    "AuditEntry",
    "AuditError",
    "AuditKeyError",
    "AuditLog",
    "Draft",
    "JsonlAuditFile",
    "Link",
    "Problem",
    "Signer",
    "SqlAuditTable",
    "StoredEntry",
    "Verification",
    "block_detail",
    "export_chain",
    "generate_key_pair",
    "is_blocking",
    "load_verify_key",
    "verify_chain",
]
