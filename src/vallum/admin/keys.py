"""Client API keys made and revoked through the admin API; only their SHA-256 digests are stored."""

from __future__ import annotations

import json
import time
from typing import cast

from sqlalchemy import Engine, func, insert, select, update

from vallum.admin.schema import api_keys
from vallum.errors import VallumError
from vallum.gateway.config import ClientKey, RateLimit
from vallum.gateway.identity import new_key


class KeyStoreError(VallumError):
    """A key id that is taken or unknown."""


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(
        self,
        key_id: str,
        author: str,
        *,
        tenant: str | None = None,
        user: str | None = None,
        policy: str = "default",
        models: list[str] | None = None,
        limits: RateLimit | None = None,
    ) -> tuple[str, ClientKey]:
        """A new key: the secret is returned once, here, and never stored."""
        secret, digest = new_key()
        key = ClientKey(
            id=key_id,
            sha256=digest,
            tenant=tenant,
            user=user,
            policy=policy,
            models=models or ["*"],
            limits=limits,
        )
        with self.engine.begin() as db:
            if db.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first():
                raise KeyStoreError(f"a key with id {key_id!r} exists already; revoke it or pick another id")
            db.execute(
                insert(api_keys).values(
                    id=key.id,
                    sha256=key.sha256,
                    tenant=key.tenant,
                    user_id=key.user,
                    policy=key.policy,
                    models=json.dumps(key.models),
                    limits=key.limits.model_dump_json() if key.limits else None,
                    created=time.time(),
                    created_by=author,
                    revoked=None,
                )
            )
        return secret, key

    def revoke(self, key_id: str) -> None:
        with self.engine.begin() as db:
            done = db.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked.is_(None))
                .values(revoked=time.time())
            )
        if done.rowcount == 0:
            raise KeyStoreError(f"no active key with id {key_id!r}")

    def mark(self) -> tuple[int, float, float]:
        """Changes whenever a key is made or revoked: what a replica compares to notice them."""
        query = select(func.count(), func.max(api_keys.c.created), func.max(api_keys.c.revoked))
        with self.engine.connect() as db:
            count, created, revoked = db.execute(query).one()
        return int(cast(int, count)), float(cast(float, created or 0)), float(cast(float, revoked or 0))

    def active(self) -> list[ClientKey]:
        return [key for key, revoked in self._rows() if revoked is None]

    def listing(self) -> list[dict[str, object]]:
        """Every key with its state, for the admin API (digests and secrets left out)."""
        return [
            {**key.model_dump(exclude={"sha256"}), "revoked": revoked is not None}
            for key, revoked in self._rows()
        ]

    def _rows(self) -> list[tuple[ClientKey, float | None]]:
        with self.engine.connect() as db:
            rows = db.execute(select(api_keys).order_by(api_keys.c.created)).mappings().all()
        return [
            (
                ClientKey(
                    id=r["id"],
                    sha256=r["sha256"],
                    tenant=r["tenant"],
                    user=r["user_id"],
                    policy=r["policy"],
                    models=json.loads(r["models"]),
                    limits=RateLimit.model_validate_json(r["limits"]) if r["limits"] else None,
                ),
                r["revoked"],
            )
            for r in rows
        ]
