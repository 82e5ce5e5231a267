"""The web layer's own routes without a browser (issue #13): the session cookie, the
unsigned body the pages sign, refusals as pages, headers. Fast; the browser tests are
tests/test_web_pages.py and tests/test_web_e2e.py."""

from __future__ import annotations

from typing import Any

from tests import api_fixtures
from tests.api_fixtures import JP, LOT_NDPR, SITE_A, World

api_template = api_fixtures.api_template
world = api_fixtures.world

RECEIPT = {
    "site": SITE_A,
    "owner": JP,
    "lot": LOT_NDPR,
    "quantity": "12.5 t",
    "occurred_at": "2026-01-02T03:04:05Z",
    "supplier": "Lynas Rare Earths",
    "accepted_purity": "99.5",
    "reference": "PO-1",
}


def _prepare(w: World, user: str, kind: str, fields: dict[str, Any]) -> Any:
    return w.client.post("/web/prepare", json={"kind": kind, "fields": fields}, headers=w.auth(user))


def test_prepare_gives_the_unsigned_body_in_the_logs_units(world: World) -> None:
    before = world.entry_count()
    resp = _prepare(world, "olga", "stock.receipt", RECEIPT)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    entry = out["entry"]
    assert out["log_id"] == "test.local/ledger"
    assert entry["kind"] == "stock.receipt" and entry["author"] == "olga"
    assert entry["quantity"] == 12_500_000
    assert set(entry) == {"kind", "id", "author", "created_at", *RECEIPT}
    assert world.entry_count() == before  # prepared, never appended


def test_prepare_names_the_field_the_api_refuses(world: World) -> None:
    resp = _prepare(world, "olga", "stock.receipt", {**RECEIPT, "quantity": "12.5 tonnes please"})
    assert resp.status_code == 422
    assert resp.json()["field"] == "entry.quantity"
    resp = _prepare(world, "olga", "stock.receipt", {**RECEIPT, "site": "not a code"})
    assert resp.status_code == 422 and resp.json()["field"] == "entry.site"
    resp = _prepare(world, "olga", "stock.receipt", {**RECEIPT, "author": "fiona"})
    assert resp.status_code == 422
    resp = _prepare(world, "olga", "genesis", {})
    assert resp.status_code == 422 and resp.json()["field"] == "kind"
    assert world.client.post("/web/prepare", json={"kind": "stock.receipt", "fields": RECEIPT}).status_code == 401


def test_session_cookie_is_the_checked_token(world: World) -> None:
    c = world.client
    assert c.post("/web/session").status_code == 401
    bad = c.post("/web/session", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401 and "set-cookie" not in bad.headers
    ok = c.post("/web/session", headers=world.auth("olga"))
    assert ok.status_code == 200
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    max_age = int(cookie.split("max-age=")[1].split(";")[0])
    assert 0 < max_age <= 900  # the token's own lifetime
    page = c.get("/web/operator")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["cache-control"] == "no-store"
    c.post("/web/logout")
    assert c.get("/web/operator", follow_redirects=False).status_code == 303
    c.cookies.clear()


def test_a_refused_page_is_a_page_and_is_in_the_access_log(world: World) -> None:
    c = world.client
    c.post("/web/session", headers=world.auth("olga"))
    before = len(world.access_events())
    resp = c.get("/web/audit")
    assert resp.status_code == 403
    assert resp.headers["content-type"].startswith("text/html")
    assert "does not give access" in resp.text
    world.svc.refusals.flush()
    events = world.access_events()[before:]
    refused = [e["event"] for e in events if e["event"].get("action") == "refused"]
    assert [(e["actor"], e["route"], e["outcome"], e["reason"]) for e in refused] == [
        ("olga", "/web/audit", "403", "forbidden")
    ], refused
    c.cookies.clear()
    # The auditor's page lists it, filtered by action and actor.
    c.post("/web/session", headers=world.auth("audrey"))
    html = c.get("/web/audit", params={"action": "refused", "actor": "olga"}).text
    assert html.count("<tr><td>") == 1 and "/web/audit" in html and "forbidden" in html
    assert c.get("/web/audit", params={"action": "refused", "actor": "nobody"}).text.count("<tr><td>") == 0
    c.cookies.clear()
    # An expired or forged cookie is sent back to the sign-in page, nothing more.
    c.cookies.set("reserve_session", world.token("olga", now=0))
    resp = c.get("/web/releases", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/?signin=required"
    c.cookies.clear()


def test_docs_and_pages_name_no_other_host(world: World) -> None:
    for path in ("/", "/web/enrol", "/docs"):
        html = world.client.get(path).text
        assert "http://" not in html and "https://" not in html, path
