"""The registry read routes the client needs (``api/routes/registry.py``): roles and
scope as the other reads, shapes shared with the local CLI (``ledger/views.py``)."""

from __future__ import annotations

from sqlalchemy import insert

from ledger.store.schema import loans
from tests import api_fixtures
from tests.api_fixtures import JP, KR, SITE_A, SITE_K, World

api_template = api_fixtures.api_template
world = api_fixtures.world


def test_reference_data_is_readable_by_every_role(world: World) -> None:
    for user in ("olga", "fiona", "max", "audrey", "admin"):
        got = world.client.get("/registry/owners", headers=world.auth(user))
        assert got.status_code == 200, got.text
        assert JP in [o["code"] for o in got.json()["owners"]]
        assert world.client.get("/registry/materials", headers=world.auth(user)).status_code == 200
        assert world.client.get("/registry/lots", headers=world.auth(user)).status_code == 200
    assert world.client.get("/registry/owners").status_code == 401


def test_keys_and_users_only_for_security_admins_and_auditors(world: World) -> None:
    for user in ("admin", "audrey"):
        keys = world.client.get("/registry/keys", headers=world.auth(user))
        assert keys.status_code == 200
        assert {"olga", "fiona"} <= {k["user"] for k in keys.json()["keys"]}
        users = world.client.get("/registry/users", headers=world.auth(user)).json()["users"]
        assert "log" not in {u["user"] for u in users}
        olga = next(u for u in users if u["user"] == "olga")
        assert olga["roles"] == ["operator"] and olga["sites"] == [SITE_A]
    for user in ("olga", "fiona", "max"):
        assert world.client.get("/registry/keys", headers=world.auth(user)).status_code == 403
        assert world.client.get("/registry/users", headers=world.auth(user)).status_code == 403


def test_policies_need_an_aggregate_reader(world: World) -> None:
    assert world.client.get("/registry/policies", headers=world.auth("olga")).status_code == 403
    assert world.client.get("/registry/policies", headers=world.auth("fiona")).status_code == 200


def test_loans_are_filtered_by_scope(world: World) -> None:
    # Two open loans in the projection (the read route only reads it): one at each site.
    with world.svc.ledger.engine.begin() as conn:
        for i, (site, owner) in enumerate(((SITE_A, JP), (SITE_K, KR))):
            conn.execute(insert(loans).values(
                id=f"{i:032x}", owner=owner, site=site, lot="L", material="M", borrower="B",
                quantity=10, outstanding=5, due_at="2030-01-01T00:00:00Z", premium_pct="1", lent_seq=1,
            ))
    seen = {u: [x["site"] for x in world.client.get("/registry/loans", headers=world.auth(u)).json()["loans"]]
            for u in ("kim", "olga", "fiona", "audrey")}
    assert seen == {"kim": [SITE_K], "olga": [SITE_A], "fiona": [SITE_A], "audrey": [SITE_A, SITE_K]}
    assert world.client.get("/registry/loans", headers=world.auth("admin")).status_code == 403


def test_ref_names_only_the_entry_id(world: World) -> None:
    got = world.client.get("/registry/refs/1", headers=world.auth("olga"))
    assert got.status_code == 200
    assert set(got.json()) == {"seq", "entry_id", "kind"}
    assert world.client.get("/registry/refs/999999", headers=world.auth("olga")).status_code == 404
    assert world.client.get("/registry/refs/-1", headers=world.auth("olga")).status_code == 422
