"""Key login (issue #9 item 2): a token for proof of possession of a registered key.

Attacks: a replayed nonce, a nonce signed by another key or by a revoked key, an expired
nonce, a nonce (or signature) from another log, a login signature offered as an entry
signature and an entry signature offered as a login. Every refusal is the same 401.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from keys import Ed25519Signer
from ledger.canonical import canonical
from ledger.crypto import Signer, key_id
from ledger.entries import ENTRY_DOMAIN, sign_body, signing_message
from ledger.login import LOGIN_DOMAIN, login_message, new_nonce, sign_login
from ledger.service import new_body
from ledger.store.schema import auth_nonces
from ledger.timefmt import format_time, now
from tests import api_fixtures
from tests.api_fixtures import LOG_ID, SELF_CUSTODY_USER, SITE_A, World

api_template = api_fixtures.api_template
world = api_fixtures.world
pg_world = api_fixtures.pg_world

PROBLEM = "https://reserve-ledger.example/problems/"


def challenge(w: World, **subject: str) -> dict[str, Any]:
    resp = w.client.post("/auth/challenge", json=subject)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def token_request(w: World, signer: Signer, nonce: str, *, log_id: str = LOG_ID, signature: str | None = None) -> Any:
    return w.client.post(
        "/auth/token",
        json={
            "nonce": nonce,
            "public_key": signer.public_key.hex(),
            "signature": signature or sign_login(signer, log_id=log_id, nonce=nonce),
        },
    )


def assert_refused(resp: Any) -> None:
    """One answer for every refusal: no oracle for which part was wrong."""
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["type"] == PROBLEM + "unauthenticated"
    assert body["detail"] == (
        "key login refused: ask for a new challenge and sign it with your active registered key"
    )
    assert "access_token" not in resp.text


def login(w: World, signer: Signer, **subject: str) -> str:
    c = challenge(w, **subject)
    resp = token_request(w, signer, c["nonce"])
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def test_login_by_user_name_and_by_key(world: World) -> None:
    sam = world.template.sam
    c = challenge(world, user=SELF_CUSTODY_USER)
    assert c["log_id"] == LOG_ID
    assert len(base64.urlsafe_b64decode(c["nonce"] + "=")) == 32
    expires = datetime.fromisoformat(c["expires_at"])
    assert timedelta(seconds=100) < expires - datetime.now(UTC) <= timedelta(minutes=2)
    resp = token_request(world, sam, c["nonce"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    me = world.client.get("/me", headers={"Authorization": "Bearer " + body["access_token"]})
    assert me.status_code == 200 and me.json()["user"] == SELF_CUSTODY_USER
    # The same claims as the embedded issuer's (iss, aud, exp, jti...): the verifier says so.
    claims = world.svc.verifier.verify(body["access_token"])
    assert claims.sub == SELF_CUSTODY_USER and claims.exp - claims.raw["iat"] == 900

    token = login(world, sam, public_key=sam.public_key.hex())
    assert world.client.get("/me", headers={"Authorization": "Bearer " + token}).json()["user"] == SELF_CUSTODY_USER


def test_a_token_from_key_login_writes_an_entry_signed_by_the_users_own_key(world: World) -> None:
    sam = world.template.sam
    token = login(world, sam, user=SELF_CUSTODY_USER)
    body = new_body(
        "stock.receipt",
        SELF_CUSTODY_USER,
        site=SITE_A,
        owner=api_fixtures.JP,
        lot=api_fixtures.LOT_NDPR,
        quantity=1000,
        occurred_at=now(),
        supplier="Lynas Rare Earths",
        accepted_purity="99.50",
        reference="PO-KEY-LOGIN",
    )
    resp = world.client.post(
        "/entries",
        json=sign_body(body, [sam], log_id=LOG_ID),
        headers={"Authorization": "Bearer " + token},
    )
    assert resp.status_code == 201, resp.text


def test_a_replayed_nonce_is_refused(world: World) -> None:
    sam = world.template.sam
    c = challenge(world, user=SELF_CUSTODY_USER)
    first = token_request(world, sam, c["nonce"])
    assert first.status_code == 200
    assert_refused(token_request(world, sam, c["nonce"]))


def test_a_nonce_signed_by_another_key_is_refused(world: World) -> None:
    sam = world.template.sam
    olga = world.keystore().load("olga")  # a registered, active key, but not sam's
    c = challenge(world, user=SELF_CUSTODY_USER)
    assert_refused(token_request(world, olga, c["nonce"]))
    c = challenge(world, public_key=sam.public_key.hex())
    assert_refused(token_request(world, olga, c["nonce"]))
    stranger = Ed25519Signer.generate()  # registered nowhere
    c = challenge(world, user=SELF_CUSTODY_USER)
    assert_refused(token_request(world, stranger, c["nonce"]))
    # The signature must be over this nonce by the key it names.
    forged = sign_login(olga, log_id=LOG_ID, nonce=c["nonce"])
    assert_refused(token_request(world, sam, c["nonce"], signature=forged))
    # The nonce was not spent by the failures: sam still logs in with it.
    assert token_request(world, sam, c["nonce"]).status_code == 200


def test_a_revoked_key_is_refused(world: World) -> None:
    old = Ed25519Signer.generate()
    led = world.svc.ledger
    led.register_key(
        admin="admin",
        user=SELF_CUSTODY_USER,
        roles=["operator"],
        sites=[SITE_A],
        owners=[],
        clearance="NONE",
        public_key=old.public_key,
    )
    assert login(world, old, public_key=old.public_key.hex())  # active: works
    led.revoke_key(actor="admin", key_id=key_id(old.public_key), reason="laptop lost")
    c = challenge(world, user=SELF_CUSTODY_USER)
    assert_refused(token_request(world, old, c["nonce"]))
    c = challenge(world, public_key=old.public_key.hex())
    assert_refused(token_request(world, old, c["nonce"]))


def test_an_expired_nonce_is_refused(world: World) -> None:
    sam = world.template.sam
    c = challenge(world, user=SELF_CUSTODY_USER)
    past = format_time(datetime.now(UTC) - timedelta(seconds=1))
    with world.svc.ledger.engine.begin() as conn:
        conn.execute(
            update(auth_nonces)
            .where(auth_nonces.c.nonce == c["nonce"])
            .values(created_at=format_time(datetime.now(UTC) - timedelta(minutes=3)), expires_at=past)
        )
    assert_refused(token_request(world, sam, c["nonce"]))


def test_a_nonce_or_signature_from_another_log_is_refused(world: World) -> None:
    sam = world.template.sam
    c = challenge(world, user=SELF_CUSTODY_USER)
    # Signed for another log (the EU ledger where sam's key may also be registered).
    assert_refused(token_request(world, sam, c["nonce"], log_id="eu.example/ledger"))
    # A nonce this log never issued (another log's), correctly signed for this log id.
    assert_refused(token_request(world, sam, new_nonce()))
    # A nonce issued by another log, stored here under its log id, is not this log's.
    with world.svc.ledger.engine.begin() as conn:
        foreign = new_nonce()
        conn.execute(
            auth_nonces.insert().values(
                nonce=foreign,
                log_id="eu.example/ledger",
                created_at=now(),
                expires_at=format_time(datetime.now(UTC) + timedelta(minutes=2)),
            )
        )
    assert_refused(token_request(world, sam, foreign))


def test_login_and_entry_signatures_never_stand_for_each_other(world: World) -> None:
    sam = world.template.sam
    assert not LOGIN_DOMAIN.startswith(ENTRY_DOMAIN) and not ENTRY_DOMAIN.startswith(LOGIN_DOMAIN)
    token = login(world, sam, user=SELF_CUSTODY_USER)
    auth = {"Authorization": "Bearer " + token}

    # A login signature offered as an entry signature.
    body = new_body("test.movement", SELF_CUSTODY_USER, account="ACC", delta=1)
    c = challenge(world, user=SELF_CUSTODY_USER)
    login_sig = sign_login(sam, log_id=LOG_ID, nonce=c["nonce"])
    before = world.entry_count()
    resp = world.client.post(
        "/entries", json={"entry": body, "sigs": [{"pub": sam.public_key.hex(), "sig": login_sig}]}, headers=auth
    )
    assert resp.status_code == 422 and resp.json()["type"] == PROBLEM + "bad-signature"
    assert world.entry_count() == before

    # An entry signature offered as a login: sam signs an entry whose bytes are chosen to
    # look like a nonce; the domains differ, so it is no proof of anything else.
    entry_sig = sign_body(body, [sam], log_id=LOG_ID)["sigs"][0]["sig"]
    assert_refused(token_request(world, sam, c["nonce"], signature=entry_sig))
    raw_entry_sig = base64.b64encode(sam.sign(signing_message(canonical(body), log_id=LOG_ID))).decode()
    assert_refused(token_request(world, sam, c["nonce"], signature=raw_entry_sig))
    # A signature over the bare nonce (no domain) is no login either.
    bare = base64.b64encode(sam.sign(c["nonce"].encode())).decode()
    assert_refused(token_request(world, sam, c["nonce"], signature=bare))
    assert login_message(log_id=LOG_ID, nonce=c["nonce"]).startswith(LOGIN_DOMAIN)


def test_unknown_users_get_a_challenge_and_malformed_requests_are_422(world: World) -> None:
    c = challenge(world, user="nobody-here")
    assert c["log_id"] == LOG_ID
    assert world.client.post("/auth/challenge", json={}).status_code == 422
    assert world.client.post("/auth/challenge", json={"user": "sam", "public_key": "ab" * 32}).status_code == 422
    assert world.client.post("/auth/challenge", json={"user": "../etc"}).status_code == 422
    resp = world.client.post("/auth/token", json={"nonce": "x", "public_key": "zz", "signature": "y"})
    assert resp.status_code == 422
    sam = world.template.sam
    assert_refused(token_request(world, sam, "A" * 43, signature="not base64!"))


def test_key_login_on_postgresql(pg_world: World) -> None:
    sam = pg_world.template.sam
    c = challenge(pg_world, user=SELF_CUSTODY_USER)
    assert token_request(pg_world, sam, c["nonce"]).status_code == 200
    assert_refused(token_request(pg_world, sam, c["nonce"]))
