"""Tables of the admin side, in the same database (and migration history) as the event store."""

from __future__ import annotations

from sqlalchemy import Column, Float, Integer, PrimaryKeyConstraint, String, Table, Text

from vallum.monitor.schema import metadata

# Every published policy text is kept: the newest version of a name is the active one, and a rollback
# publishes an old text again as a new version, so the history only ever grows.
policy_versions = Table(
    "policy_versions",
    metadata,
    Column("name", String, nullable=False),
    Column("version", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("label", String, nullable=False),  # the Policy's version@digest, as events record it
    Column("author", String, nullable=False),
    Column("time", Float, nullable=False),
    Column("comment", Text, nullable=False),
    PrimaryKeyConstraint("name", "version"),
)

# Client keys made through the admin API (keys in the config file live there). Only digests are stored.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String, primary_key=True),
    Column("sha256", String, nullable=False, unique=True),
    Column("tenant", String),
    Column("user_id", String),
    Column("policy", String, nullable=False),
    Column("models", Text, nullable=False),  # JSON list of globs
    Column("limits", Text),  # JSON RateLimit, or NULL for the gateway's default
    Column("created", Float, nullable=False),
    Column("created_by", String, nullable=False),
    Column("revoked", Float),
)

# Cool-downs and blocks on identities, so that one set through any replica (or by its analytics) applies on all.
identity_restrictions = Table(
    "identity_restrictions",
    metadata,
    Column("identity", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("until", Float),  # NULL: a block, until lifted
    Column("reason", Text, nullable=False),
    Column("set_by", String, nullable=False),
)
