"""Investigations: the filterable event list, and one event with its findings marked in its stored text."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from vallum.admin.policies import PolicyStore, PolicyVersion
from vallum.core.types import Action
from vallum.dashboard.forms import FormError, text_or_none, utc_time, whole_number
from vallum.dashboard.highlight import Segment, segments
from vallum.dashboard.site import Site, Viewer
from vallum.dashboard.stats import ACTIONS
from vallum.monitor.store import EventFilter

PAGE_SIZE = 50
_IDENTITY_FIELDS = ("tenant", "user", "api_key", "ip")
_NO_PAGES = {"newer": None, "older": None, "first": 0, "last": 0}


@dataclass(frozen=True, slots=True)
class StoredText:
    where: str
    segments: list[Segment]
    marked: bool  # False when the event recorded no spans for this text (older gateways)


async def listing(site: Site, request: Request, viewer: Viewer) -> Response:
    q = request.query_params
    shown = {
        name: q.get(name, "") for name in (*_IDENTITY_FIELDS, "category", "action", "since", "until", "q")
    }
    store = site.services.events
    if store is None:
        return _no_store(site, request, viewer)
    try:
        where = EventFilter(
            since=utc_time(q.get("since"), "since"),
            until=utc_time(q.get("until"), "until"),
            tenant=text_or_none(q.get("tenant")),
            user=text_or_none(q.get("user")),
            api_key=text_or_none(q.get("api_key")),
            ip=text_or_none(q.get("ip")),
            action=text_or_none(q.get("action")),
            category=text_or_none(q.get("category")),
            text=text_or_none(q.get("q")),
        )
        if where.action is not None and where.action not in ACTIONS:
            raise FormError(f"action must be one of {', '.join(ACTIONS)}")
        offset = whole_number(q.get("offset"), "offset", 0, 0, 10_000_000)
    except FormError as exc:
        return site.render(
            request,
            viewer,
            "events.html",
            400,
            error=str(exc),
            shown=shown,
            rows=[],
            total=0,
            pages=_NO_PAGES,
        )
    found, total = await asyncio.to_thread(
        lambda: (store.query(where, limit=PAGE_SIZE, offset=offset), store.count(where))
    )
    rows = [(event, *verdict(event)) for event in found]
    filters = {k: v for k, v in shown.items() if v}
    pages = {
        "newer": _page_link(filters, offset - PAGE_SIZE) if offset > 0 else None,
        "older": _page_link(filters, offset + PAGE_SIZE) if offset + PAGE_SIZE < total else None,
        "first": offset + 1 if found else 0,
        "last": offset + len(found),
    }
    return site.render(
        request, viewer, "events.html", error="", shown=shown, rows=rows, total=total, pages=pages
    )


async def detail(site: Site, request: Request, viewer: Viewer) -> Response:
    store = site.services.events
    if store is None:
        return _no_store(site, request, viewer)
    wanted = request.path_params["id"]
    event = await asyncio.to_thread(store.get, wanted)
    if event is None:
        return site.message(request, viewer, 404, "No such event", f"No event has the id {wanted!r}.")
    label = event.get("policy_version")
    versions = await asyncio.to_thread(deciding_versions, site.services.policies, label) if label else []
    stages = {name: _stage(event.get(name)) for name in ("input", "output")}
    return site.render(request, viewer, "event.html", event=event, stages=stages, versions=versions)


def verdict(event: dict[str, Any]) -> tuple[str, list[str]]:
    """The event's action (the stronger of its stages') and its categories, input's first."""
    stages: list[dict[str, Any]] = [_mapping(event.get(name)) for name in ("input", "output")]
    actions = [_action(stage.get("action")) for stage in stages]
    categories = [str(c) for stage in stages for c in stage.get("categories") or ()]
    return max(actions, key=lambda a: a.rank).value, list(dict.fromkeys(categories))


def _action(value: object) -> Action:
    try:
        return Action(str(value))
    except ValueError:
        return Action.ALLOW


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def deciding_versions(policies: PolicyStore, label: str) -> list[PolicyVersion]:
    """The published versions whose policy carries the event's label (a label names the policy's content,
    so a rollback makes several versions share one)."""
    return [v for name in policies.names() for v in policies.history(name) if v.label == label]


def _stage(raw: Any) -> dict[str, Any]:
    stage = _mapping(raw)
    texts = [
        StoredText(
            str(entry.get("where", "")),
            segments(str(entry.get("text", "")), entry.get("spans")),
            "spans" in entry,
        )
        for entry in stage.get("texts") or ()
        if isinstance(entry, dict)
    ]
    return {**stage, "stored_texts": texts}


def _page_link(filters: dict[str, str], offset: int) -> str:
    return "?" + urlencode({**filters, "offset": offset})


def _no_store(site: Site, request: Request, viewer: Viewer) -> Response:
    return site.message(
        request, viewer, 404, "No event store", "The gateway keeps no events here; set events.sink: store."
    )
