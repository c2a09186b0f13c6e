"""Signing in with an admin token, and out again."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vallum.admin.auth import AdminAuth, Permission
from vallum.dashboard.forms import FormError, read_form
from vallum.dashboard.session import COOKIE
from vallum.dashboard.site import Site, Viewer, base, https, same_origin
from vallum.gateway.config import AdminToken
from vallum.gateway.errors import GatewayError

log = logging.getLogger(__name__)


async def form(site: Site, request: Request) -> Response:
    session = site.sessions.read(request.cookies.get(COOKIE))
    if session is not None:
        target = _next(request, request.query_params.get("next")) or site.landing(request, session.role)
        return RedirectResponse(target, status_code=303)
    return _login_page(site, request, 200, "", request.query_params.get("next", ""))


async def submit(site: Site, request: Request) -> Response:
    if not same_origin(request):
        return site.message(request, None, 403, "Form refused", "The form was sent from another site.")
    try:
        fields = await read_form(request)
    except FormError as exc:
        return _login_page(site, request, 400, f"The form could not be read: {exc}.", "")
    wanted = fields.get("next", "")
    holder = identify(site.services.auth, fields.get("token", "").strip())
    if holder is None:
        client = request.client.host if request.client else "?"
        log.warning("dashboard: a sign-in from %s with an invalid admin token was refused", client)
        return _login_page(site, request, 401, "That admin token is not valid.", wanted)
    cookie, _ = site.sessions.issue(holder.id, holder.role)
    target = _next(request, wanted) or site.landing(request, holder.role)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(site.sessions.ttl_s),
        path=base(request) or "/",
        secure=https(request),
        httponly=True,
        samesite="strict",
    )
    return response


async def logout(site: Site, request: Request, viewer: Viewer) -> Response:
    site.sessions.end(viewer.session)
    response = RedirectResponse(f"{base(request)}/login", status_code=303)
    response.delete_cookie(COOKIE, path=base(request) or "/", httponly=True, samesite="strict")
    return response


def identify(auth: AdminAuth, token: str) -> AdminToken | None:
    """The holder of `token`, whatever its role; None for a token that is not valid."""
    if not token:
        return None
    for permission in Permission:  # every role holds at least one permission
        try:
            return auth.require(f"Bearer {token}", permission)
        except GatewayError as exc:
            if exc.status != 403:
                return None
    return None


def _login_page(site: Site, request: Request, status: int, error: str, wanted: str) -> Response:
    return site.render(request, None, "login.html", status, error=error, next=wanted)


def _next(request: Request, wanted: str | None) -> str | None:
    """The page asked for before signing in, if it is a dashboard page: never another site."""
    root = base(request)
    if wanted and wanted.startswith(root + "/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return None
