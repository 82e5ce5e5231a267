"""The movement forms beyond the main task, in Chromium, signed with keys made in the
browser (issue #13, completed after issue #12): an order in the operator's inbox fills
the loan or the sale form with one click; a loan and its return, a sale, a rotation, a
conversion; a count beyond tolerance opened as a proposal for a second officer, who
co-signs it; an official's price observation. Every entry is signed by the browser's
key, and the log verifies afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ledger.store.audit import verify_database
from ledger.store.schema import entries
from tests import api_fixtures
from tests.api_fixtures import (
    JP,
    LOT_NDPR,
    NDPR,
    SITE_A,
    World,
    api_settings,
    copy_world,
    scratch_dir,
)
from tests.release_helpers import authorise, set_policy
from tests.test_web_e2e import _enrol, _key_login, _sign
from tests.web_browser import Browser, chromium, serve, shot

pytestmark = pytest.mark.browser
api_template = api_fixtures.api_template

LOT_FRESH = "NDPR-2026-101"  # comes in by rotation: same material, better grade
LOT_METAL = "NDPR-MET-001"  # produced by conversion


@pytest.fixture
def web(api_template: Any, tmp_path: Path) -> Iterator[tuple[World, Browser]]:
    with scratch_dir(tmp_path) as base:
        home = Path(base) / "home"
        w = copy_world(api_template, home, settings=api_settings(home, f"sqlite:///{home / 'ledger.db'}"))
        try:
            with serve(w.app) as url, chromium(url) as b:
                yield w, b
        finally:
            w.close()


def _register(w: World, user: str, pub: str, roles: list[str], *, sites: tuple[str, ...] = (), owners: tuple[str, ...] = ()) -> None:
    resp = w.client.post(
        "/keys",
        json={"user": user, "public_key": pub, "roles": roles, "sites": list(sites), "owners": list(owners)},
        headers=w.auth("admin"),
    )
    assert resp.status_code == 201, resp.text


def _open(page: Any, summary: str) -> None:
    page.click(f"summary:has-text('{summary}')")


def test_loan_sale_rotation_conversion_proposal_and_price_in_the_browser(web: tuple[World, Browser]) -> None:
    w, b = web
    led = w.svc.ledger
    set_policy(led, JP, NDPR, minister="max", quorum=1)
    for code, purity in ((LOT_FRESH, "99.90"), (LOT_METAL, "99.00")):
        led.act("olga", "lot.registered", code=code, material=NDPR, origin="AU", supplier="Lynas Rare Earths",
                purity=purity, basis="TREO", certificate_sha256=("a1" if code == LOT_FRESH else "b2") * 32,
                containers=[{"id": f"{code}-C1", "type": "drum", "net_mass": 250_000}])  # fmt: skip
    who = dict(owner=JP, material=NDPR, sites=[SITE_A], requester="fiona", approvers=["felix"], minister="max")
    loan_order = authorise(led, quantity=3_000_000, recipient="Shin-Etsu Chemical", regime="loan", **who)  # type: ignore[arg-type]
    sale_order = authorise(led, quantity=2_000_000, recipient="Hitachi Metals", regime="ordinary_sale", **who)  # type: ignore[arg-type]

    ctx, pub = _enrol(b, "wolga")
    _register(w, "wolga", pub, ["operator"], sites=(SITE_A,))
    fctx, fpub = _enrol(b, "wfiona")
    _register(w, "wfiona", fpub, ["official"], owners=(JP,))
    olga = _key_login(ctx, "wolga")

    # The loan order in the inbox fills the loan form (the rules' regime -> movement kind).
    row = olga.locator("#executable-orders tr", has_text=loan_order)
    row.get_by_role("button", name=f"Lend at {SITE_A}").click()
    assert olga.input_value("#loan-order") == loan_order
    assert olga.input_value("#loan-site") == SITE_A
    assert olga.input_value("#loan-borrower") == "Shin-Etsu Chemical"
    assert olga.input_value("#loan-quantity") == "3 t"
    olga.fill("#loan-lot", LOT_NDPR)
    olga.fill("#loan-quantity", "1 t")
    olga.fill("#loan-due_at", "2099-06-30T00:00:00Z")
    olga.fill("#loan-premium_pct", "2.5")
    _, loan_id = _sign(olga, "loan", "stock.loan_out", "operator-loan")
    assert "37 t" in olga.inner_text("#stock")  # 38 t at the site, 1 t lent

    _open(olga, "Loan return")
    olga.fill("#loan_return-loan", loan_id[:8])  # a reference as people type it (issue #12)
    olga.fill("#loan_return-quantity", "1 t")
    _sign(olga, "loan_return", "stock.loan_return", "operator-loan-return")

    # The sale order fills the sale form; a bare number is the API's refusal, beside the field.
    row = olga.locator("#executable-orders tr", has_text=sale_order)
    row.get_by_role("button", name=f"Sell at {SITE_A}").click()
    assert olga.input_value("#sale-order") == sale_order
    assert olga.input_value("#sale-buyer") == "Hitachi Metals"
    olga.fill("#sale-lot", LOT_NDPR)
    olga.fill("#sale-quantity", "500")
    olga.fill("#sale-tender_ref", "TENDER-2026-07")
    olga.click("#sale button[type=submit]")
    olga.wait_for_selector("#sale-quantity-error:not(:empty)")
    assert olga.get_attribute("#sale-quantity", "aria-invalid") == "true"
    shot(olga, "operator-sale-invalid")
    olga.fill("#sale-quantity", "0.5 t")
    _sign(olga, "sale", "stock.sale", "operator-sale")

    _open(olga, "Rotation")
    olga.select_option("#rotation-owner", JP)
    olga.fill("#rotation-lot_out", LOT_NDPR)
    olga.fill("#rotation-lot_in", LOT_FRESH)
    olga.fill("#rotation-quantity", "2 t")
    olga.fill("#rotation-counterparty", "Solvay La Rochelle")
    _sign(olga, "rotation", "stock.rotation", "operator-rotation")

    _open(olga, "Conversion")
    olga.select_option("#conversion-owner", JP)
    olga.fill("#conversion-lot_in", LOT_NDPR)
    olga.fill("#conversion-quantity_in", "1 t")
    olga.fill("#conversion-lot_out", LOT_METAL)
    olga.fill("#conversion-quantity_out", "0.8 t")
    olga.fill("#conversion-processor", "Santoku Corporation")
    _sign(olga, "conversion", "stock.conversion", "operator-conversion")
    stock = olga.inner_text("#stock")
    assert "34.5 t" in stock and "2 t" in stock and "0.8 t" in stock, stock

    # A count beyond tolerance: alone it is refused (the message by the co-signer field);
    # naming a second officer opens a proposal, which the other operator co-signs.
    _open(olga, "Stock count")
    olga.select_option("#count-owner", JP)
    olga.fill("#count-lot", LOT_NDPR)
    olga.fill("#count-book", "34.5 t")
    olga.fill("#count-counted", "34 t")
    olga.click("#count button[type=submit]")
    olga.wait_for_selector("#confirm[open]")
    olga.click("#confirm-sign")
    olga.wait_for_selector("#count-cosigners-error:not(:empty)")
    assert "second officer" in olga.inner_text("#count-cosigners-error")
    olga.fill("#count-cosigners", "olga")
    olga.click("#count button[type=submit]")
    olga.wait_for_selector("#confirm[open]")
    assert "olga" in olga.inner_text("#confirm-how")
    olga.click("#confirm-sign")
    olga.wait_for_selector("#status.ok")
    text = olga.inner_text("#status")
    m = re.search(r"Proposed stock.count: proposal (\S+), waiting for olga", text)
    assert m is not None, text
    shot(olga, "operator-count-proposed")
    pid = m.group(1)
    mine = w.client.get("/proposals?for=me", headers=w.auth("olga")).json()["proposals"]
    assert [x["id"] for x in mine] == [pid]
    done = w.client.post(f"/proposals/{pid}/cosign", json={}, headers=w.auth("olga"))
    assert done.status_code == 200 and done.json()["status"] == "appended", done.text
    olga.reload()
    assert "34 t" in olga.inner_text("#stock")

    # An official records a price observation.
    fiona = _key_login(fctx, "wfiona")
    fiona.fill("#price-index", "IDX-NDPR")
    fiona.select_option("#price-material", NDPR)
    fiona.fill("#price-value", "131250.5")
    fiona.fill("#price-currency", "USD")
    fiona.fill("#price-source", "Asian Metal daily assessment")
    _sign(fiona, "price", "price.observed", "official-price")

    assert b.foreign_requests() == []
    assert b.errors == []
    verify_database(w.svc.reader, trusted_log_key=None)
    with led.engine.connect() as conn:
        rows = conn.execute(select(entries.c.kind, entries.c.leaf).where(entries.c.author.in_(["wolga", "wfiona"])))
        signed = {r.kind: r.leaf for r in rows}
    assert sorted(signed) == sorted(
        ["stock.loan_out", "stock.loan_return", "stock.sale", "stock.rotation", "stock.conversion",
         "stock.count", "price.observed"]
    )  # fmt: skip
    for kind, leaf in signed.items():
        author_sig = json.loads(leaf)["sigs"][0]  # the author's; a count's second is olga's
        assert author_sig["pub"] == (fpub if kind == "price.observed" else pub), kind
