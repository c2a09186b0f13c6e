"""The live overview: requests and verdicts over time, block rate, top categories and detectors, latency."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vallum.admin.auth import Permission
from vallum.dashboard import charts, stats
from vallum.dashboard.site import Site, Viewer
from vallum.monitor.store import EventFilter, EventStore

# The ranges offered: (seconds shown, bucket seconds, how a bucket's start is labelled)
RANGES = {
    "1h": (3600, 300, "%H:%M"),
    "24h": (86_400, 3600, "%H:%M"),
    "7d": (7 * 86_400, 6 * 3600, "%m-%d %H:%M"),
    "30d": (30 * 86_400, 86_400, "%m-%d"),
}
TOP = 8
REFRESH_S = 15


@dataclass(frozen=True, slots=True)
class Overview:
    traffic: stats.Traffic
    categories: list[tuple[str, int]]
    detectors: stats.DetectorCounts
    latency: dict[str, stats.Percentiles]


async def show(site: Site, request: Request, viewer: Viewer) -> Response:
    if not viewer.may(Permission.READ_EVENTS):  # auditors start where they may look
        return RedirectResponse(site.landing(request, viewer.role), status_code=303)
    chosen = request.query_params.get("range", "24h")
    if chosen not in RANGES:
        chosen = "24h"
    live = request.query_params.get("live") == "1"
    store = site.services.events
    if store is None:
        return site.render(
            request, viewer, "overview.html", store=False, chosen=chosen, ranges=RANGES, live=live
        )
    span_s, bucket_s, label_format = RANGES[chosen]
    buckets = span_s // bucket_s
    end = (math.floor(time.time() / bucket_s) + 1) * bucket_s  # whole buckets, the newest still filling
    start = end - buckets * bucket_s
    found = await asyncio.to_thread(gather, store, start, end, bucket_s, buckets)
    traffic = found.traffic
    labels = [datetime.fromtimestamp(s, UTC).strftime(label_format) for s in traffic.starts]
    by_action = {action: traffic.by_action[action] for action in stats.ACTIONS}
    return site.render(
        request,
        viewer,
        "overview.html",
        store=True,
        chosen=chosen,
        ranges=RANGES,
        live=live,
        refresh_s=REFRESH_S,
        start=start,
        end=end,
        found=found,
        block_rate=traffic.blocked / traffic.total if traffic.total else None,
        rows=list(zip(traffic.starts, traffic.totals, *by_action.values(), strict=True)),
        volume=charts.columns("Requests by verdict", labels, by_action),
        rate=charts.line("Block rate", labels, traffic.block_rates()),
        categories=charts.bars("Top categories", found.categories),
        detectors=charts.bars("Top detectors", found.detectors.counts),
    )


def gather(store: EventStore, start: float, end: float, bucket_s: int, buckets: int) -> Overview:
    """Every number on the overview, read in one go (on a worker thread: the gateway's loop stays free)."""
    where = EventFilter(since=start, until=end)
    categories = [(c, n) for c, n in store.count_by("category", where).items() if c][:TOP]
    return Overview(
        traffic=stats.traffic(store.engine, where, start, bucket_s, buckets),
        categories=categories,
        detectors=stats.top_detectors(store.engine, where, TOP),
        latency=stats.latency(store.engine, where),
    )
