"""Each user's main task, end to end, in Chromium, with keys made in the browser
(issue #13): every person enrols in their own browser (a WebCrypto Ed25519 key that
cannot be exported), a security admin registers the public keys from the keys page,
then: an operator's receipt and dispatch, the arrival at the other site, a release
request, two approvals, the minister's order, its execution, the order's report, and
the auditor's page, report and bundle. Every entry is signed in the browser; at the end
``reserve verify`` verifies the whole log, and the browser's entries carry the browser's
keys. Screenshots of each step go to artefacts/web/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ledger.entries import sign_body
from ledger.service import new_body
from ledger.store.schema import entries
from ledger.timefmt import format_time, now, parse_time
from tests import api_fixtures
from tests.api_fixtures import (
    JP,
    LOG_ID,
    LOT_NDPR,
    NDPR,
    SELF_CUSTODY_USER,
    SITE_A,
    SITE_B,
    World,
    api_settings,
    copy_world,
    scratch_dir,
)
from tests.conftest import PASSPHRASE
from tests.release_helpers import set_policy
from tests.web_browser import Browser, chromium, serve, shot

pytestmark = pytest.mark.browser
api_template = api_fixtures.api_template

# name -> (roles, sites, owners, clearance): new users, each with a key made in a browser.
PEOPLE: dict[str, tuple[list[str], str, str, str]] = {
    "wolga": (["operator"], SITE_A, "", "NONE"),
    "womar": (["operator"], SITE_B, "", "NONE"),
    "wfiona": (["official"], "", JP, "NONE"),
    "wfelix": (["official"], "", JP, "NONE"),
    "wfumio": (["official"], "", JP, "NONE"),
    "wmax": (["minister"], "", JP, "NONE"),
    "waudrey": (["auditor"], "", "", "NONE"),
}
RECORDED = re.compile(r"Recorded ([a-z_.]+): seq (\d+), entry id ([0-9a-f]{32})")


@pytest.fixture
def web(api_template: Any, tmp_path: Path) -> Iterator[tuple[World, Browser]]:
    with scratch_dir(tmp_path) as base:
        home = Path(base) / "home"
        settings = replace(
            api_settings(home, f"sqlite:///{home / 'ledger.db'}"), unsafe_demo_login=True
        )
        w = copy_world(api_template, home, settings=settings)
        try:
            with serve(w.app) as url, chromium(url) as b:
                yield w, b
        finally:
            w.close()


def _sign(page: Any, form: str, expect_kind: str, name: str) -> tuple[int, str]:
    """Submit ``form``, check the dialog shows the entry to sign, sign it; return the
    recorded (seq, entry id) from the page's status line."""
    page.click(f"#{form} button[type=submit]")
    page.wait_for_selector("#confirm[open]")
    shown = json.loads(page.inner_text("#confirm-body"))
    assert shown["kind"] == expect_kind if "kind" in shown else True
    shot(page, f"{name}-confirm")
    page.click("#confirm-sign")
    page.wait_for_selector("#status.ok")
    text = page.inner_text("#status")
    m = RECORDED.search(text)
    assert m is not None and m.group(1) == expect_kind, text
    shot(page, name)
    return int(m.group(2)), m.group(3)


def _enrol(b: Browser, user: str) -> tuple[Any, str]:
    ctx = b.person()
    page = ctx.new_page()
    page.goto("/web/enrol")
    page.fill("#enrol-user", user)
    page.click("#enrol-form button[type=submit]")
    page.wait_for_selector("#enrol-result:not([hidden])")
    pub = page.inner_text("#public-key").strip()
    assert re.fullmatch(r"[0-9a-f]{64}", pub)
    return ctx, pub


def _key_login(ctx: Any, user: str) -> Any:
    page = ctx.new_page()
    page.goto("/")
    page.fill("#login-user", user)
    page.click("#key-login button[type=submit]")
    page.wait_for_url(re.compile(r"/web/"))
    return page


def test_each_users_main_task_in_the_browser(web: tuple[World, Browser]) -> None:
    w, b = web
    set_policy(w.svc.ledger, JP, NDPR, minister="max", quorum=2)

    # The security admin signs in (demo login: the admin's key is custodial here).
    admin_ctx = b.person()
    admin = admin_ctx.new_page()
    admin.goto("/")
    shot(admin, "signin-demo")
    admin.fill("#demo-user", "admin")
    admin.click("#demo-login button[type=submit]")
    admin.wait_for_url(re.compile(r"/web/admin"))

    # Everyone makes a key in their own browser; the admin registers each public key.
    ctxs: dict[str, Any] = {}
    pubs: dict[str, str] = {}
    for user, (roles, sites, owners, clearance) in PEOPLE.items():
        ctxs[user], pubs[user] = _enrol(b, user)
        admin.goto("/web/admin")
        admin.fill("#register-user", user)
        admin.fill("#register-public_key", pubs[user])
        for r in roles:
            admin.check(f"#register input[name=roles][value={r}]")
        admin.fill("#register-sites", sites)
        admin.fill("#register-owners", owners)
        admin.select_option("#register-clearance", clearance)
        _sign(admin, "register", "key.registered", f"admin-register-{user}")

    # The private key cannot be exported, not even by the page that made it.
    probe = ctxs["wolga"].new_page()
    probe.goto("/web/enrol")
    verdict = probe.evaluate(
        """async () => {
            const db = await new Promise((ok, ko) => { const r = indexedDB.open('reserve-ledger', 1); r.onsuccess = () => ok(r.result); r.onerror = () => ko(r.error); });
            const rec = await new Promise((ok) => { const g = db.transaction('keys').objectStore('keys').get('wolga'); g.onsuccess = () => ok(g.result); });
            const out = {extractable: rec.privateKey.extractable, type: rec.privateKey.type};
            for (const format of ['pkcs8', 'jwk']) {
                try { await crypto.subtle.exportKey(format, rec.privateKey); out[format] = 'exported'; }
                catch (e) { out[format] = e.name; }
            }
            return out;
        }"""
    )
    assert verdict == {"extractable": False, "type": "private", "pkcs8": "InvalidAccessError", "jwk": "InvalidAccessError"}, verdict
    probe.close()

    # Operator at site A: a receipt (a bad quantity first: the API's message by the field), then a dispatch.
    olga = _key_login(ctxs["wolga"], "wolga")
    assert olga.url.endswith("/web/operator")

    # A count beyond tolerance proposed by another operator of the site waits for wolga's
    # co-signature; she reads the entry and co-signs it with her browser key.
    # Counted a few seconds ago: the receipt form's time (whole seconds, from the page's
    # load) must not fall before the count's, which the rules refuse.
    counted_at = format_time(parse_time(now()) - timedelta(seconds=5))
    count = new_body("stock.count", SELF_CUSTODY_USER, site=SITE_A, owner=JP, lot=LOT_NDPR,
                     book=38_000_000, counted=37_000_000, occurred_at=counted_at)  # fmt: skip
    signed = sign_body(count, [w.template.sam], log_id=LOG_ID)
    opened = w.client.post("/proposals", json={**signed, "cosigners": ["wolga"]}, headers=w.auth(SELF_CUSTODY_USER))
    assert opened.status_code == 201, opened.text
    pid = opened.json()["id"]
    olga.reload()
    olga.locator("tr", has_text=pid).get_by_role("button", name="Review and co-sign").click()
    olga.wait_for_selector("#confirm[open]")
    assert json.loads(olga.inner_text("#confirm-body")) == count
    shot(olga, "operator-cosign-confirm")
    olga.click("#confirm-sign")
    olga.wait_for_selector("#status.ok")
    assert olga.inner_text("#status") == "Co-signed: appended"
    assert "37 t" in olga.inner_text("#stock")
    olga.select_option("#receipt-site", SITE_A)
    olga.select_option("#receipt-owner", JP)
    olga.fill("#receipt-lot", LOT_NDPR)
    olga.fill("#receipt-quantity", "5 tonnes please")
    olga.fill("#receipt-supplier", "Lynas Rare Earths")
    olga.fill("#receipt-accepted_purity", "99.5")
    olga.fill("#receipt-reference", "PO-JP-0099")
    olga.click("#receipt button[type=submit]")
    olga.wait_for_selector("#receipt-quantity-error:not(:empty)")
    assert olga.get_attribute("#receipt-quantity", "aria-invalid") == "true"
    shot(olga, "operator-receipt-invalid")
    olga.fill("#receipt-quantity", "5 t")
    _sign(olga, "receipt", "stock.receipt", "operator-receipt")
    assert "42 t" in olga.inner_text("#stock")
    olga.click("summary:has-text('Dispatch')")
    olga.select_option("#dispatch-site", SITE_A)
    olga.select_option("#dispatch-owner", JP)
    olga.fill("#dispatch-lot", LOT_NDPR)
    olga.fill("#dispatch-quantity", "2 t")
    olga.fill("#dispatch-to_site", SITE_B)
    olga.fill("#dispatch-reference", "TR-0099")
    _, transfer_id = _sign(olga, "dispatch", "stock.dispatch", "operator-dispatch")

    # Operator at site B: the transfer waits for them; one click fills the arrival.
    omar = _key_login(ctxs["womar"], "womar")
    row = omar.locator("#inbound tr", has_text=transfer_id)
    row.get_by_role("button", name="Record arrival").click()
    assert omar.input_value("#arrival-transfer") == transfer_id
    assert omar.input_value("#arrival-quantity") == "2 t"
    _sign(omar, "arrival", "stock.arrival", "operator-arrival")
    assert transfer_id not in omar.inner_text("main")

    # An official requests a release (emergency, with the declaration and an override).
    fiona = _key_login(ctxs["wfiona"], "wfiona")
    assert fiona.url.endswith("/web/releases")
    assert fiona.locator("#cover-chart rect").count() >= 1
    fiona.select_option("#request-owner", JP)
    fiona.select_option("#request-material", NDPR)
    fiona.fill("#request-quantity", "1 t")
    fiona.fill("#request-recipient", "Shin-Etsu Chemical")
    fiona.select_option("#request-regime", "emergency_release")
    fiona.fill("#request-purpose", "magnet plant supply interrupted by export controls")
    fiona.fill("#request-declaration", "ab" * 32)
    fiona.fill("#request-override", "export ban announced before the index reacted")
    _, request_id = _sign(fiona, "request", "release.requested", "official-request")
    # Nobody approves their own request: the reducer's refusal, in words, nothing written.
    fiona.locator("#requests tr", has_text=request_id).get_by_role("button", name="Approve…").click()
    fiona.wait_for_selector("#confirm[open]")
    fiona.click("#confirm-sign")
    fiona.wait_for_selector("#status.error")
    assert fiona.inner_text("#status").startswith("Not recorded: "), fiona.inner_text("#status")
    shot(fiona, "official-approve-own-refused")

    # Two other officials approve it.
    for user in ("wfelix", "wfumio"):
        page = _key_login(ctxs[user], user)
        page.locator("#requests tr", has_text=request_id).get_by_role("button", name="Approve…").click()
        page.wait_for_selector("#confirm[open]")
        assert request_id in page.inner_text("#confirm-body")
        page.click("#confirm-sign")
        page.wait_for_selector("#status.ok")
        assert "Recorded release.approved" in page.inner_text("#status")
        shot(page, f"official-approve-{user}")

    # The minister orders it.
    mx = _key_login(ctxs["wmax"], "wmax")
    mx.locator("#requests tr", has_text=request_id).get_by_role("button", name="Order…").click()
    assert mx.input_value("#order-request") == request_id
    mx.fill("#order-cap", "1 t")
    mx.fill("#order-valid_until", "2099-12-31T00:00:00Z")
    mx.fill("#order-sites", SITE_A)
    mx.select_option("#order-regime", "emergency_release")
    mx.fill("#order-report_to", "House of Councillors economy committee")
    mx.check("#order-confirm_override")
    _, order_id = _sign(mx, "order", "release.ordered", "minister-order")

    # The operator at site A sees the order in her inbox (GET /orders?executable=true);
    # one click fills the release form; the operator at site B is not offered it.
    omar.goto("/web/operator")
    assert order_id not in omar.inner_text("main")
    olga.goto("/web/operator")
    row = olga.locator("#executable-orders tr", has_text=order_id)
    assert "1 t" in row.inner_text()
    row.get_by_role("button", name=f"Release at {SITE_A}").click()
    assert olga.input_value("#release-order") == order_id
    assert olga.input_value("#release-site") == SITE_A
    assert olga.input_value("#release-owner") == JP
    assert olga.input_value("#release-recipient") == "Shin-Etsu Chemical"
    assert olga.input_value("#release-quantity") == "1 t"
    olga.fill("#release-lot", LOT_NDPR)
    olga.fill("#release-quantity", "0.4 t")
    _sign(olga, "release", "stock.release", "operator-release")

    # The order's report: the execution, the remaining cap.
    mx.goto(f"/web/orders/{order_id}")
    text = mx.inner_text("main")
    assert "0.4 t" in text and "0.6 t" in text, text
    shot(mx, "minister-order-report")

    # ...and then revokes what is left of it.
    mx.goto("/web/releases")
    mx.locator("#orders tr", has_text=order_id).get_by_role("button", name="Revoke…").click()
    assert mx.input_value("#revoke-order") == order_id
    mx.fill("#revoke-reason", "supply restored; remaining cap withdrawn")
    _sign(mx, "revoke", "release.order_revoked", "minister-revoke")
    assert "revoked" in mx.locator("#orders tr", has_text=order_id).inner_text()

    # The auditor: checkpoint, access log check, verification report, bundle.
    au = _key_login(ctxs["waudrey"], "waudrey")
    assert au.url.endswith("/web/audit")
    size = int(au.inner_text("#checkpoint-size"))
    assert au.inner_text("#access-ok") == "verified"
    shot(au, "auditor")
    with au.expect_download() as dl:
        au.click("#bundle-download")
    bundle = Path(dl.value.path())
    assert bundle.stat().st_size > 0
    # The export is in the access log, which the page filters.
    au.goto("/web/audit?action=export")
    rows = au.locator("#access tbody tr")
    assert rows.count() == 1 and "waudrey" in rows.first.inner_text()
    shot(au, "auditor-access-log-export")
    au.click("#report-link")
    assert "Verification report" in au.content()
    assert "passed" in au.inner_text("body").lower()
    shot(au, "auditor-report")

    assert b.foreign_requests() == []
    assert b.errors == []

    # The whole log verifies with the command line, and what the browser signed carries
    # the browser's keys.
    env = {**os.environ, "RESERVE_HOME": str(w.home), "RESERVE_PASSPHRASE": PASSPHRASE.decode()}
    reserve = Path(sys.executable).parent / "reserve"
    cmd = [str(reserve)] if reserve.exists() else [sys.executable, "-m", "cli.main"]
    proc = subprocess.run(
        [*cmd, "verify", "--db", w.db_url],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK"), proc.stdout
    with w.svc.ledger.engine.connect() as conn:
        rows = conn.execute(select(entries.c.leaf).where(entries.c.author.in_(list(PEOPLE))))
        lines = [json.loads(r.leaf) for r in rows]
        counted = json.loads(conn.execute(select(entries.c.leaf).where(entries.c.kind == "stock.count")).scalars().all()[-1])
    for x in lines:
        assert [s["pub"] for s in x["sigs"]] == [pubs[x["entry"]["author"]]], x["entry"]["kind"]
    assert [s["pub"] for s in counted["sigs"]] == [w.template.sam.public_key.hex(), pubs["wolga"]]
    kinds = sorted(x["entry"]["kind"] for x in lines)
    assert kinds == sorted(
        ["stock.receipt", "stock.dispatch", "stock.arrival", "release.requested", "release.approved",
         "release.approved", "release.ordered", "stock.release", "release.order_revoked"]
    ), kinds  # fmt: skip
    assert size > 0
