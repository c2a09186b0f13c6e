"""The event store's tables (events, and behaviour-risk snapshots), as SQLAlchemy Core metadata that reads the same on SQLite and PostgreSQL.

The migrations under `migrations/versions/` create exactly this; a test compares the two, so a change here
needs a new revision there.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

# One row per gateway event. The scalar fields are columns so that they can be filtered and counted in SQL;
# what varies in shape (findings, scores, fields added later) is JSON in `detail`. Strings are unbounded
# (VARCHAR / TEXT) so that an unexpected long value never fails a whole batch; the writer trims them.
events = Table(
    "events",
    metadata,
    Column("id", String, primary_key=True),
    Column("time", Float, nullable=False),  # epoch seconds; a double on PostgreSQL
    Column("api", String),
    Column("route", String),
    Column("model", String),
    Column("upstream", String),
    Column("tenant", String),
    Column("user_id", String),
    Column("api_key", String),  # the key's id from the gateway config, never the key itself
    Column("ip", String),
    Column("status", Integer),
    Column("code", String),
    Column("action", String, nullable=False),  # the stronger of input_action and output_action
    Column("input_action", String),
    Column("output_action", String),
    Column("categories", Text, nullable=False),  # ",injection,secrets," so a LIKE '%,name,%' finds one
    Column("policy_version", String),
    Column("shadow", Boolean, nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("tokens", Integer),
    Column("guard_ms", Float),
    Column("upstream_ms", Float),
    Column("total_ms", Float),
    Column("detail", Text, nullable=False),
    Column("text", Text),  # NULL, JSON of the redacted texts, or base64(nonce + AES-GCM ciphertext)
    Column("text_mode", String, nullable=False),  # none | redacted | encrypted: what `text` holds
    Column("key_id", String),  # which key encrypted `text`
    Index("ix_events_time", "time"),
    Index("ix_events_tenant_user", "tenant", "user_id"),
    Index("ix_events_api_key", "api_key"),
    Index("ix_events_action_time", "action", "time"),
)

# Each identity's behaviour risk over time, as the analytics worker saw it: at most one row per identity per
# minute (`time` is the minute's start, so replicas that score the same identity agree on one row), written
# while the identity is active and its risk is above zero, and once more when it falls back to zero.
risk_snapshots = Table(
    "risk_snapshots",
    metadata,
    Column(
        "identity", String, nullable=False
    ),  # an analytics key: user:TENANT/NAME, key:ID, tenant:ID, ip:ADDR
    Column("time", Float, nullable=False),
    Column("score", Float, nullable=False),
    Column("level", String, nullable=False),
    Column("features", Text, nullable=False),  # JSON {feature: value}
    Column("contributions", Text, nullable=False),  # JSON {feature: partial score}
    PrimaryKeyConstraint("identity", "time"),
    Index("ix_risk_snapshots_time", "time"),
)
