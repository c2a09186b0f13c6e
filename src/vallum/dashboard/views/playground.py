"""The playground: scan a pasted text with a policy in force or a draft, and see the verdict and spans."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from vallum.admin.auth import Permission
from vallum.core.guard import Guard
from vallum.core.policy import Policy
from vallum.core.types import Source, Verdict
from vallum.dashboard.highlight import Segment, finding_spans, segments
from vallum.dashboard.site import Site, Viewer
from vallum.errors import VallumError

MAX_TEXT = 100_000
DRAFT = "(draft)"


async def form(site: Site, request: Request, viewer: Viewer) -> Response:
    return _page(site, request, viewer, 200, {"policy": "default", "source": "user", "text": "", "draft": ""})


async def scan(site: Site, request: Request, viewer: Viewer) -> Response:
    fields = {name: viewer.form.get(name, "") for name in ("policy", "source", "text", "draft")}
    try:
        source = Source(fields["source"])
    except ValueError:
        return _page(site, request, viewer, 400, fields, error="Choose one of the listed sources.")
    if len(fields["text"]) > MAX_TEXT:
        return _page(site, request, viewer, 400, fields, error=f"Paste at most {MAX_TEXT:,} characters.")
    if fields["policy"] == DRAFT:
        # Building a guard from any policy text loads whatever detectors it names: changing policy is
        # the admin's right, so only an admin may try a draft.
        if not viewer.may(Permission.WRITE_POLICIES):
            return site.refuse(request, viewer, Permission.WRITE_POLICIES)
        try:
            guard = await asyncio.to_thread(_draft_guard, fields["draft"])
        except VallumError as exc:
            return _page(site, request, viewer, 400, fields, error=f"The draft policy is not valid: {exc}")
    else:
        found = site.guards().get(fields["policy"])
        if found is None:
            return _page(site, request, viewer, 400, fields, error="Choose one of the listed policies.")
        guard = found
    verdict: Verdict = await asyncio.to_thread(guard.scan, fields["text"], source)
    highlighted = segments(fields["text"], finding_spans(verdict.findings))
    return _page(site, request, viewer, 200, fields, verdict=verdict, highlighted=highlighted)


def _draft_guard(text: str) -> Guard:
    return Guard(Policy.from_yaml(text, filename="draft policy"))


def _page(
    site: Site,
    request: Request,
    viewer: Viewer,
    status: int,
    fields: dict[str, str],
    *,
    error: str = "",
    verdict: Verdict | None = None,
    highlighted: list[Segment] | None = None,
) -> Response:
    policies = sorted(site.guards(), key=lambda n: (n != "default", n))
    return site.render(
        request,
        viewer,
        "playground.html",
        status,
        fields=fields,
        policies=policies,
        labels={name: guard.policy.label for name, guard in site.guards().items()},
        may_draft=viewer.may(Permission.WRITE_POLICIES),
        draft_name=DRAFT,
        sources=[s.value for s in Source],
        error=error,
        verdict=verdict,
        highlighted=highlighted,
    )
