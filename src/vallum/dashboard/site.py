"""What every dashboard page shares: the admin services, sessions, templates, and the check that a page's
visitor is signed in with a role that may see it (and, for a form, that it came from this dashboard).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from vallum.admin.api import AdminServices
from vallum.admin.auth import GRANTS, Permission
from vallum.core.guard import Guard
from vallum.dashboard.forms import FormError, read_form
from vallum.dashboard.session import COOKIE, Session, Sessions
from vallum.dashboard.templating import environment

log = logging.getLogger(__name__)

# No script runs and nothing loads from elsewhere; the pages work offline and cannot be framed.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make browsers send "Origin: null" on our forms
    "cache-control": "no-store",
}

# The pages in navigation order, with the permission each needs; a visitor sees only the ones it may use.
PAGES: tuple[tuple[str, str, Permission], ...] = (
    ("/", "Overview", Permission.READ_EVENTS),
    ("/events", "Events", Permission.READ_EVENTS),
    ("/identities", "Identities", Permission.READ_IDENTITIES),
    ("/policies", "Policies", Permission.READ_POLICIES),
    ("/playground", "Playground", Permission.READ_POLICIES),
    ("/audit", "Audit", Permission.READ_AUDIT),
)

_REFUSALS = {
    Permission.READ_EVENTS: "see traffic and events",
    Permission.READ_IDENTITIES: "see identities and their risk",
    Permission.ACT_ON_IDENTITIES: "cool down or block identities",
    Permission.READ_POLICIES: "read policies",
    Permission.WRITE_POLICIES: "try or change draft policies",
    Permission.READ_AUDIT: "read the audit trail",
}


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in visitor: who (the admin token's id), the role, and the form token of the session."""

    session: Session
    csrf: str
    form: dict[str, str]  # the posted fields, already read, for POST requests; empty for GET

    @property
    def name(self) -> str:
        return self.session.token_id

    @property
    def role(self) -> str:
        return self.session.role

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


View = Callable[["Site", Request, Viewer], Awaitable[Response]]


class Site:
    def __init__(
        self, services: AdminServices, guards: Callable[[], dict[str, Guard]], sessions: Sessions
    ) -> None:
        self.services = services
        self.guards = guards
        self.sessions = sessions
        self.templates: Environment = environment()

    def page(self, permission: Permission | None, view: View) -> Callable[[Request], Awaitable[Response]]:
        """`view` behind the session and role checks (None: any signed-in role), and the form checks for
        POST."""

        async def endpoint(request: Request) -> Response:
            session = self.sessions.read(request.cookies.get(COOKIE))
            if session is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                where = "" if request.method != "GET" else f"?next={quote(target, safe='')}"
                return RedirectResponse(f"{base(request)}/login{where}", status_code=303)
            viewer = Viewer(session, self.sessions.csrf_token(session), {})
            if permission is not None and not viewer.may(permission):
                return self.refuse(request, viewer, permission)
            if request.method == "POST":
                problem = await self._form_problem(request, viewer)
                if problem is not None:
                    return self.message(request, viewer, 403, "Form refused", problem)
            return await view(self, request, viewer)

        return endpoint

    async def _form_problem(self, request: Request, viewer: Viewer) -> str | None:
        if not same_origin(request):
            return "The form was sent from another site."
        try:
            viewer.form.update(await read_form(request))
        except FormError as exc:
            return f"The form could not be read: {exc}."
        if not self.sessions.csrf_valid(viewer.session, viewer.form.get("csrf")):
            return "The form's session token is missing or stale; reload the page and try again."
        return None

    def render(
        self, request: Request, viewer: Viewer | None, template: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        root = base(request)
        nav = [] if viewer is None else [(root + path, title) for path, title, p in PAGES if viewer.may(p)]
        html = self.templates.get_template(template).render(
            base=root, viewer=viewer, nav=nav, here=request.url.path, **values
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def message(
        self, request: Request, viewer: Viewer | None, status: int, title: str, text: str
    ) -> Response:
        return self.render(request, viewer, "message.html", status, title=title, text=text)

    def refuse(self, request: Request, viewer: Viewer, permission: Permission) -> Response:
        log.info("dashboard: %s (%s) refused %s", viewer.name, viewer.role, request.url.path)
        what = _REFUSALS.get(permission, permission.value)
        return self.message(request, viewer, 403, "Not allowed", f"The {viewer.role} role may not {what}.")

    def landing(self, request: Request, role: str) -> str:
        """Where a role starts: the overview, or for auditors (who see no traffic) the audit page."""
        permitted = {path for path, _, p in PAGES if p in GRANTS[role]}
        path = next((path for path in ("/", "/audit") if path in permitted), "/policies")
        return base(request) + path


def base(request: Request) -> str:
    """Where the dashboard is mounted (e.g. /dashboard), under any root path the gateway is served at."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def same_origin(request: Request) -> bool:
    """A browser's form post names the page's origin; one from another site is refused (CSRF defence in
    depth, besides the form token). Clients that send no Origin are not browsers on another site. Only
    host and port are compared: behind a TLS-terminating proxy the gateway itself sees plain HTTP."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def https(request: Request) -> bool:
    """Whether the browser reached the dashboard over HTTPS (directly, or through a proxy that says so)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
