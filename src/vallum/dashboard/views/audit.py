"""Audit: whether the hash chain verifies, where it breaks if it does not, and the latest entries."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vallum.dashboard.forms import FormError, whole_number
from vallum.dashboard.site import Site, Viewer
from vallum.errors import VallumError


async def show(site: Site, request: Request, viewer: Viewer) -> Response:
    try:
        limit = whole_number(request.query_params.get("limit"), "limit", 100, 1, 1000)
    except FormError as exc:
        return site.message(request, viewer, 400, "Not a limit", str(exc))
    try:
        verification: dict[str, Any] = await asyncio.to_thread(site.services.audit_verify)
        entries = list(reversed(await asyncio.to_thread(site.services.audit_trail, limit)))
    except VallumError as exc:
        return site.message(request, viewer, 503, "Audit log unreadable", str(exc))
    return site.render(request, viewer, "audit.html", verification=verification, entries=entries, limit=limit)
