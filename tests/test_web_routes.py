"""The web layer's own routes without a browser (issue #13): the session cookie, the
unsigned body the pages sign, refusals as pages, headers, references and the operator's
inbox. Fast; the browser tests are tests/test_web_pages.py, tests/test_web_e2e.py and
tests/test_web_forms.py."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ledger.store.schema import entries
from tests import api_fixtures
from tests.api_fixtures import JP, LOT_NDPR, NDPR, SITE_A, World
from tests.release_helpers import authorise, set_policy

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


def test_order_pages_take_references_and_the_inbox_offers_the_executing_form(world: World) -> None:
    """Issue #12 in the pages: the order report page takes what the API's report route
    takes (seq, id, an 8+ character prefix, the request), refuses as that route does, and
    the operator's page offers an executable order in the form of the movement its
    regime needs (a loan order: the loan form) at the operator's own sites only."""
    led = world.svc.ledger
    set_policy(led, JP, NDPR, minister="max", quorum=1)
    order_id = authorise(led, owner=JP, material=NDPR, quantity=3_000_000, recipient="Shin-Etsu Chemical",
                         regime="loan", sites=[SITE_A], requester="fiona", approvers=["felix"], minister="max")  # fmt: skip
    c = world.client
    c.post("/web/session", headers=world.auth("max"))
    with led.engine.connect() as conn:
        seq = conn.execute(select(entries.c.seq).where(entries.c.entry_id == order_id)).scalar_one()
    for ref in (order_id, order_id[:8], str(seq)):
        page = c.get(f"/web/orders/{ref}")
        assert page.status_code == 200, (ref, page.text)
        assert order_id in page.text and "3 t" in page.text
    unknown = c.get("/web/orders/0123456789abcdef")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    malformed = c.get("/web/orders/not-an-id")
    assert malformed.status_code == 422 and "not-an-id" not in malformed.text
    c.cookies.clear()
    c.post("/web/session", headers=world.auth("olga"))
    html = c.get("/web/operator").text
    assert f'data-form="loan" data-order="{order_id}" data-site="{SITE_A}"' in html
    assert 'data-borrower="Shin-Etsu Chemical" data-quantity="3 t"' in html
    c.cookies.clear()
    c.post("/web/session", headers=world.auth("omar"))  # operator at another site
    assert order_id not in c.get("/web/operator").text
    c.cookies.clear()


def test_prepare_makes_the_new_forms_kinds(world: World) -> None:
    resp = _prepare(world, "fiona", "price.observed", {"index": "IDX-NDPR", "material": NDPR, "value": "131250.5",
                    "currency": "USD", "observed_at": "2026-01-02T03:04:05Z", "source": "Asian Metal"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json()["entry"]["kind"] == "price.observed"
    resp = _prepare(world, "olga", "stock.conversion", {"site": SITE_A, "owner": JP, "lot_in": LOT_NDPR,
                    "quantity_in": "1 t", "lot_out": "NDPR-MET-001", "quantity_out": "800",
                    "occurred_at": "2026-01-02T03:04:05Z", "processor": "Santoku"})  # fmt: skip
    assert resp.status_code == 422 and resp.json()["field"] == "entry.quantity_out"  # a bare number
