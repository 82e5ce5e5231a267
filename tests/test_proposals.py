"""Co-signature proposals over HTTP (issue #9 item 3).

A count beyond tolerance is proposed by its operator (sam, who holds his own key) and
co-signed by a second officer. Refused: a co-signature by someone not named, by the
proposer twice, after expiry, over a changed body, on a withdrawn proposal; a proposal
never enters the log until complete, and the reducer still has the last word.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ledger.crypto import Signer
from ledger.entries import sign_body
from ledger.service import new_body
from ledger.store.projections import read_user_keys
from ledger.store.schema import entries, proposals
from ledger.timefmt import format_time, now
from tests import api_fixtures
from tests.api_fixtures import JP, LOG_ID, LOT_NDPR, SELF_CUSTODY_USER, SITE_A, World

api_template = api_fixtures.api_template
world = api_fixtures.world
pg_world = api_fixtures.pg_world

PROBLEM = "https://reserve-ledger.example/problems/"
BOOK = 38_000_000  # JP's NdPr at SITE_A in the scenario: 50 t received, 12 t dispatched


def count_body(counted: int = 37_000_000) -> dict[str, Any]:
    return new_body(
        "stock.count", SELF_CUSTODY_USER, site=SITE_A, owner=JP, lot=LOT_NDPR, book=BOOK, counted=counted, occurred_at=now()
    )


def key_of(w: World, user: str) -> Signer:
    return w.template.sam if user == SELF_CUSTODY_USER else w.keystore().load(user)


def propose(w: World, body: dict[str, Any], cosigners: list[str], *, by: str = SELF_CUSTODY_USER) -> Any:
    signed = sign_body(body, [key_of(w, by)], log_id=LOG_ID)
    return w.client.post("/proposals", json={**signed, "cosigners": cosigners}, headers=w.auth(by))


def cosign(w: World, pid: str, user: str, body: dict[str, Any], *, signer: Signer | None = None) -> Any:
    sig = sign_body(body, [signer or key_of(w, user)], log_id=LOG_ID)["sigs"][0]
    return w.client.post(f"/proposals/{pid}/cosign", json={"sig": sig}, headers=w.auth(user))


def problem(resp: Any, status: int, type_: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = dict(resp.json())
    assert body["type"] == PROBLEM + type_, body
    return body


def test_a_count_beyond_tolerance_through_a_proposal(world: World) -> None:
    body = count_body()
    before = world.entry_count()
    resp = propose(world, body, ["olga"])
    assert resp.status_code == 201, resp.text
    opened = resp.json()
    assert opened["status"] == "open" and opened["cosigners"] == ["olga"]
    assert opened["signed_by"] == [SELF_CUSTODY_USER]
    assert opened["expires_at"] <= format_time(datetime.now(UTC) + timedelta(hours=24))
    pid = opened["id"]
    assert world.entry_count() == before  # never in the log until complete

    waiting = world.client.get("/proposals", params={"for": "me"}, headers=world.auth("olga")).json()
    assert [p["id"] for p in waiting["proposals"]] == [pid]
    assert world.client.get("/proposals", params={"for": "me"}, headers=world.auth("oscar")).json() == {"proposals": []}
    shown = world.client.get(f"/proposals/{pid}", headers=world.auth("olga")).json()
    assert shown["entry"] == body and shown["log_id"] == LOG_ID
    assert "book: 38 t" in shown["summary"] and "counted: 37 t" in shown["summary"]
    assert shown["waiting_for"] == ["olga"]

    done = cosign(world, pid, "olga", shown["entry"])
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["status"] == "appended"
    assert result["signed_by"] == [SELF_CUSTODY_USER, "olga"]
    seq = result["outcome"]["seq"]
    assert world.entry_count() == before + 1 and seq == before
    # Every signer reads the outcome; nothing waits any more.
    mine = world.client.get(f"/proposals/{pid}", headers=world.auth(SELF_CUSTODY_USER)).json()
    assert mine["outcome"] == {"result": "appended", "seq": seq}
    assert world.client.get("/proposals", params={"for": "me"}, headers=world.auth("olga")).json() == {"proposals": []}


def test_the_reducer_still_decides_and_the_outcome_says_why(world: World) -> None:
    # kim is an operator, but of another site: not a second officer for SITE_A.
    resp = propose(world, count_body(), ["kim"])
    pid = resp.json()["id"]
    before = world.entry_count()
    result = cosign(world, pid, "kim", resp.json()["entry"]).json()
    assert result["status"] == "refused"
    assert result["outcome"]["result"] == "refused"
    assert result["outcome"]["problem"]["type"] == PROBLEM + "rule/second-officer"
    assert world.entry_count() == before


def test_a_cosignature_by_someone_not_named_is_refused(world: World) -> None:
    body = count_body()
    pid = propose(world, body, ["olga"]).json()["id"]
    problem(cosign(world, pid, "oscar", body), 404, "not-found")  # as if it did not exist
    problem(world.client.get(f"/proposals/{pid}", headers=world.auth("oscar")), 404, "not-found")
    # Nor can a named co-signer send someone else's key as theirs.
    problem(cosign(world, pid, "olga", body, signer=key_of(world, "oscar")), 403, "forbidden")
    assert world.client.get(f"/proposals/{pid}", headers=world.auth("olga")).json()["signed_by"] == [SELF_CUSTODY_USER]


def test_the_proposer_cannot_sign_twice(world: World) -> None:
    body = count_body()
    pid = propose(world, body, ["olga"]).json()["id"]
    problem(cosign(world, pid, SELF_CUSTODY_USER, body), 409, "conflict")
    # Naming oneself as co-signer is refused up front.
    problem(propose(world, count_body(), [SELF_CUSTODY_USER]), 422, "invalid-entry")


def test_a_cosignature_after_expiry_is_refused(world: World) -> None:
    body = count_body()
    pid = propose(world, body, ["olga"]).json()["id"]
    with world.svc.ledger.engine.begin() as conn:
        conn.execute(
            update(proposals)
            .where(proposals.c.id == pid)
            .values(
                created_at=format_time(datetime.now(UTC) - timedelta(hours=25)),
                expires_at=format_time(datetime.now(UTC) - timedelta(seconds=1)),
            )
        )
    assert world.client.get(f"/proposals/{pid}", headers=world.auth("olga")).json()["status"] == "expired"
    assert world.client.get("/proposals", params={"for": "me"}, headers=world.auth("olga")).json() == {"proposals": []}
    before = world.entry_count()
    body409 = problem(cosign(world, pid, "olga", body), 409, "conflict")
    assert "expired" in body409["detail"]
    assert world.entry_count() == before
    # An entry signed more than 24 hours ago cannot even be proposed.
    old = count_body()
    old["created_at"] = format_time(datetime.now(UTC) - timedelta(hours=25))
    problem(propose(world, old, ["olga"]), 409, "conflict")


def test_a_cosignature_over_a_changed_body_is_refused(world: World) -> None:
    body = count_body()
    pid = propose(world, body, ["olga"]).json()["id"]
    changed = copy.deepcopy(body)
    changed["counted"] = 30_000_000  # what olga was not shown
    problem(cosign(world, pid, "olga", changed), 422, "bad-signature")
    # Signed for another log: refused too.
    sig = sign_body(body, [key_of(world, "olga")], log_id="eu.example/ledger")["sigs"][0]
    resp = world.client.post(f"/proposals/{pid}/cosign", json={"sig": sig}, headers=world.auth("olga"))
    problem(resp, 422, "bad-signature")
    shown = world.client.get(f"/proposals/{pid}", headers=world.auth("olga")).json()
    assert shown["status"] == "open" and shown["signed_by"] == [SELF_CUSTODY_USER]


def test_a_withdrawn_proposal_cannot_be_signed(world: World) -> None:
    body = count_body()
    pid = propose(world, body, ["olga"]).json()["id"]
    problem(world.client.post(f"/proposals/{pid}/withdraw", headers=world.auth("olga")), 403, "forbidden")
    resp = world.client.post(f"/proposals/{pid}/withdraw", headers=world.auth(SELF_CUSTODY_USER))
    assert resp.status_code == 200 and resp.json()["status"] == "withdrawn"
    before = world.entry_count()
    body409 = problem(cosign(world, pid, "olga", body), 409, "conflict")
    assert "withdrawn" in body409["detail"]
    assert world.entry_count() == before
    problem(world.client.post(f"/proposals/{pid}/withdraw", headers=world.auth(SELF_CUSTODY_USER)), 409, "conflict")


def test_only_entries_that_need_cosigners_are_proposed_by_their_author(world: World) -> None:
    receipt = new_body("test.movement", SELF_CUSTODY_USER, account="ACC", delta=1)
    problem(propose(world, receipt, ["olga"]), 422, "invalid-entry")
    # The caller must be the author, signing with an active key of their own.
    body = count_body()
    signed = sign_body(body, [key_of(world, SELF_CUSTODY_USER)], log_id=LOG_ID)
    resp = world.client.post("/proposals", json={**signed, "cosigners": ["olga"]}, headers=world.auth("oscar"))
    problem(resp, 403, "forbidden")
    other = count_body()
    signed = sign_body(other, [key_of(world, "olga")], log_id=LOG_ID)  # sam's entry, olga's key
    resp = world.client.post("/proposals", json={**signed, "cosigners": ["oscar"]}, headers=world.auth(SELF_CUSTODY_USER))
    problem(resp, 403, "key-not-authorised")
    problem(propose(world, count_body(), ["nobody"]), 422, "invalid-entry")


def test_proposals_on_postgresql(pg_world: World) -> None:
    body = count_body()
    pid = propose(pg_world, body, ["olga"]).json()["id"]
    result = cosign(pg_world, pid, "olga", body).json()
    assert result["status"] == "appended", result


def test_custodial_cosign_signs_only_as_the_caller(world: World) -> None:
    """Custodial mode (issue #9 item 4): with no signature sent, the service signs with
    the caller's own custodial key, and only for a proposal that names the caller."""
    body = count_body()
    pid = propose(world, body, ["olga"]).json()["id"]
    # oscar, whose custodial key the server also holds, cannot have it sign for olga's
    # place, nor for a proposal that does not name him.
    problem(world.client.post(f"/proposals/{pid}/cosign", json={}, headers=world.auth("oscar")), 404, "not-found")
    # sam's own key is not on the server at all: nothing to sign with.
    problem(world.client.post(f"/proposals/{pid}/cosign", json={}, headers=world.auth(SELF_CUSTODY_USER)), 403, "forbidden")
    resp = world.client.post(f"/proposals/{pid}/cosign", json={}, headers=world.auth("olga"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "appended"
    with world.svc.reader.connect() as conn:
        olga_keys = {k.public_key for k in read_user_keys(conn, "olga") if k.custody == "server"}
        row = conn.execute(select(entries.c.leaf).where(entries.c.seq == resp.json()["outcome"]["seq"])).one()
    sigs = json.loads(row.leaf)["sigs"]
    assert sigs[0]["pub"] == world.template.sam.public_key.hex()
    assert sigs[1]["pub"] in olga_keys


def test_concurrent_cosignatures_append_once_on_postgresql(pg_world: World) -> None:
    """The same co-signer twice at once (a double click, a retry): one signature, one
    entry; the other request is refused, never a 5xx."""
    import threading

    body = count_body()
    pid = propose(pg_world, body, ["olga"]).json()["id"]
    before = pg_world.entry_count()
    statuses: list[int] = []
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        statuses.append(cosign(pg_world, pid, "olga", body).status_code)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses) == [200, 409], statuses
    assert pg_world.entry_count() == before + 1
