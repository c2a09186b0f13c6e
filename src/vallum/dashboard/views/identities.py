"""The riskiest identities with their behaviour features, their risk over time and recent activity, and
one-click restrictions."""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vallum.admin.auth import Permission
from vallum.dashboard import charts, stats
from vallum.dashboard.site import Site, Viewer, base
from vallum.monitor import snapshots
from vallum.monitor.analytics import FEATURES
from vallum.monitor.store import EventFilter, EventStore

SHOWN = 20
ACTIVITY_HOURS = 24
COOLDOWNS = {"300": "5 minutes", "3600": "1 hour", "86400": "1 day"}
# Identity keys as behaviour analytics and restrictions name them: user:TENANT/NAME, key:ID, tenant:ID, ip:ADDR
_IDENTITY = re.compile(r"^(user|key|tenant|ip):\S.{0,255}$", re.DOTALL)
_NOTICES = {
    "cooldown": "Cool-down applied.",
    "block": "Block applied.",
    "lifted": "Restriction lifted.",
    "none": "That identity had no restriction.",
}


@dataclass(frozen=True, slots=True)
class Trend:
    name: str  # "risk", or a behaviour feature
    spark: charts.Spark


@dataclass(frozen=True, slots=True)
class Activity:
    filter: dict[str, str]  # the event-list filter for this identity
    chart: charts.Chart | None  # requests per hour, stacked by verdict
    trends: tuple[Trend, ...] = ()  # the risk score, then each feature that was ever above zero


async def show(site: Site, request: Request, viewer: Viewer) -> Response:
    risky: list[dict[str, Any]] = site.services.risks(SHOWN)
    store = site.services.events
    activity = {}
    if store is not None and risky:
        activity = await asyncio.to_thread(recent_activity, store, [r["identity"] for r in risky])
    return site.render(
        request,
        viewer,
        "identities.html",
        risky=risky,
        activity=activity,
        restrictions=site.services.controls.active(),
        may_act=viewer.may(Permission.ACT_ON_IDENTITIES),
        cooldowns=COOLDOWNS,
        hours=ACTIVITY_HOURS,
        notice=_NOTICES.get(request.query_params.get("done", ""), ""),
    )


async def restrict(site: Site, request: Request, viewer: Viewer) -> Response:
    form = viewer.form
    identity = form.get("identity", "").strip()
    if not _IDENTITY.match(identity):
        return site.message(
            request,
            viewer,
            400,
            "Not an identity",
            "Name an identity as user:, key:, tenant: or ip: and a value.",
        )
    reason = form.get("reason", "").strip()[:500] or f"from the dashboard by {viewer.name}"
    controls = site.services.controls
    if form.get("kind") == "block":
        done = controls.block(identity, reason, viewer.name)
    elif form.get("seconds") in COOLDOWNS:
        done = controls.cooldown(identity, float(form["seconds"]), reason, viewer.name)
    else:
        return site.message(
            request, viewer, 400, "Unknown restriction", "Choose a block or a listed cool-down."
        )
    site.services.audit(
        viewer.name, "admin_action", identity, {"restriction": done.to_dict(), "via": "dashboard"}
    )
    return RedirectResponse(f"{base(request)}/identities?done={done.kind}", status_code=303)


async def lift(site: Site, request: Request, viewer: Viewer) -> Response:
    identity = viewer.form.get("identity", "")
    if not site.services.controls.lift(identity):
        return RedirectResponse(f"{base(request)}/identities?done=none", status_code=303)
    site.services.audit(viewer.name, "admin_action", identity, {"restriction": "lifted", "via": "dashboard"})
    return RedirectResponse(f"{base(request)}/identities?done=lifted", status_code=303)


def event_filter(identity: str) -> dict[str, str] | None:
    """The event-list filter for an analytics identity key; None for one that cannot be mapped back
    (names too long for analytics are kept as a digest)."""
    kind, _, value = identity.partition(":")
    if not value or value.startswith("h:"):
        return None
    if kind == "user":
        tenant, slash, user = value.partition("/")
        return {"tenant": tenant, "user": user} if slash else {"user": value}
    field = {"key": "api_key", "tenant": "tenant", "ip": "ip"}.get(kind)
    return None if field is None else {field: value}


def recent_activity(store: EventStore, identities: list[str]) -> dict[str, Activity]:
    bucket_s = 3600
    end = (math.floor(time.time() / bucket_s) + 1) * bucket_s
    start = end - ACTIVITY_HOURS * bucket_s
    out = {}
    for identity in identities:
        trends = risk_trends(store, identity, start, end)
        wanted = event_filter(identity)
        if wanted is None:
            out[identity] = Activity({}, None, trends)
            continue
        where = EventFilter(
            since=start,
            until=end,
            tenant=wanted.get("tenant"),
            user=wanted.get("user"),
            api_key=wanted.get("api_key"),
            ip=wanted.get("ip"),
        )
        traffic = stats.traffic(store.engine, where, start, bucket_s, ACTIVITY_HOURS)
        labels = [datetime.fromtimestamp(s, UTC).strftime("%H:%M") for s in traffic.starts]
        chart = charts.columns(f"Requests of {identity} per hour", labels, traffic.by_action, 480, 120)
        out[identity] = Activity(wanted, chart, trends)
    return out


def risk_trends(store: EventStore, identity: str, start: float, end: float) -> tuple[Trend, ...]:
    """Sparklines of the identity's risk snapshots: the score (on a 0-1 scale), then each feature that had a
    value (on its own scale), in the analytics' order."""
    found = snapshots.history(store.engine, identity, since=start, until=end, limit=24 * 60)
    if not found:
        return ()
    score = [(s.time, s.score) for s in found]
    trends = [Trend("risk", charts.sparkline(f"risk of {identity}", score, start, end, top=1.0))]
    for name in FEATURES:
        readings = [(s.time, float(s.features.get(name, 0.0))) for s in found]
        if any(value for _, value in readings):
            trends.append(Trend(name, charts.sparkline(f"{name} of {identity}", readings, start, end)))
    return tuple(trends)
