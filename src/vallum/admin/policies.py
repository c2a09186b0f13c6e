"""Versioned policies: publish, history, diff and rollback, each version validated before it is kept."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from vallum.admin.schema import policy_versions
from vallum.core.policy import Policy
from vallum.errors import VallumError


class PolicyStoreError(VallumError):
    """A policy version that does not exist, or a text that is not a valid policy."""


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    name: str
    version: int
    text: str
    label: str
    author: str
    time: float
    comment: str

    def policy(self) -> Policy:
        return Policy.from_yaml(self.text, filename=f"{self.name} v{self.version}")

    def to_dict(self, *, with_text: bool = True) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "version": self.version,
            "label": self.label,
            "author": self.author,
            "time": self.time,
            "comment": self.comment,
        }
        if with_text:
            out["text"] = self.text
        return out


class PolicyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, name: str, text: str, author: str, comment: str = "") -> PolicyVersion:
        """Validate `text` and keep it as the next version of `name`, which becomes the active one."""
        policy = Policy.from_yaml(text, filename=f"policy {name!r}")  # raises PolicyError naming key and line
        for _ in range(3):  # two admins publishing at once: the loser takes the next number
            with self.engine.begin() as db:
                latest = db.execute(
                    select(func.max(policy_versions.c.version)).where(policy_versions.c.name == name)
                ).scalar()
                row = PolicyVersion(name, (latest or 0) + 1, text, policy.label, author, time.time(), comment)
                try:
                    db.execute(insert(policy_versions).values(**row.to_dict()))
                except IntegrityError:
                    continue
            return row
        raise PolicyStoreError(f"could not publish policy {name!r}: too many concurrent publishers")

    def get(self, name: str, version: int | None = None) -> PolicyVersion:
        query = select(policy_versions).where(policy_versions.c.name == name)
        if version is None:
            query = query.order_by(policy_versions.c.version.desc()).limit(1)
        else:
            query = query.where(policy_versions.c.version == version)
        with self.engine.connect() as db:
            row = db.execute(query).mappings().first()
        if row is None:
            which = f"version {version}" if version is not None else "any version"
            raise PolicyStoreError(f"policy {name!r} has no {which}")
        return PolicyVersion(**row)

    def latest(self, name: str) -> PolicyVersion | None:
        try:
            return self.get(name)
        except PolicyStoreError:
            return None

    def history(self, name: str) -> list[PolicyVersion]:
        query = select(policy_versions).where(policy_versions.c.name == name)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(policy_versions.c.version.desc())).mappings().all()
        return [PolicyVersion(**row) for row in rows]

    def heads(self) -> dict[str, int]:
        """The newest version of every policy name: what a replica compares to notice a change made elsewhere."""
        query = select(policy_versions.c.name, func.max(policy_versions.c.version)).group_by(
            policy_versions.c.name
        )
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        return {str(name): int(cast(int, version)) for name, version in rows}

    def names(self) -> list[str]:
        with self.engine.connect() as db:
            return list(db.execute(select(policy_versions.c.name).distinct()).scalars())

    def diff(self, name: str, old: int, new: int) -> str:
        a, b = self.get(name, old), self.get(name, new)
        return "".join(
            difflib.unified_diff(
                a.text.splitlines(keepends=True),
                b.text.splitlines(keepends=True),
                fromfile=f"{name} v{old}",
                tofile=f"{name} v{new}",
            )
        )

    def rollback(self, name: str, version: int, author: str) -> PolicyVersion:
        """Publish an earlier version's text again, as a new version (history is never rewritten)."""
        old = self.get(name, version)
        return self.publish(name, old.text, author, comment=f"rollback to v{version}")
