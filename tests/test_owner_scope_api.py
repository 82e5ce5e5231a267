"""``GET /log/bundle?owner=CODE`` (issue #14): an auditor scoped to an owner gets that
owner's scoped bundle, verifiable offline, and nothing else."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import IO

from cli.audit import HttpAuditSource
from ledger.audit_sync import sync
from ledger.bundle_tar import extract_bundle
from ledger.owner_bundle import verify_owner_bundle
from ledger.policy import AUDITOR
from ledger.store import owner_scope
from ledger.store.audit import verify_database
from tests import api_fixtures
from tests.api_fixtures import World
from tests.stock_scenario import EU, JP, LOT_NDPR_1, SITE_A
from tests.test_owner_scope import _receipt, key_file, keyring

api_template = api_fixtures.api_template
world = api_fixtures.world


def test_scoped_auditor_gets_only_their_owners_bundle(world: World, tmp_path: Path) -> None:
    led = world.svc.ledger
    before_enable = world.client.get(f"/log/bundle?owner={JP}", headers=world.auth("audrey"))
    assert before_enable.status_code == 404 and "not enabled" in before_enable.json()["detail"]
    owner_scope.enable(led.engine, keyring=keyring(led))  # a v1 history switched to v2 mid-way
    led.register_key(admin="admin", user="jean", roles=[AUDITOR], sites=[], owners=[JP], clearance="NONE")
    seq = _receipt(led, "olga", SITE_A, JP, LOT_NDPR_1, 1_000, "Lynas Rare Earths", "PO-JP-9")
    before = len(world.access_events())
    resp = world.client.get(f"/log/bundle?owner={JP}", headers=world.auth("jean"))
    assert resp.status_code == 200, resp.text
    extract_bundle(io.BytesIO(resp.content), tmp_path / "b")
    rep = verify_owner_bundle(
        tmp_path / "b", owner=JP, key_file=key_file(led, JP),
        trusted_log_key=led.log_signer().public_key,
    )  # fmt: skip
    assert rep.size == world.entry_count() and rep.given >= seq
    events = world.access_events()[before:]
    assert [(e["event"]["actor"], e["event"].get("owner")) for e in events] == [("jean", JP)]

    # Another owner's bundle: the answer of an owner that does not exist.
    other = world.client.get(f"/log/bundle?owner={EU}", headers=world.auth("jean"))
    missing = world.client.get("/log/bundle?owner=NOBODY", headers=world.auth("jean"))
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"].replace(EU, "X") == missing.json()["detail"].replace("NOBODY", "X")
    assert world.client.get("/log/bundle", headers=world.auth("jean")).status_code == 403
    # An unscoped auditor may take any owner's; others none; bad codes are 422.
    assert world.client.get(f"/log/bundle?owner={EU}", headers=world.auth("audrey")).status_code == 200
    assert world.client.get(f"/log/bundle?owner={JP}", headers=world.auth("olga")).status_code == 403
    assert world.client.get("/log/bundle?owner=..%2Fx", headers=world.auth("audrey")).status_code == 422
    # The v1 history before the switch and the v2 leaves after it verify as one log.
    assert verify_database(led.engine, trusted_log_key=led.log_signer().public_key).size == world.entry_count()


class ClientSource(HttpAuditSource):
    """The client's HTTP audit source, its requests answered by the app in process."""

    def __init__(self, world: World, user: str):
        super().__init__("http://testserver", world.auth(user))
        self.client = world.client

    def _open(self, path: str, **query: int) -> IO[bytes]:
        resp = self.client.get(path, params=query, headers=self.headers)
        assert resp.status_code == 200, resp.text
        return io.BytesIO(resp.content)


def test_audit_sync_over_http_across_the_v2_switch(world: World, tmp_path: Path) -> None:
    """``reserve audit sync`` on a log switched to v2: ``GET /log/commitments`` gives each
    v2 leaf's C with ``/log/leaves``, and with the owners' key files each C is checked."""
    led = world.svc.ledger
    state = tmp_path / "audit"
    first = sync(state, ClientSource(world, "audrey"), trusted_log_key=led.log_signer().public_key)
    owner_scope.enable(led.engine, keyring=keyring(led))
    _receipt(led, "olga", SITE_A, JP, LOT_NDPR_1, 1_000, "Lynas Rare Earths", "PO-JP-9")
    with led.engine.connect() as conn:
        secrets = {o: [e.secret for e in es] for o, es in owner_scope.read_secrets(conn, keyring=keyring(led)).items()}
        stored = owner_scope.read_commitments(conn, start=0, end=world.entry_count())
    resp = world.client.get(f"/log/commitments?start=0&end={world.entry_count()}", headers=world.auth("audrey"))
    assert resp.status_code == 200
    assert {int(d["seq"]): bytes.fromhex(d["commitment"]) for d in map(json.loads, resp.text.splitlines())} == stored
    assert stored and min(stored) == first.size  # v2 from the switch on
    r = sync(state, ClientSource(world, "audrey"), trusted_log_key=None, owner_secrets=secrets)
    assert (r.old_size, r.size) == (first.size, world.entry_count())
    assert r.root == verify_database(led.engine, trusted_log_key=None).root

    # The whole log's leaves and commitments are not for an auditor scoped to one owner.
    led.register_key(admin="admin", user="jean", roles=[AUDITOR], sites=[], owners=[JP], clearance="NONE")
    for route in ("/log/commitments?start=0&end=1", "/log/leaves?start=0&end=1", "/log/export", "/log/entries"):
        assert world.client.get(route, headers=world.auth("jean")).status_code == 403, route
        assert world.client.get(route, headers=world.auth("olga")).status_code == 403, route
    bad = world.client.get(f"/log/commitments?start=0&end={world.entry_count() + 1}", headers=world.auth("audrey"))
    assert bad.status_code == 422


def test_an_auditor_scoped_to_an_owner_fetches_its_key_file(world: World) -> None:
    """``GET /owners/CODE/scope-key``: the owner's key file, for an auditor scoped to that
    owner only, recorded in the access log; what ``reserve owner-scope key`` fetches in
    client mode."""
    led = world.svc.ledger
    owner_scope.enable(led.engine, keyring=keyring(led))
    led.register_key(admin="admin", user="jean", roles=[AUDITOR], sites=[], owners=[JP], clearance="NONE")
    before = len(world.access_events())
    resp = world.client.get(f"/owners/{JP}/scope-key", headers=world.auth("jean"))
    assert resp.status_code == 200, resp.text
    assert resp.text == key_file(led, JP) and resp.headers["cache-control"] == "no-store"
    assert ClientSource(world, "jean").owner_key(JP) == resp.text  # the client's own call
    events = world.access_events()[before:]
    assert [(e["event"]["actor"], e["event"]["action"], e["event"].get("owner")) for e in events][:1] == [
        ("jean", "scope-key", JP)
    ]
    secret = resp.json()["epochs"][0]["secret"]
    assert not any(secret in json.dumps(e) for e in world.access_events())  # never in a log
    other = world.client.get(f"/owners/{EU}/scope-key", headers=world.auth("jean"))
    missing = world.client.get("/owners/NOBODY/scope-key", headers=world.auth("jean"))
    assert other.status_code == missing.status_code == 404
    assert other.json()["detail"].replace(EU, "X") == missing.json()["detail"].replace("NOBODY", "X")
    # Full auditors get every key file out of band; other roles never.
    assert world.client.get(f"/owners/{JP}/scope-key", headers=world.auth("audrey")).status_code == 403
    assert world.client.get(f"/owners/{JP}/scope-key", headers=world.auth("olga")).status_code == 403
    assert world.client.get(f"/owners/{JP}/scope-key").status_code == 401
    assert world.client.get("/owners/..%2Fx/scope-key", headers=world.auth("jean")).status_code in (404, 422)
