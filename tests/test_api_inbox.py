"""Issue #12 over HTTP: inboxes (``GET /transfers?inbound=true``, ``GET
/orders?executable=true``) scoped by the caller's sites, references people can type in
path params, approval comments in the order's report, the registry lists per role."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.service import Ledger
from ledger.store.schema import entries
from ledger.timefmt import now
from tests import api_fixtures
from tests.api_fixtures import JP, LOT_NDPR, NDPR, SITE_A, SITE_B, World
from tests.release_helpers import order, request, set_policy

api_template = api_fixtures.api_template
world = api_fixtures.world


def _get(w: World, user: str, path: str, status: int = 200, **params: Any) -> Any:
    got = w.client.get(path, headers=w.auth(user), params=params)
    assert got.status_code == status, (user, path, got.text)
    return got.json()


def _dispatch(led: Ledger) -> str:
    res = led.act(
        "olga", "stock.dispatch", site=SITE_A, owner=JP, lot=LOT_NDPR, quantity=1_000_000,
        occurred_at=now(), to_site=SITE_B, reference="TR-INBOX",
    )
    return led.entry_ref(str(res.first_seq))


def _authorised(led: Ledger, *, sites: list[str], comment: str = "") -> tuple[str, str]:
    """A JP NDPR emergency release ordered for ``sites``: (request id, order id)."""
    set_policy(led, JP, NDPR, minister="mina", quorum=1)
    req = request(led, "fiona", JP, NDPR, 2_000_000, "Shin-Etsu", "emergency_release")
    fields = {"comment": comment} if comment else {}
    led.act("felix", "release.approved", request=req, **fields)
    return req, order(led, "max", req, 2_000_000, "emergency_release", sites)


def test_inbound_transfers_only_to_the_operators_own_sites(world: World) -> None:
    tid = _dispatch(world.svc.ledger)
    inbound = {u: [t["id"] for t in _get(world, u, "/transfers", inbound="true")["transfers"]]
               for u in ("omar", "olga", "oscar", "kim")}
    # On its way to B: omar's inbox; never olga's (she sent it), never kim's (site K).
    assert inbound == {"omar": [tid], "olga": [], "oscar": [], "kim": []}
    t = _get(world, "omar", "/transfers", inbound="true")["transfers"][0]
    assert (t["from_site"], t["to_site"], t["quantity_g"], t["quantity"]) == (SITE_A, SITE_B, 1_000_000, "1 t")
    # Without --inbound: either end of the caller's sites; owners for officials; all for auditors.
    seen = {u: [t["id"] for t in _get(world, u, "/transfers")["transfers"]]
            for u in ("olga", "omar", "kim", "fiona", "elena", "audrey")}
    assert seen == {"olga": [tid], "omar": [tid], "kim": [], "fiona": [tid], "elena": [], "audrey": [tid]}
    # An official has no sites: the inbox is an operator's, said so (not an empty list).
    assert _get(world, "fiona", "/transfers", 403, inbound="true")["type"].endswith("forbidden")
    assert world.client.get("/transfers", headers=world.auth("admin")).status_code == 403
    # Once it arrives it leaves the inbox.
    world.svc.ledger.act("omar", "stock.arrival", site=SITE_B, transfer=tid, quantity=1_000_000,
                         occurred_at=now(), shortfall_reason="")
    assert _get(world, "omar", "/transfers", inbound="true")["transfers"] == []


def test_executable_orders_at_the_operators_sites(world: World) -> None:
    led = world.svc.ledger
    _, oid = _authorised(led, sites=[SITE_A])
    ex = {u: [o["id"] for o in _get(world, u, "/orders", executable="true")["orders"]]
          for u in ("olga", "oscar", "omar", "kim", "fiona", "elena", "audrey")}
    assert ex == {"olga": [oid], "oscar": [oid], "omar": [], "kim": [], "fiona": [oid], "elena": [], "audrey": [oid]}
    got = _get(world, "olga", "/orders", executable="true")["orders"][0]
    assert got["executable_at"] == [SITE_A] and got["remaining_g"] == 2_000_000 and got["remaining"] == "2 t"
    # Revoked: not executable any more, still listed without the filter.
    led.act("max", "release.order_revoked", order=oid, reason="crisis over")
    assert _get(world, "olga", "/orders", executable="true")["orders"] == []
    listed = _get(world, "olga", "/orders")["orders"]
    assert [o["id"] for o in listed] == [oid] and listed[0]["executable_at"] == []


def test_path_params_take_seq_id_and_prefix(world: World) -> None:
    led = world.svc.ledger
    set_policy(led, JP, NDPR, minister="mina", quorum=1)
    req = request(led, "fiona", JP, NDPR, 2_000_000, "Shin-Etsu", "emergency_release")
    # Approve by an 8-character prefix of the request's id.
    got = world.client.post(f"/releases/requests/{req[:8]}/approve", json={"comment": "stock is low"},
                            headers=world.auth("felix"))
    assert got.status_code == 201, got.text
    oid = order(led, "max", req, 2_000_000, "emergency_release", [SITE_A])
    with led.engine.connect() as conn:
        oseq = conn.execute(entries.select().where(entries.c.entry_id == oid)).one().seq
    # The report by the order's seq, id, prefix, and by the request: one report.
    reports = [_get(world, "fiona", f"/releases/orders/{ref}/report") for ref in (str(oseq), oid, oid[:8], req[:10])]
    assert {r["order"]["id"] for r in reports} == {oid}
    # The approval comment is in the order's report.
    assert [(a["user"], a["comment"]) for a in reports[0]["approvals"]] == [("felix", "stock is low")]
    # A seq that is not an order, unknown and malformed references: 4xx, one line, never 5xx.
    assert _get(world, "fiona", "/releases/orders/1/report", 404)["detail"].startswith("no release order")
    assert world.client.get("/releases/orders/0123456789ab/report", headers=world.auth("fiona")).status_code == 404
    assert world.client.get("/releases/orders/abc/report", headers=world.auth("fiona")).status_code == 422
    assert world.client.get("/releases/orders/zz!/report", headers=world.auth("fiona")).status_code == 422


def test_registry_ref_refuses_an_ambiguous_prefix_with_seqs(world: World) -> None:
    led = world.svc.ledger
    from ledger.service import new_body

    seqs = []
    for i, code in enumerate(("AA-ONE", "AA-TWO")):
        body = new_body("owner.registered", "admin", code=code, name=code, country="JP")
        body["id"] = "feedface" + f"{i}" * 24
        seqs.append(led.submit(body, [led.signer_for("admin")]).first_seq)
    got = _get(world, "olga", "/registry/refs/feedface", 422)
    assert f"seqs {seqs[0]}, {seqs[1]}" in got["detail"]
    assert _get(world, "olga", "/registry/refs/feedface1")["seq"] == seqs[1]
    assert _get(world, "olga", "/registry/refs/feedface", kind="release.ordered", status=404)


def test_key_refs_by_user_name_scoped(world: World) -> None:
    # The admin names anyone's key by the user's name (one active key) ...
    oscar = _get(world, "admin", "/registry/keys/oscar")
    assert oscar["user"] == "oscar" and len(oscar["key_id"]) == 64
    assert _get(world, "admin", f"/registry/keys/{oscar['key_id'][:10]}")["key_id"] == oscar["key_id"]
    # ... olga (with spare keys, several active) must be named by a key id.
    refused = _get(world, "admin", "/registry/keys/olga", 422)
    assert "active keys" in refused["detail"]
    # Everyone else only their own keys: another's is "no such key".
    assert _get(world, "omar", "/registry/keys/omar")["user"] == "omar"
    assert world.client.get("/registry/keys/oscar", headers=world.auth("omar")).status_code == 404


def test_policies_users_and_keys_lists_per_role(world: World) -> None:
    set_policy(world.svc.ledger, JP, NDPR, minister="mina", quorum=1)
    # Officials and ministers see their owners' policies in force; elena (EU) none of JP's.
    for user in ("fiona", "mina", "audrey"):
        pols = _get(world, user, "/registry/policies")["policies"]
        assert [(p["owner"], p["material"], p["in_force"]) for p in pols] == [(JP, NDPR, True)], user
    assert _get(world, "elena", "/registry/policies")["policies"] == []
    for user in ("admin", "audrey"):
        users = {u["user"] for u in _get(world, user, "/registry/users")["users"]}
        assert {"olga", "omar", "kim", "fiona", "audrey", "admin"} <= users
        assert "olga" in {k["user"] for k in _get(world, user, "/registry/keys")["keys"]}
    for user in ("olga", "fiona"):
        assert world.client.get("/registry/users", headers=world.auth(user)).status_code == 403


@pytest.mark.parametrize("path", ["/transfers", "/orders"])
def test_inbox_lists_need_a_token(world: World, path: str) -> None:
    assert world.client.get(path).status_code == 401
    flag = "inbound" if path == "/transfers" else "executable"
    got = world.client.get(path, params={flag: "maybe"}, headers=world.auth("olga"))
    assert got.status_code == 422 and got.json()["field"] == flag


def test_revoke_a_key_by_user_name_or_prefix(world: World) -> None:
    # Anyone names their own key by their name; a security admin any key by a prefix.
    got = world.client.post("/keys/oscar/revoke", json={"reason": "laptop lost"}, headers=world.auth("oscar"))
    assert got.status_code == 201, got.text
    kim = _get(world, "admin", "/registry/keys/kim")["key_id"]
    got = world.client.post(f"/keys/{kim[:9]}/revoke", json={"reason": "left"}, headers=world.auth("admin"))
    assert got.status_code == 201, got.text
    revoked = {k["user"] for k in _get(world, "audrey", "/registry/keys")["keys"] if k["revoked_seq"] is not None}
    assert {"oscar", "kim"} <= revoked
    # Someone else's key by name is not theirs to name; a full id still reaches the rules.
    assert world.client.post("/keys/omar/revoke", json={"reason": "x"}, headers=world.auth("olga")).status_code == 404
    omar = _get(world, "admin", "/registry/keys/omar")["key_id"]
    refused = world.client.post(f"/keys/{omar}/revoke", json={"reason": "x"}, headers=world.auth("olga"))
    assert refused.status_code == 409, refused.text
