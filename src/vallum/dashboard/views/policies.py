"""Policies: the one each name applies now, its published history, and the diff between two versions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import yaml
from starlette.requests import Request
from starlette.responses import Response

from vallum.admin.policies import PolicyStore, PolicyStoreError, PolicyVersion
from vallum.core.guard import Guard
from vallum.dashboard.forms import FormError, whole_number
from vallum.dashboard.site import Site, Viewer


@dataclass(frozen=True, slots=True)
class Active:
    name: str
    label: str  # what events record as their policy_version
    published: PolicyVersion | None  # the newest published version, when the admin API made one
    versions: int


async def index(site: Site, request: Request, viewer: Viewer) -> Response:
    active = await asyncio.to_thread(_active, site.services.policies, site.guards())
    return site.render(request, viewer, "policies.html", policies=active)


async def detail(site: Site, request: Request, viewer: Viewer) -> Response:
    name = request.path_params["name"]
    guard = site.guards().get(name)
    store = site.services.policies
    history = await asyncio.to_thread(store.history, name)
    if guard is None and not history:
        return site.message(request, viewer, 404, "No such policy", f"No policy is named {name!r}.")
    q = request.query_params
    newest = history[0].version if history else 0
    try:
        shown_version = whole_number(q.get("version"), "version", newest, 1 if history else 0, newest)
        old = whole_number(q.get("from"), "from", 0, 0, newest)
        new = whole_number(q.get("to"), "to", newest, 0, newest)
    except FormError as exc:
        return site.message(request, viewer, 400, "Not a version", str(exc))
    shown = next((v for v in history if v.version == shown_version), None)
    if shown is not None:
        text, source = shown.text, f"published version {shown.version}"
    else:  # nothing published: the gateway applies the file (or built-in) policy it started with
        assert guard is not None
        text = yaml.safe_dump(guard.policy.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        source = "the gateway's configuration (every setting, defaults included)"
    diff = await asyncio.to_thread(_diff_lines, store, name, old, new) if old and new and old != new else []
    return site.render(
        request,
        viewer,
        "policy.html",
        name=name,
        label=guard.policy.label if guard else None,
        history=history,
        text=text,
        source=source,
        shown_version=shown_version,
        old=old,
        new=new,
        diff=diff,
    )


def _active(store: PolicyStore, guards: dict[str, Guard]) -> list[Active]:
    names = sorted(set(guards) | set(store.names()), key=lambda n: (n != "default", n))
    out = []
    for name in names:
        history = store.history(name)
        guard = guards.get(name)
        label = guard.policy.label if guard else (history[0].label if history else "-")
        out.append(Active(name, label, history[0] if history else None, len(history)))
    return out


def _diff_lines(store: PolicyStore, name: str, old: int, new: int) -> list[tuple[str, str]]:
    """The unified diff as (kind, line) pairs, kind being add, del, hunk, file or same."""
    try:
        diff = store.diff(name, old, new)
    except PolicyStoreError:
        return []
    out = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        else:
            kind = {"+": "add", "-": "del"}.get(line[:1], "same")
        out.append((kind, line))
    return out
