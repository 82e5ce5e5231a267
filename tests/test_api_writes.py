"""Writing through the API (issue #4): custodial movements with decimal quantities,
pre-signed entries, idempotency keys, and RFC 9457 errors with a stable ``type`` per rule
(4xx for the caller's mistakes, 5xx only for ours, never a stack trace or a secret)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import select

from ledger.canonical import canonical
from ledger.store.schema import idempotency_keys
from ledger.timefmt import now
from tests import api_fixtures
from tests.api_fixtures import (
    EU,
    JP,
    LOT_DY,
    LOT_NDPR,
    SELF_CUSTODY_USER,
    SITE_A,
    SITE_B,
    SITE_K,
    World,
)

# Fixtures (bound here so pytest finds them in this module).
api_template = api_fixtures.api_template
pg_world = api_fixtures.pg_world
world = api_fixtures.world

PROBLEM = "https://reserve-ledger.example/problems/"


def receipt(quantity: Any = "12.5 t", site: str = SITE_A, **over: Any) -> dict[str, Any]:
    body = {
        "site": site,
        "owner": JP,
        "lot": LOT_NDPR,
        "quantity": quantity,
        "occurred_at": now(),
        "supplier": "Lynas Rare Earths",
        "accepted_purity": "99.50",
        "reference": "PO-W-0001",
    }
    body.update(over)
    return body


def dispatch(quantity: str, to_site: str = SITE_B, site: str = SITE_A) -> dict[str, Any]:
    return {
        "site": site,
        "owner": JP,
        "lot": LOT_NDPR,
        "quantity": quantity,
        "occurred_at": now(),
        "to_site": to_site,
        "reference": "TR-W-0001",
    }


def held(w: World, user: str, site: str = SITE_A, owner: str = JP, lot: str = LOT_NDPR) -> int:
    resp = w.client.get(f"/balances?site={site}&owner={owner}&lot={lot}", headers=w.auth(user))
    assert resp.status_code == 200, resp.text
    rows = resp.json()["balances"]
    return sum(r["quantity_g"] for r in rows)


def problem(resp: Any, status: int, type_: str) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["type"] == PROBLEM + type_, body
    assert body["status"] == status
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    assert resp.headers.get("x-request-id")
    return dict(body)


# -- custodial movements --------------------------------------------------------------


def test_custodial_movement_with_decimal_quantity(world: World) -> None:
    w = world
    before, entries = held(w, "olga"), w.entry_count()
    resp = w.client.post("/stock/receive", json=receipt("12.5 t"), headers=w.auth("olga"))
    assert resp.status_code == 201, resp.text
    out = resp.json()
    assert set(out) == {"seq", "entry_id", "kind"} and out["kind"] == "stock.receipt"
    assert held(w, "olga") == before + 12_500_000
    assert w.entry_count() == entries + 1
    # Signed by olga's custodial key, as the auditor sees it.
    leaf = w.client.get(
        f"/log/entries?start={out['seq']}&limit=1", headers=w.auth("audrey")
    ).json()["entries"][0]
    assert leaf["entry"]["author"] == "olga" and leaf["entry"]["quantity"] == 12_500_000
    assert leaf["sigs"][0]["pub"] == w.svc.ledger.active_key_of("olga").public_key
    # Other units, exactly.
    for text_qty, grams in (("250 kg", 250_000), ("0.001 t", 1_000), ("7 g", 7)):
        b = held(w, "olga")
        assert (
            w.client.post(
                "/stock/receive", json=receipt(text_qty), headers=w.auth("olga")
            ).status_code
            == 201
        )
        assert held(w, "olga") == b + grams


@pytest.mark.parametrize(
    "qty", ["1.0000001 kg", "0.5 g", "-1 t", "1e3 kg", "12,5 t", "12.5", "12.5 lb", "NaN t", ""]
)
def test_inexact_or_malformed_quantities_are_refused(world: World, qty: str) -> None:
    w = world
    n = w.entry_count()
    body = problem(
        w.client.post("/stock/receive", json=receipt(qty), headers=w.auth("olga")),
        422,
        "invalid-entry",
    )
    assert body.get("field") == "entry.quantity"
    assert w.entry_count() == n


def test_rule_refusals_have_a_stable_type(world: World) -> None:
    w = world
    n = w.entry_count()
    auth = w.auth("olga")
    cases = [
        # (request, status, type, field)
        (
            ("POST", "/stock/dispatch", dispatch("900 t")),
            409,
            "rule/negative-holding",
            "entry.quantity",
        ),
        (
            ("POST", "/stock/dispatch", dispatch("1 t", SITE_A)),
            409,
            "rule/same-site",
            "entry.to_site",
        ),
        (("POST", "/stock/receive", receipt(site=SITE_B)), 409, "rule/site-scope", "entry.site"),
        (
            ("POST", "/stock/receive", receipt(owner="KR-KOMIR")),
            409,
            "rule/site-owner",
            "entry.owner",
        ),
        (
            ("POST", "/stock/receive", receipt(lot="NO-SUCH-LOT")),
            409,
            "rule/unknown-lot",
            "entry.lot",
        ),
        (
            ("POST", "/stock/receive", receipt(occurred_at="2999-01-01T00:00:00Z")),
            409,
            "rule/clock",
            "entry.occurred_at",
        ),
        (("POST", "/stock/receive", receipt(colour="blue")), 422, "invalid-entry", None),
        (
            ("POST", "/stock/receive", {**receipt(), "kind": "key.registered"}),
            422,
            "invalid-entry",
            None,
        ),
        (("POST", "/stock/receive", [1, 2]), 422, "invalid-request", None),
        (("POST", "/stock/warp", receipt()), 422, "invalid-entry", "action"),
        (
            ("POST", "/stock/count", {**receipt(), "cosigners": []}),
            422,
            "invalid-entry",
            "cosigners",
        ),
    ]
    for (method, url, payload), status, type_, field in cases:
        if isinstance(payload, dict):
            payload = {k: v for k, v in payload.items() if v is not None}
        body = problem(w.client.request(method, url, json=payload, headers=auth), status, type_)
        if field is not None:
            assert body.get("field") == field, (url, body)
    assert w.entry_count() == n


def test_roles_are_enforced_again_by_the_rules(world: World) -> None:
    """The API's role check and the reducer agree: an admin's movement is refused at the
    route (403) and, submitted signed to /entries, by the rules (409 rule/role)."""
    w = world
    problem(
        w.client.post("/stock/receive", json=receipt(), headers=w.auth("admin")), 403, "forbidden"
    )
    sub = w.signed_entry("admin", "stock.receipt", **{**receipt(), "quantity": 1000})
    problem(w.client.post("/entries", json=sub, headers=w.auth("admin")), 409, "rule/role")
    # An official may register lots but not record movements at all.
    sub = w.signed_entry("fiona", "stock.receipt", **{**receipt(), "quantity": 1000})
    problem(w.client.post("/entries", json=sub, headers=w.auth("fiona")), 409, "rule/role")


# -- pre-signed entries ---------------------------------------------------------------


def test_presigned_entry_by_its_author(world: World) -> None:
    w = world
    before = held(w, "olga")
    sub = w.signed_entry("olga", "stock.receipt", **{**receipt(), "quantity": 3_000})
    resp = w.client.post("/entries", json=sub, headers=w.auth("olga"))
    assert resp.status_code == 201, resp.text
    assert resp.json()["entry_id"] == sub["entry"]["id"]
    assert held(w, "olga") == before + 3_000
    # The same signed entry again (no idempotency key): a replay, refused, not a 5xx.
    problem(w.client.post("/entries", json=sub, headers=w.auth("olga")), 409, "rule/replay")


def test_presigned_entry_by_another_user_is_refused(world: World) -> None:
    w = world
    n = w.entry_count()
    sub = w.signed_entry("olga", "stock.receipt", **{**receipt(), "quantity": 3_000})
    for user in ("oscar", "admin", "audrey", "omar"):
        body = problem(w.client.post("/entries", json=sub, headers=w.auth(user)), 403, "forbidden")
        assert body["detail"] == "you can only submit entries you authored"
    assert w.entry_count() == n


def test_presigned_entry_must_be_signed_by_the_authors_key(world: World) -> None:
    """The token's subject must own the key that signed: olga cannot pass off an entry
    signed with omar's key (or the token issuer's, or the log's) as hers."""
    w = world
    n = w.entry_count()
    ks = w.keystore()
    for name in ("omar", "token-issuer", "log", "admin"):
        sub = w.signed_entry(
            "olga", "stock.receipt", signer=ks.load(name), **{**receipt(), "quantity": 1}
        )
        problem(
            w.client.post("/entries", json=sub, headers=w.auth("olga")), 403, "key-not-authorised"
        )
    # A body changed after signing.
    sub = w.signed_entry("olga", "stock.receipt", **{**receipt(), "quantity": 1})
    sub["entry"]["quantity"] = 1_000_000
    problem(w.client.post("/entries", json=sub, headers=w.auth("olga")), 422, "bad-signature")
    # No signature at all.
    problem(
        w.client.post("/entries", json={"entry": sub["entry"], "sigs": []}, headers=w.auth("olga")),
        422,
        "invalid-entry",
    )
    assert w.entry_count() == n


def test_self_custody_user_submits_signed_entries(world: World) -> None:
    w = world
    sam = w.template.sam
    sub = w.signed_entry(
        SELF_CUSTODY_USER, "stock.receipt", signer=sam, **{**receipt(), "quantity": 42}
    )
    resp = w.client.post("/entries", json=sub, headers=w.auth(SELF_CUSTODY_USER))
    assert resp.status_code == 201, resp.text


def test_custodial_route_for_a_self_custody_user_is_a_4xx(world: World) -> None:
    w = world
    resp = w.client.post("/stock/receive", json=receipt(), headers=w.auth(SELF_CUSTODY_USER))
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)


# -- idempotency ----------------------------------------------------------------------


def test_idempotent_custodial_write(world: World) -> None:
    w = world
    n, before = w.entry_count(), held(w, "olga")
    body = receipt("1.5 t")
    headers = {**w.auth("olga"), "Idempotency-Key": "receipt-2025-0001"}
    first = w.client.post("/stock/receive", json=body, headers=headers)
    assert first.status_code == 201, first.text
    for _ in range(3):
        again = w.client.post(
            "/stock/receive",
            json=body,
            headers={**w.auth("olga"), "Idempotency-Key": "receipt-2025-0001"},
        )
        assert again.status_code == first.status_code
        assert again.json() == first.json()
    assert w.entry_count() == n + 1
    assert held(w, "olga") == before + 1_500_000
    # Same key, different body: a conflict, and still one entry.
    other = w.client.post("/stock/receive", json=receipt("2 t"), headers=headers)
    problem(other, 409, "conflict")
    assert w.entry_count() == n + 1
    # Keys are per user: oscar's identical key is his own.
    resp = w.client.post(
        "/stock/receive",
        json=receipt("1.5 t"),
        headers={**w.auth("oscar"), "Idempotency-Key": "receipt-2025-0001"},
    )
    assert resp.status_code == 201 and resp.json()["seq"] != first.json()["seq"]
    assert w.entry_count() == n + 2


def test_idempotent_presigned_write(world: World) -> None:
    w = world
    n = w.entry_count()
    sub = w.signed_entry("olga", "stock.receipt", **{**receipt(), "quantity": 5})
    headers = {**w.auth("olga"), "Idempotency-Key": "signed-1"}
    first = w.client.post("/entries", json=sub, headers=headers)
    again = w.client.post("/entries", json=sub, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert w.entry_count() == n + 1
    other = w.signed_entry("olga", "stock.receipt", **{**receipt(), "quantity": 6})
    problem(w.client.post("/entries", json=other, headers=headers), 409, "conflict")


def test_idempotent_key_registration(world: World) -> None:
    w = world
    n = w.entry_count()
    headers = {**w.auth("admin"), "Idempotency-Key": "key-newbie"}
    body = {"user": "newbie", "roles": ["auditor"]}
    first = w.client.post("/keys", json=body, headers=headers)
    again = w.client.post("/keys", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert first.json() == again.json()
    assert w.entry_count() == n + 1
    assert w.client.get("/me", headers=w.auth("newbie")).json()["roles"] == ["auditor"]


@pytest.mark.parametrize("key", ["", "k" * 129])
def test_idempotency_key_length(world: World, key: str) -> None:
    w = world
    n = w.entry_count()
    resp = w.client.post(
        "/stock/receive", json=receipt(), headers={**w.auth("olga"), "Idempotency-Key": key}
    )
    problem(resp, 422, "invalid-entry")
    assert w.entry_count() == n


NEW_SITE = {
    "code": "SITE-NEW1",
    "classification": "RESTRICTED",
    "custodian": JP,
    "owners": [JP],
    "location": {
        "name": "Shelter Nimbus-5150",
        "address": "Harrowgate Pass 12",
        "latitude": 61.2345678,
        "longitude": 9.8765432,
    },
}


def test_idempotent_site_registration_returns_the_original_result(world: World) -> None:
    """A retry returns the original result, entry id included (the stored response was
    once built before the entry id was known and came back with entry_id '')."""
    w = world
    headers = {**w.auth("admin"), "Idempotency-Key": "site-new1"}
    first = w.client.post("/sites", json=NEW_SITE, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["entry_id"]
    again = w.client.post("/sites", json=NEW_SITE, headers=headers)
    assert again.status_code == 201
    assert again.json() == first.json()


def test_site_registration_is_idempotent_and_leaks_nothing(world: World) -> None:
    w = world
    n = w.entry_count()
    headers = {**w.auth("admin"), "Idempotency-Key": "site-new1"}
    first = w.client.post("/sites", json=NEW_SITE, headers=headers)
    again = w.client.post("/sites", json=NEW_SITE, headers=headers)
    assert first.status_code == again.status_code == 201
    assert w.entry_count() == n + 1
    for resp in (first, again):
        for secret in ("Nimbus", "Harrowgate", "61.23456", "9.876543"):
            assert secret not in resp.text
    # A bad location is refused naming the field only, never echoing a value.
    bad = {
        **NEW_SITE,
        "code": "SITE-NEW2",
        "location": {**NEW_SITE["location"], "latitude": 123.456},
    }
    resp = w.client.post("/sites", json=bad, headers=w.auth("admin"))
    body = problem(resp, 422, "invalid-entry")
    assert body.get("field") == "latitude"
    for secret in ("Nimbus", "Harrowgate", "123.456", "9.876543"):
        assert secret not in resp.text
    odd = {
        **NEW_SITE,
        "code": "SITE-NEW3",
        "location": {**NEW_SITE["location"], "59.91, 10.75 (real)": 1},
    }
    resp = w.client.post("/sites", json=odd, headers=w.auth("admin"))
    assert resp.status_code == 422
    assert "59.91" not in resp.text and "Nimbus" not in resp.text


def test_idempotency_hash_does_not_fingerprint_the_location(world: World) -> None:
    w = world
    resp = w.client.post(
        "/sites", json=NEW_SITE, headers={**w.auth("admin"), "Idempotency-Key": "site-fp"}
    )
    assert resp.status_code == 201
    with w.svc.reader.connect() as conn:
        stored = conn.execute(
            select(idempotency_keys.c.request_hash).where(idempotency_keys.c.key == "site-fp")
        ).scalar_one()
    guess = hashlib.sha256(canonical(NEW_SITE)).hexdigest()
    assert stored != guess, "the stored request hash confirms a guessed location"


# -- 4xx for the caller's mistakes, 5xx only for ours ---------------------------------


def test_key_registration_with_a_bad_user_name_is_a_4xx(world: World) -> None:
    w = world
    for name in ("Bob", "../x", "sealing"):
        resp = w.client.post(
            "/keys", json={"user": name, "roles": ["auditor"]}, headers=w.auth("admin")
        )
        assert 400 <= resp.status_code < 500, (name, resp.status_code, resp.text)


def test_service_keys_are_never_user_keys(world: World) -> None:
    w = world
    issuer_pub = w.keystore().public_key("token-issuer").hex()
    resp = w.client.post(
        "/keys",
        json={"user": "token-issuer", "roles": ["operator"], "sites": [SITE_A]},
        headers=w.auth("admin"),
    )
    registered = [k.public_key for k in w.svc.ledger.registered_keys() if k.user == "token-issuer"]
    assert resp.status_code >= 400 or issuer_pub not in registered, resp.text


def test_huge_integers_are_a_4xx(world: World) -> None:
    w = world
    huge = 10**30
    calls = [
        ("GET", f"/log/checkpoints/{huge}", "fiona", None),
        ("GET", f"/balances?as_of_seq={huge}", "olga", None),
        ("GET", f"/log/proofs/inclusion?seq=0&size={huge}", "olga", None),
        ("GET", f"/log/proofs/consistency?old=1&new={huge}", "olga", None),
        ("POST", "/tokens/revoke", "admin", {"jti": "some-jti", "expires_at": huge}),
    ]
    bad = []
    for method, url, user, body in calls:
        resp = w.client.request(method, url, json=body, headers=w.auth(user))
        if not 400 <= resp.status_code < 500:
            bad.append((url, resp.status_code))
    assert not bad, bad


def test_malformed_requests_are_4xx_problems(world: World) -> None:
    w = world
    auth = w.auth("olga")
    cases = [
        ("POST", "/entries", b"{not json", 422),
        ("POST", "/entries", b"[]", 422),
        ("POST", "/entries", b'{"entry": {"kind": "no.such.kind"}, "sigs": []}', 422),
        ("POST", "/entries", b'{"entry": 5, "sigs": 5}', 422),
        ("POST", "/stock/receive", b"", 422),
        ("POST", "/stock/receive", b'{"site": "' + b"A" * 100_000 + b'"}', 422),
        ("GET", "/log/proofs/inclusion?seq=-1&size=1", None, 422),
        ("GET", "/log/proofs/inclusion?seq=5&size=3", None, 404),
        ("GET", "/balances?as_of=yesterday", None, 422),
        ("GET", "/lots/NOPE/trace", None, 404),
        ("PUT", "/stock/receive", b"{}", 405),
        ("GET", "/nothing/here", None, 404),
    ]
    for method, url, content, status in cases:
        headers = {**auth, "Content-Type": "application/json"}
        resp = w.client.request(method, url, content=content, headers=headers)
        assert resp.status_code == status, (method, url, resp.status_code, resp.text[:300])
        assert resp.headers["content-type"].startswith("application/problem+json"), url
        assert "Traceback" not in resp.text and 'File "' not in resp.text
        assert len(resp.content) < 2000, "a problem never echoes a large input"


@pytest.mark.postgres
def test_writes_smoke_postgres(pg_world: World) -> None:
    w = pg_world
    n, before = w.entry_count(), held(w, "olga")
    headers = {**w.auth("olga"), "Idempotency-Key": "pg-1"}
    body = receipt("12.5 t")
    first = w.client.post("/stock/receive", json=body, headers=headers)
    again = w.client.post("/stock/receive", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert first.json() == again.json()
    problem(w.client.post("/stock/receive", json=receipt("13 t"), headers=headers), 409, "conflict")
    assert w.entry_count() == n + 1
    assert held(w, "olga") == before + 12_500_000
    problem(
        w.client.post("/stock/dispatch", json=dispatch("900 t"), headers=w.auth("olga")),
        409,
        "rule/negative-holding",
    )
    sub = w.signed_entry("olga", "stock.receipt", **{**receipt(), "quantity": 3})
    assert w.client.post("/entries", json=sub, headers=w.auth("olga")).status_code == 201
    problem(w.client.post("/entries", json=sub, headers=w.auth("omar")), 403, "forbidden")
    assert held(w, "elena", SITE_A, EU, LOT_DY) == 2_000_000
    assert held(w, "omar", SITE_K, "KR-KOMIR", "KR-GA-001") == 0  # out of scope: nothing


@pytest.mark.postgres
def test_long_jti_revocation_is_a_4xx_postgres(pg_world: World) -> None:
    w = pg_world
    resp = w.client.post("/tokens/revoke", json={"jti": "j" * 300}, headers=w.auth("admin"))
    assert 200 <= resp.status_code < 500, (resp.status_code, resp.text)


def test_error_bodies_never_hold_secrets_or_traces(world: World) -> None:
    """A 5xx says only that something failed on our side."""
    w = world
    resp = w.client.post("/stock/receive", json=receipt(), headers=w.auth(SELF_CUSTODY_USER))
    if resp.status_code >= 500:
        body = json.loads(resp.text)
        assert body["detail"] == "the service could not complete this request; try again later"
        assert "sam" not in resp.text and "keystore" not in body["detail"]


def _boom(*a: Any, **kw: Any) -> Any:
    raise RuntimeError("boom at /srv/reserve/secret-path with SITE-7F3K salt=c2VjcmV0")


def test_an_unexpected_error_is_a_bare_500(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import api.routes.reads
    from tests.api_fixtures import captured_logs

    w = world
    monkeypatch.setattr(api.routes.reads.reports, "cover", _boom)
    with captured_logs() as lines:
        resp = w.client.get("/cover", headers=w.auth("fiona"))
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["type"] == PROBLEM + "internal"
    assert body["detail"] == "the service could not complete this request; try again later"
    for needle in ("boom", "secret-path", "SITE-7F3K", "c2VjcmV0", "RuntimeError", "Traceback"):
        assert needle not in resp.text
    logged = "\n".join(lines)
    assert "RuntimeError" in logged  # ours to investigate...
    assert "secret-path" not in logged and "c2VjcmV0" not in logged  # ...without the message


def test_an_unexpected_error_still_has_a_request_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.routes.reads

    w = world
    monkeypatch.setattr(api.routes.reads.reports, "cover", _boom)
    resp = w.client.get("/cover", headers=w.auth("fiona"))
    assert resp.status_code == 500
    assert resp.headers.get("x-request-id")
