"""The dashboard in a real browser (headless Chromium driven by Playwright) and over plain HTTP.

One gateway with seeded events serves every test of this module; each browser test signs in afresh in
its own browser context. Screenshots go to artifacts/dashboard/ for CI to keep.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from tests.dashboard_env import (
    ATTACK,
    DETAIL_ID,
    DETAIL_TEXT,
    INJECTION_PART,
    OLD_ALLOWED,
    OLD_BLOCKED,
    SECRET_PART,
    TOKENS,
    Seeded,
    chat,
    dashboard_url,
    seeded_dashboard,
)
from tests.gateway_env import running_gateway
from vallum.gateway.identity import digest
from vallum.monitor.database import make_engine
from vallum.monitor.snapshots import Snapshot
from vallum.monitor.snapshots import write as write_snapshots

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
]
PAGES = [
    "/",
    "/events",
    f"/events/{DETAIL_ID}",
    "/identities",
    "/policies",
    "/policies/team-strict",
    "/playground",
]
PAGES += ["/audit"]
# (method, path, a role refused, a role allowed)
REFUSALS = [
    ("GET", "/events", "auditor", "analyst"),
    ("GET", f"/events/{DETAIL_ID}", "auditor", "analyst"),
    ("GET", "/identities", "auditor", "analyst"),
    ("POST", "/identities/restrict", "analyst", "admin"),
    ("POST", "/identities/lift", "analyst", "admin"),
    ("GET", "/audit", "analyst", "auditor"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with seeded_dashboard(tmp_path_factory.mktemp("dashboard")) as seeded:
        yield seeded


# ---- in the browser -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def unavailable(reason: str) -> NoReturn:
    """Skip the browser tests, or fail them where CI says every test must run."""
    if os.environ.get("VALLUM_REQUIRE_SERVICES"):
        pytest.fail(f"{reason}, and VALLUM_REQUIRE_SERVICES is set")
    pytest.skip(reason)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    context.close()
    assert dialogs == [], "a page ran script from stored text"


def sign_in(page: Any, site: Seeded, role: str, start: str = "/") -> None:
    page.goto(site.url + start)
    page.fill("#token", TOKENS[role])
    submit(page)


def submit(page: Any, selector: str = "main form button[type=submit]") -> None:
    """Click a button that sends a form, and wait for the page it leads to."""
    with page.expect_navigation():
        page.click(selector)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_signing_in_leads_from_the_login_page_to_the_page_asked_for(site: Seeded, page: Any) -> None:
    page.goto(site.url + "/events")
    assert page.url.startswith(site.url + "/login")
    page.fill("#token", "not-a-token")
    submit(page)
    assert page.locator(".error").inner_text() == "That admin token is not valid."
    shot(page, "01-login-refused")
    page.fill("#token", TOKENS["analyst"])
    submit(page)
    assert page.url == site.url + "/events"
    assert page.locator(".who").inner_text().startswith("analyst-1")
    assert [a.inner_text() for a in page.locator("header nav a").all()] == [
        "Overview",
        "Events",
        "Identities",
        "Policies",
        "Playground",
    ]


def test_the_overview_charts_show_the_seeded_numbers(site: Seeded, page: Any) -> None:
    sign_in(page, site, "analyst")
    assert page.locator("h1").inner_text() == "Overview"
    label = datetime.fromtimestamp(site.old_bucket, UTC).strftime("%H:%M")
    seeded = page.locator(f'#volume rect[data-label="{label}"]')
    assert {r.get_attribute("data-series"): r.get_attribute("data-value") for r in seeded.all()} == {
        "allow": str(OLD_ALLOWED),
        "block": str(OLD_BLOCKED + 1),  # the detail event was blocked too
    }
    assert page.locator(f'#rate circle[data-label="{label}"]').get_attribute("data-value") == "0.3333"
    page.click("#numbers summary")
    rows = page.locator("#numbers tbody tr").all()
    totals = [int(row.locator("td").nth(1).inner_text()) for row in rows]
    blocked = [int(row.locator("td").nth(5).inner_text()) for row in rows]
    assert page.locator("#total-requests .value").inner_text() == str(sum(totals))
    assert page.locator("#blocked-requests .value").inner_text() == str(sum(blocked))
    assert page.locator("#block-rate .value").inner_text() == f"{sum(blocked) / sum(totals):.1%}"
    categories = page.locator("#categories rect")
    assert categories.first.get_attribute("data-label") == "injection"
    assert "injection_signatures" in [
        r.get_attribute("data-label") for r in page.locator("#detectors rect").all()
    ]
    guard_p50 = page.locator("#latency-guard td").first.inner_text()
    assert re.fullmatch(r"[\d.,]+ ms", guard_p50)
    shot(page, "02-overview")


def test_events_filter_by_identity_action_time_and_text(site: Seeded, page: Any) -> None:
    sign_in(page, site, "analyst", "/events")
    page.fill("input[name=user]", "mallory")
    page.select_option("select[name=action]", "block")
    submit(page, "form.filters button[type=submit]")
    rows = page.locator("table.events tbody tr")
    assert rows.count() == 3
    assert all("mallory" in r.inner_text() and "block" in r.inner_text() for r in rows.all())
    shot(page, "03-events-filtered")

    page.goto(site.url + "/events")
    page.fill("input[name=q]", "capital of FRANCE")
    submit(page, "form.filters button[type=submit]")
    assert all("user alice" in r.inner_text() for r in rows.all())
    assert rows.count() == 3

    page.goto(site.url + "/events")
    page.fill("input[name=since]", _local(site.old_bucket))
    page.fill("input[name=until]", _local(site.old_bucket + 3600))
    submit(page, "form.filters button[type=submit]")
    assert rows.count() == OLD_ALLOWED + OLD_BLOCKED + 1
    assert (
        page.locator("#match-count").inner_text().startswith(f"{OLD_ALLOWED + OLD_BLOCKED + 1} events match")
    )

    page.goto(site.url + "/events?category=secrets")
    assert rows.count() >= 2 and all("secrets" in r.inner_text() for r in rows.all())


def test_an_event_shows_its_findings_as_marked_spans_in_the_redacted_text(site: Seeded, page: Any) -> None:
    sign_in(page, site, "analyst", "/events?user=eve-seeded")
    submit(page, "table.events tbody tr a")
    assert page.url == f"{site.url}/events/{DETAIL_ID}"
    marks = page.locator("#stage-input pre.text mark")
    assert [(m.inner_text(), m.get_attribute("data-categories")) for m in marks.all()] == [
        (INJECTION_PART, "injection"),
        (SECRET_PART, "secrets"),
    ]
    assert page.locator("#stage-input pre.text").inner_text() == DETAIL_TEXT  # markup in the text stays text
    assert page.locator("#stage-input pre.text script").count() == 0
    assert "team-strict v1" in page.locator("#policy-version").inner_text()
    assert site.strict_label in page.locator("#policy-version").inner_text()
    shot(page, "04-event-detail")

    page.goto(site.url + "/events?user=mallory&action=block")
    submit(page, "table.events tbody tr a")
    assert "injection" in page.locator("#stage-input table.findings").inner_text()
    assert ATTACK in page.locator("#stage-input pre.text").inner_text()


def test_the_playground_scans_text_with_the_policy_in_force(site: Seeded, page: Any) -> None:
    sign_in(page, site, "analyst", "/playground")
    assert page.locator("option", has_text="draft below").count() == 0  # drafts are for admins
    page.fill("#text", f"{ATTACK} Also AKIAIOSFODNN7EXAMPLE.")
    page.select_option("#policy", "default")
    submit(page, "form.playground button[type=submit]")
    assert page.locator("#result h2 .badge").inner_text() == "block"
    categories = {m.get_attribute("data-categories") for m in page.locator("#result pre.text mark").all()}
    assert {"injection", "secrets"} <= {c for joined in categories for c in (joined or "").split()}
    assert page.locator("#result pre.text").inner_text() == f"{ATTACK} Also AKIAIOSFODNN7EXAMPLE."
    shot(page, "05-playground")


def test_an_admin_tries_a_draft_policy_in_the_playground(site: Seeded, page: Any) -> None:
    sign_in(page, site, "admin", "/playground")
    page.fill("#text", ATTACK)
    page.select_option("#policy", "(draft)")
    page.click("details summary")
    page.fill("#draft", "version: my-draft\nsources:\n  user:\n    enabled: false\n")
    submit(page, "form.playground button[type=submit]")
    assert page.locator("#result h2 .badge").inner_text() == "allow"
    assert "my-draft" in page.locator("#result").inner_text()
    page.fill("#draft", "paranoia: 9\n")
    submit(page, "form.playground button[type=submit]")
    assert "paranoia" in page.locator(".error").inner_text()


def test_an_admin_cools_down_a_risky_identity_in_one_click(site: Seeded, page: Any) -> None:
    sign_in(page, site, "admin", "/identities")
    mallory = page.locator('article.identity[data-identity="user:mallory"]')
    assert mallory.locator("table.features").inner_text().count("\n") >= 3
    assert mallory.locator("rect.s-block").count() >= 1  # the activity chart shows the blocked attempts
    shot(page, "06-identities")
    with page.expect_navigation():
        mallory.locator("button[value=cooldown]").click()
    assert page.locator(".notice").inner_text() == "Cool-down applied."
    restriction = page.locator('#restrictions tr[data-identity="user:mallory"]')
    assert "cooldown" in restriction.inner_text() and "admin-1" in restriction.inner_text()
    assert chat(site.gw, "Hello", "mallory") == 429
    with page.expect_navigation():
        restriction.locator("button", has_text="Lift").click()
    assert page.locator(".notice").inner_text() == "Restriction lifted."
    assert chat(site.gw, "Hello", "mallory") == 200
    trail = httpx.get(
        f"{site.gw.url}/admin/audit", headers={"authorization": f"Bearer {TOKENS['auditor']}"}
    ).json()["entries"]
    assert [e["detail"].get("via") for e in trail if e["target"] == "user:mallory"] == ["dashboard"] * 2


def test_an_identity_shows_its_risk_and_features_over_time(site: Seeded, page: Any) -> None:
    # Six hours of one snapshot every ten minutes, an hour ago and before, rising as a probe campaign grows.
    minute = time.time() // 60 * 60
    seeded = [
        Snapshot(
            "user:mallory",
            minute - 3600 - 600 * k,
            score=round(0.9 - k * 0.02, 2),
            level="high",
            features={"burst": 0.0, "probing": float(36 - k), "output": 0.0},
            contributions={"burst": 0.0, "probing": 0.5, "output": 0.0},
        )
        for k in range(36)
    ]
    engine = make_engine(site.gw.gateway.config.database_url)
    write_snapshots(engine, seeded)
    engine.dispose()
    sign_in(page, site, "analyst", "/identities")
    history = page.locator('article.identity[data-identity="user:mallory"] table.history')
    risk = history.locator('tr[data-trend="risk"]')
    assert int(risk.locator("svg.spark").get_attribute("data-readings")) >= 36
    # Nearly six hours of readings in slices of a quarter of an hour: a point for each slice.
    assert len(risk.locator("polyline").get_attribute("points").split()) >= 23
    probing = history.locator('tr[data-trend="probing"]')
    assert probing.locator("td.num").all_inner_texts()[1] == "36.00"  # its peak
    assert history.locator('tr[data-trend="output"]').count() == 0  # never above zero: no line
    shot(page, "06b-identity-history")


def test_policies_show_the_active_version_its_history_and_a_diff(site: Seeded, page: Any) -> None:
    sign_in(page, site, "auditor", "/policies")
    row = page.locator('tr[data-policy="team-strict"]')
    assert "published v2" in row.inner_text()
    with page.expect_navigation():
        row.locator("a").click()
    assert page.locator("#history tbody tr").count() == 2
    page.select_option("select[name=from]", "1")
    page.select_option("select[name=to]", "2")
    submit(page, "#diff-form button")
    assert page.locator("#diff .d-del").all_inner_texts() == ["-version: strict", "-paranoia: 2"]
    assert "+version: lenient" in page.locator("#diff .d-add").all_inner_texts()
    shot(page, "07-policy-diff")


def test_the_audit_page_verifies_the_chain_and_names_a_tampered_entry(site: Seeded, page: Any) -> None:
    sign_in(page, site, "auditor")
    assert page.url == site.url + "/audit"  # auditors start here: they see no traffic
    assert page.locator("#verification h2").inner_text() == "Chain verified"
    actions = {r.get_attribute("data-action") for r in page.locator("#trail tbody tr").all()}
    assert {"policy_change", "block"} <= actions
    shot(page, "08-audit-verified")
    database = Path(site.gw.gateway.config.database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as db:
        (target,) = db.execute("SELECT target FROM vallum_audit WHERE seq = 1").fetchone()
        db.execute("UPDATE vallum_audit SET target = 'someone-else' WHERE seq = 1")
    try:
        page.reload()
        assert page.locator("#verification h2").inner_text() == "Chain broken: altered"
        assert "seq 1" in page.locator("#verification").inner_text()
        shot(page, "09-audit-tampered")
    finally:
        with sqlite3.connect(database) as db:
            db.execute("UPDATE vallum_audit SET target = ? WHERE seq = 1", (target,))


def test_a_role_without_the_right_is_refused_a_page(site: Seeded, page: Any) -> None:
    sign_in(page, site, "analyst", "/audit")
    assert page.locator("h1").inner_text() == "Not allowed"
    assert page.locator("main p").first.inner_text() == "The analyst role may not read the audit trail."
    assert page.locator("header nav a", has_text="Audit").count() == 0
    shot(page, "10-refused")


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M")


# ---- over plain HTTP ------------------------------------------------------------------------------------


def signed_in(site: Seeded, role: str) -> httpx.Client:
    client = httpx.Client(base_url=site.url)
    answer = client.post("/login", data={"token": TOKENS[role]})
    assert answer.status_code == 303
    return client


def csrf(client: httpx.Client) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/playground").text)
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_visitors_without_a_session_to_the_login_page(site: Seeded, path: str) -> None:
    answer = httpx.get(site.url + path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/dashboard/login?next=")


def test_a_wrong_token_is_refused_at_login_without_a_session(site: Seeded) -> None:
    answer = httpx.post(site.url + "/login", data={"token": "adm-dash-token-not"})
    assert answer.status_code == 401 and "set-cookie" not in answer.headers
    assert httpx.post(site.url + "/login", data={"token": ""}).status_code == 401


def test_the_session_cookie_is_signed_httponly_strict_and_holds_no_token(site: Seeded) -> None:
    answer = httpx.post(site.url + "/login", data={"token": TOKENS["analyst"]})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert TOKENS["analyst"] not in cookie
    value = answer.cookies["vallum_dashboard"]
    assert httpx.get(site.url + "/events", cookies={"vallum_dashboard": value}).status_code == 200
    promoted = value.replace(".analyst.", ".admin.")
    assert httpx.get(site.url + "/audit", cookies={"vallum_dashboard": promoted}).status_code == 303


@pytest.mark.parametrize(("method", "path", "refused", "allowed"), REFUSALS)
def test_each_page_refuses_a_role_without_its_permission(
    site: Seeded, method: str, path: str, refused: str, allowed: str
) -> None:
    denied = signed_in(site, refused)
    fields = {"csrf": csrf(denied), "identity": "user:nobody", "seconds": "300", "kind": "cooldown"}
    answer = denied.request(method, path, data=fields if method == "POST" else None)
    assert answer.status_code == 403 and "Not allowed" in answer.text
    permitted = signed_in(site, allowed)
    fields["csrf"] = csrf(permitted)
    assert permitted.request(method, path, data=fields if method == "POST" else None).status_code in (
        200,
        303,
    )
    site.gw.gateway.controls.lift("user:nobody")


def test_forms_need_the_session_form_token_and_this_origin(site: Seeded) -> None:
    client = signed_in(site, "admin")
    fields = {"identity": "user:csrf-target", "seconds": "300", "kind": "cooldown"}
    assert client.post("/identities/restrict", data=fields).status_code == 403
    assert client.post("/identities/restrict", data={**fields, "csrf": "forged"}).status_code == 403
    other = signed_in(site, "admin")
    assert client.post("/identities/restrict", data={**fields, "csrf": csrf(other)}).status_code == 403
    token = csrf(client)
    elsewhere = {"origin": "http://attacker.example"}
    assert (
        client.post("/identities/restrict", data={**fields, "csrf": token}, headers=elsewhere).status_code
        == 403
    )
    assert (
        client.post("/playground", data={"text": "hi", "source": "user", "policy": "default"}).status_code
        == 403
    )
    assert site.gw.gateway.controls.check(["user:csrf-target"]) is None
    assert client.post("/identities/restrict", data={**fields, "csrf": token}).status_code == 303
    assert site.gw.gateway.controls.check(["user:csrf-target"]) is not None
    site.gw.gateway.controls.lift("user:csrf-target")


def test_signing_out_ends_the_session_even_for_a_copied_cookie(site: Seeded) -> None:
    client = signed_in(site, "analyst")
    copied = client.cookies["vallum_dashboard"]
    assert client.post("/logout", data={"csrf": csrf(client)}).status_code == 303
    assert httpx.get(site.url + "/events", cookies={"vallum_dashboard": copied}).status_code == 303


def test_signing_in_never_redirects_off_the_dashboard(site: Seeded) -> None:
    for wanted in ("//attacker.example/", "https://attacker.example/", "/admin/events", "/dashboard\\x"):
        answer = httpx.post(site.url + "/login", data={"token": TOKENS["analyst"], "next": wanted})
        assert answer.headers["location"] == "/dashboard/"


def test_pages_forbid_scripts_framing_and_caching(site: Seeded) -> None:
    answer = signed_in(site, "analyst").get("/")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "script-src" not in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"


def test_the_playground_refuses_drafts_from_roles_that_cannot_change_policy(site: Seeded) -> None:
    client = signed_in(site, "analyst")
    fields = {
        "csrf": csrf(client),
        "text": "hi",
        "source": "user",
        "policy": "(draft)",
        "draft": "version: x\n",
    }
    assert client.post("/playground", data=fields).status_code == 403


def test_an_unknown_event_is_a_404_page(site: Seeded) -> None:
    answer = signed_in(site, "analyst").get("/events/no-such-event")
    assert answer.status_code == 404 and "No such event" in answer.text


def test_bad_filters_are_explained_not_failed(site: Seeded) -> None:
    client = signed_in(site, "analyst")
    answer = client.get("/events", params={"since": "yesterday", "user": "<b>x</b>"})
    assert answer.status_code == 400 and "since must be a date and time" in answer.text
    assert "&lt;b&gt;x&lt;/b&gt;" in answer.text and "<b>x</b>" not in answer.text
    assert client.get("/events", params={"user": "alice' OR '1'='1"}).text.count("data-event=") == 0


def test_without_an_event_store_the_pages_say_so(tmp_path: Path) -> None:
    tokens = [{"id": "analyst-1", "sha256": digest(TOKENS["analyst"]), "role": "analyst"}]
    with running_gateway(tmp_path, admin={"tokens": tokens}) as gw, dashboard_url(gw) as url:
        client = httpx.Client(base_url=url)
        client.post("/login", data={"token": TOKENS["analyst"]})
        assert "keeps no events here" in client.get("/").text
        assert client.get("/events").status_code == 404
        assert client.get("/identities").status_code == 200
