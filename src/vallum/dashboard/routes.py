"""The dashboard's routes, for the gateway to mount at /dashboard: `Mount("/dashboard", routes=...)`."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from vallum.admin.api import AdminServices
from vallum.admin.auth import Permission
from vallum.core.guard import Guard
from vallum.dashboard.session import Sessions
from vallum.dashboard.site import Site
from vallum.dashboard.views import audit, events, identities, login, overview, playground, policies

SESSION_TTL_S = 8 * 3600  # a working day; a restart (new secret) ends every session sooner
STATIC = Path(__file__).with_name("static")


def dashboard_routes(
    services: AdminServices,
    guards: Callable[[], dict[str, Guard]],
    *,
    secret: bytes | None = None,
    session_ttl_s: float = SESSION_TTL_S,
) -> list[BaseRoute]:
    """The pages, their static files and the sign-in form, under the same roles as the admin API.

    `guards` returns the gateway's guards by policy name as they are now (a published policy replaces one),
    for the playground. `secret` signs session cookies; by default a random one per process, so sessions
    end when the gateway restarts and several replicas need sticky sessions or a shared secret.
    """
    site = Site(services, guards, Sessions(secret or secrets.token_bytes(32), session_ttl_s))
    pages = [
        ("/", "GET", None, overview.show),  # sends auditors on to a page their role may see
        ("/events", "GET", Permission.READ_EVENTS, events.listing),
        ("/events/{id}", "GET", Permission.READ_EVENTS, events.detail),
        ("/identities", "GET", Permission.READ_IDENTITIES, identities.show),
        ("/identities/restrict", "POST", Permission.ACT_ON_IDENTITIES, identities.restrict),
        ("/identities/lift", "POST", Permission.ACT_ON_IDENTITIES, identities.lift),
        ("/policies", "GET", Permission.READ_POLICIES, policies.index),
        ("/policies/{name}", "GET", Permission.READ_POLICIES, policies.detail),
        ("/playground", "GET", Permission.READ_POLICIES, playground.form),
        ("/playground", "POST", Permission.READ_POLICIES, playground.scan),
        ("/audit", "GET", Permission.READ_AUDIT, audit.show),
        ("/logout", "POST", None, login.logout),
    ]

    async def login_form(request: Request) -> Response:
        return await login.form(site, request)

    async def login_submit(request: Request) -> Response:
        return await login.submit(site, request)

    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="dashboard-static"),
        *(
            Route(path, site.page(permission, view), methods=[method])
            for path, method, permission, view in pages
        ),
    ]
