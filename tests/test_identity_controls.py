"""Identity cool-downs and blocks live in the shared database: what one replica (or its analytics) sets or
lifts, every replica enforces after its next sync; checks themselves never touch the database."""

from __future__ import annotations

from pathlib import Path

from vallum.admin.controls import IdentityControls
from vallum.monitor.database import make_engine, upgrade


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def replicas(tmp_path: Path, clock: Clock) -> tuple[IdentityControls, IdentityControls]:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    upgrade(url)
    return IdentityControls(clock, make_engine(url)), IdentityControls(clock, make_engine(url))


def test_a_block_set_on_one_replica_applies_on_another_after_its_sync(tmp_path: Path) -> None:
    clock = Clock()
    one, two = replicas(tmp_path, clock)
    one.block("user:acme/mallory", "probing", "ops")
    assert two.check(["user:acme/mallory"]) is None  # not yet synced
    two.reload()
    restriction = two.check(["ip:10.0.0.9", "user:acme/mallory"])
    assert restriction is not None and (restriction.kind, restriction.reason) == ("block", "probing")


def test_a_lift_on_one_replica_lifts_it_everywhere(tmp_path: Path) -> None:
    clock = Clock()
    one, two = replicas(tmp_path, clock)
    two.cooldown("key:team-a", 600, "burst", "analytics")
    one.reload()
    assert one.lift("key:team-a")
    two.reload()
    assert two.check(["key:team-a"]) is None


def test_an_expired_cooldown_is_not_taken_back_from_the_database(tmp_path: Path) -> None:
    clock = Clock()
    one, two = replicas(tmp_path, clock)
    one.cooldown("tenant:acme", 30, "volume", "analytics")
    clock.now += 31
    two.reload()
    assert two.active() == [] and two.check(["tenant:acme"]) is None


def test_without_a_database_restrictions_stay_in_process() -> None:
    controls = IdentityControls(Clock())
    controls.block("user:x", "r", "ops")
    controls.reload()
    assert controls.check(["user:x"]) is not None
