"""Every page for every role in a real browser (issue #13): the same roles as the API
routes each page shows, no location on any page (only the reveal, after a purpose, to a
cleared user), no request to any host but the service, a local /docs.

Chromium drives the pages (tests/web_browser.py); screenshots go to artefacts/web/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.policy import ADMIN, AUDITOR, MINISTER, OFFICIAL, OPERATOR
from tests import api_fixtures
from tests.api_fixtures import (
    JP,
    LOT_NDPR,
    SITE_A,
    SITES,
    World,
    copy_world,
    location_needles,
    scratch_dir,
)
from tests.web_browser import Browser, chromium, serve, shot, sign_in_with_token

pytestmark = pytest.mark.browser

PAGES = ("/web/operator", "/web/releases", "/web/audit", "/web/audit/report", "/web/reveal", "/web/admin")
# Which role sees which page: the API's roles for the data each page shows (operator:
# POST /stock/{action}; releases: GET /releases/requests; audit and its report: GET
# /log/access(/verify); reveal: POST /sites/{code}/reveal; keys: POST /keys). Written
# out here, not derived, so a change on either side fails this test.
ALLOWED = {
    "/web/operator": {OPERATOR},
    "/web/releases": {OFFICIAL, MINISTER, AUDITOR},
    "/web/audit": {AUDITOR},
    "/web/audit/report": {AUDITOR},
    "/web/reveal": {OPERATOR, OFFICIAL, MINISTER},
    "/web/admin": {ADMIN},
}
# user -> role; the uncleared ones (oscar, felix, mina) too.
USERS = {
    "olga": OPERATOR,
    "oscar": OPERATOR,
    "fiona": OFFICIAL,
    "felix": OFFICIAL,
    "max": MINISTER,
    "mina": MINISTER,
    "audrey": AUDITOR,
    "admin": ADMIN,
}
api_template = api_fixtures.api_template
NEEDLES = sorted({n for site in SITES for n in location_needles(site)})


@pytest.fixture(scope="module")
def web(api_template: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Browser]]:
    with scratch_dir(tmp_path_factory.mktemp("web-pages")) as base:
        w = copy_world(api_template, Path(base) / "home")
        try:
            with serve(w.app) as url, chromium(url) as b:
                yield w, b
        finally:
            w.close()


def _leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


@pytest.mark.parametrize("user", list(USERS))
def test_every_page_for_every_role(web: tuple[World, Browser], user: str) -> None:
    w, b = web
    ctx = b.person()
    try:
        page = ctx.new_page()
        page.goto("/web/operator")
        assert page.url.endswith("/?signin=required"), page.url  # not signed in: to sign-in
        sign_in_with_token(page, w.token(user))
        page.goto("/web/home")
        assert "/web/" in page.url
        for path in PAGES:
            resp = page.goto(path)
            assert resp is not None
            role = USERS[user]
            expected = 200 if role in ALLOWED[path] else 403
            assert resp.status == expected, (user, path, resp.status)
            html = page.content()
            assert _leaks(html) == [], (user, path)
            if expected == 403:
                assert "does not give access" in page.inner_text("main")
            shot(page, f"page-{user}-{path.strip('/').replace('/', '-')}")
        # The navigation offers exactly the pages this role may open.
        page.goto("/web/home")
        links = {a.get_attribute("href") for a in page.query_selector_all("header nav a")}
        assert links == {p for p in PAGES if p != "/web/audit/report" and USERS[user] in ALLOWED[p]}
    finally:
        ctx.close()
    assert b.foreign_requests() == []
    assert b.errors == []


def test_reveal_only_to_the_cleared_after_a_purpose(web: tuple[World, Browser]) -> None:
    """olga (SECRET, at SITE_A) gets SITE_A's location, checked against the signed
    commitment; oscar (RESTRICTED, same site) is refused and sees no location."""
    w, b = web
    for user, granted in (("olga", True), ("oscar", False)):
        ctx = b.person()
        try:
            page = ctx.new_page()
            sign_in_with_token(page, w.token(user))
            page.goto("/web/reveal")
            assert _leaks(page.content()) == []
            page.select_option("#reveal-site", SITE_A)
            page.fill("#reveal-purpose", "short")
            page.click("#reveal button[type=submit]")
            # The API's own message, beside the purpose field.
            page.wait_for_selector("#reveal-purpose-error:not(:empty)")
            assert _leaks(page.content()) == []
            page.fill("#reveal-purpose", "annual physical inspection of the stockpile")
            page.click("#reveal button[type=submit]")
            if granted:
                page.wait_for_selector("#reveal-result:not([hidden])")
                text = page.inner_text("#reveal-result")
                assert "Bunker Aurora-7731" in text
                assert "Checked: this location is the one committed to in the signed log." in text
            else:
                page.wait_for_selector("#status:not(:empty)")
                assert page.inner_text("#status").startswith("Refused: ")
                assert _leaks(page.content()) == []
            shot(page, f"reveal-{user}")
        finally:
            ctx.close()
    assert b.foreign_requests() == []
    assert b.errors == []


def test_docs_are_served_locally(web: tuple[World, Browser]) -> None:
    _w, b = web
    ctx = b.person()
    try:
        page = ctx.new_page()
        page.goto("/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        assert "Reserve ledger" in page.inner_text(".swagger-ui .info .title")
        shot(page, "docs")
        assert page.goto("/redoc").status == 404  # ReDoc would fetch its logo from a CDN
        page.goto("/")
        shot(page, "signin")
        page.goto("/web/enrol")
        shot(page, "enrol")
    finally:
        ctx.close()
    assert b.foreign_requests() == []
    assert b.errors == []
    assert any(u.endswith("/docs/assets/swagger-ui-bundle.js") for u in b.requests)


def test_a_form_by_keyboard_alone(web: tuple[World, Browser]) -> None:
    """Tab through the receipt form, Enter opens the check-what-you-sign dialog with the
    focus on its button, Escape closes it and nothing is signed."""
    w, b = web
    ctx = b.person()
    try:
        page = ctx.new_page()
        sign_in_with_token(page, w.token("olga"))
        page.goto("/web/operator")
        page.focus("#receipt-lot")
        for value in ("NDPR-2025-001", "1 t", None, "Lynas Rare Earths", "99.5", "PO-KEYS-1"):
            if value is not None:
                page.keyboard.type(value)
            page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent").strip() == "Review and sign receipt"
        page.keyboard.press("Enter")
        page.wait_for_selector("#confirm[open]")
        assert page.evaluate("document.activeElement.id") == "confirm-sign"
        assert '"quantity": "1 t"' in page.inner_text("#confirm-body")  # custodial: fields as sent
        shot(page, "keyboard-confirm")
        page.keyboard.press("Escape")
        page.wait_for_selector("#confirm:not([open])", state="hidden")
        page.wait_for_function("document.querySelector('#status').textContent === 'Nothing was signed.'")
    finally:
        ctx.close()
    assert b.errors == []


def test_sign_out_denies_the_token(web: tuple[World, Browser]) -> None:
    w, b = web
    token = w.token("fiona")
    ctx = b.person()
    try:
        page = ctx.new_page()
        sign_in_with_token(page, token)
        page.goto("/web/releases")
        page.click("#signout")
        page.wait_for_url(re.compile(r"/$"))
        assert page.goto("/web/releases").url.endswith("/?signin=required")
        assert page.evaluate("sessionStorage.getItem('reserve.token')") is None
    finally:
        ctx.close()
    assert w.client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert b.errors == []


def test_custodial_count_and_its_second_officer_input(web: tuple[World, Browser]) -> None:
    """A demo user (custodial key): a count with the co-signer input left empty is
    recorded; naming a co-signer is the API's refusal (custodial counts are not
    co-signed), shown beside that input, and nothing is written."""
    w, b = web
    ctx = b.person()
    try:
        page = ctx.new_page()
        sign_in_with_token(page, w.token("olga"))
        page.goto("/web/operator")
        page.click("summary:has-text('Stock count')")
        page.select_option("#count-site", SITE_A)
        page.select_option("#count-owner", JP)
        page.fill("#count-lot", LOT_NDPR)
        page.fill("#count-book", "38 t")
        page.fill("#count-counted", "38 t")
        page.fill("#count-cosigners", "omar")
        page.click("#count button[type=submit]")
        page.wait_for_selector("#confirm[open]")
        page.click("#confirm-sign")
        page.wait_for_selector("#count-cosigners-error:not(:empty)")
        assert "co-signed" in page.inner_text("#count-cosigners-error")
        page.fill("#count-cosigners", "")
        page.click("#count button[type=submit]")
        page.wait_for_selector("#confirm[open]")
        assert "cosigners" not in page.inner_text("#confirm-body")
        page.click("#confirm-sign")
        page.wait_for_selector("#status.ok")
        assert page.inner_text("#status").startswith("Recorded stock.count: seq ")
        shot(page, "custodial-count")
    finally:
        ctx.close()
    assert b.errors == []
