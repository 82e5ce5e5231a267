"""End to end over HTTP, every person with their own key in their own keystore (issue #9).

An operator, a second officer, a security admin, a minister and two officials each hold
one key, in a keystore directory of their own, and never anything else. The server holds
only its own keys (log, token issuer) and the bootstrap admin of ``reserve init``, which
the security admin revokes once she is registered. Everyone logs in by key login and
signs their entries (v2, bound to the log) on their side:

receipt (POST /entries) -> count beyond tolerance (a proposal co-signed by the second
officer) -> release policy (a proposal co-signed by the minister) -> release request ->
approval -> ministerial order -> release executed; then the history verifies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import TOKEN_KEY_NAME, build_services
from keys import FileKeystore, load_or_create_sealer
from ledger.bundle import Bundle
from ledger.crypto import Signer, key_id
from ledger.entries import sign_body
from ledger.locations import Location
from ledger.login import sign_login
from ledger.service import Ledger, new_body
from ledger.store.audit import export_bundle, verify_database
from ledger.store.db import make_engine
from ledger.timefmt import format_time, now, parse_time
from ledger.verify import verify_history
from tests.api_fixtures import api_settings

PASS = b"server-passphrase"
LOG_ID = "jp.example/reserve"
JP, NDPR, LOT, SITE = "JP-RESERVE", "NDPR-OXIDE", "LOT-E2E-1", "SITE-7F3K"
PEOPLE = {
    # user: (roles, sites, owners)
    "sara": (["security_admin"], [], []),
    "olga": (["operator"], [SITE], []),
    "oscar": (["operator"], [SITE], []),
    "mina": (["minister"], [], [JP]),
    "fiona": (["official"], [], [JP]),
    "felix": (["official"], [], [JP]),
}


@dataclass
class Person:
    """One person's machine: their own keystore, their own key, their token."""

    name: str
    keystore: FileKeystore
    key: Signer
    token: str = ""

    def auth(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token}


@dataclass
class Site:
    client: TestClient
    server: Ledger
    server_keys: FileKeystore
    people: dict[str, Person]
    home: Path

    def login(self, who: Person) -> None:
        c = self.client.post("/auth/challenge", json={"user": who.name}).json()
        assert c["log_id"] == LOG_ID
        resp = self.client.post(
            "/auth/token",
            json={
                "nonce": c["nonce"],
                "public_key": who.key.public_key.hex(),
                "signature": sign_login(who.key, log_id=c["log_id"], nonce=c["nonce"]),
            },
        )
        assert resp.status_code == 200, resp.text
        who.token = resp.json()["access_token"]

    def submit(self, who: Person, kind: str, **fields: Any) -> dict[str, Any]:
        """Built and signed on ``who``'s side, sent to POST /entries."""
        body = new_body(kind, who.name, **fields)
        resp = self.client.post("/entries", json=sign_body(body, [who.key], log_id=LOG_ID), headers=who.auth())
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def propose(self, who: Person, body: dict[str, Any], cosigners: list[str]) -> str:
        signed = sign_body(body, [who.key], log_id=LOG_ID)
        resp = self.client.post("/proposals", json={**signed, "cosigners": cosigners}, headers=who.auth())
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def cosign_waiting(self, who: Person) -> dict[str, Any]:
        """What a co-signer does: list what waits, read it, sign exactly that."""
        waiting = self.client.get("/proposals", params={"for": "me"}, headers=who.auth()).json()["proposals"]
        assert len(waiting) == 1, waiting
        shown = self.client.get(f"/proposals/{waiting[0]['id']}", headers=who.auth()).json()
        assert shown["log_id"] == LOG_ID and who.name in shown["waiting_for"]
        sig = sign_body(shown["entry"], [who.key], log_id=shown["log_id"])["sigs"][0]
        resp = self.client.post(f"/proposals/{shown['id']}/cosign", json={"sig": sig}, headers=who.auth())
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    home = tmp_path / "server"
    home.mkdir()
    db_url = f"sqlite:///{home / 'ledger.db'}"
    server_keys = FileKeystore(home / "keys", passphrase=PASS)
    server = Ledger(make_engine(db_url), server_keys, lambda: load_or_create_sealer(home / "keys", passphrase=PASS))
    server.init(log_id=LOG_ID, admin="root")  # `reserve init`: the bootstrap admin

    people = {}
    for name in PEOPLE:
        ks = FileKeystore(tmp_path / "machines" / name / "keys", passphrase=f"{name}'s own passphrase".encode())
        people[name] = Person(name, ks, ks.generate(name))
    sara = people["sara"]
    # The one step on the server: the bootstrap admin registers the security admin's OWN key.
    server.register_key(admin="root", user="sara", roles=["security_admin"], sites=[], owners=[],
                        clearance="NONE", public_key=sara.key.public_key)
    # Reference data whose sealed location only the server can store (local mode).
    server.act("root", "owner.registered", code=JP, name="JOGMEC national reserve", country="JP")
    server.act("root", "material.registered", code=NDPR, name="NdPr oxide", form="oxide", base_unit="g",
               grade_basis="TREO")
    server.register_site(admin="root", code=SITE, classification="SECRET", custodian=JP, owners=[JP],
                         location=Location(name="Store 7", address="1 Quay", latitude=35.0, longitude=139.0))

    svc = build_services(api_settings(home, db_url), passphrase=PASS)
    client = TestClient(create_app(svc), raise_server_exceptions=False)
    s = Site(client=client, server=server, server_keys=server_keys, people=people, home=home)
    try:
        yield s
    finally:
        svc.committer.close()
        svc.ledger.engine.dispose()
        svc.reader.dispose()


def test_everyone_signs_with_their_own_key(site: Site) -> None:
    p = site.people
    sara, olga, oscar, mina, fiona, felix = (p[n] for n in ("sara", "olga", "oscar", "mina", "fiona", "felix"))

    # The security admin logs in with her key and registers everyone's own public key.
    site.login(sara)
    for name, (roles, sites, owners) in PEOPLE.items():
        if name != "sara":
            site.submit(sara, "key.registered", user=name, public_key=p[name].key.public_key.hex(), roles=roles,
                        sites=sites, owners=owners, clearance="NONE", custody="self")
    # The bootstrap admin's custodial key is retired: from now on the server can sign
    # as nobody.
    root = site.server.active_key_of("root")
    site.submit(sara, "key.revoked", key_id=root.key_id, reason="bootstrap done: admins hold their own keys")
    for who in (olga, oscar, mina, fiona, felix):
        site.login(who)

    # A lot and a receipt, signed by the operator's own key (v2, bound to this log).
    site.submit(olga, "lot.registered", code=LOT, material=NDPR, origin="AU", supplier="Lynas", purity="99.50",
                basis="TREO", certificate_sha256="ab" * 32, containers=[])
    site.submit(olga, "stock.receipt", site=SITE, owner=JP, lot=LOT, quantity=50_000_000, occurred_at=now(),
                supplier="Lynas", accepted_purity="99.50", reference="PO-E2E-1")

    # A count beyond tolerance: proposed by the operator, co-signed by the second officer.
    count = new_body("stock.count", "olga", site=SITE, owner=JP, lot=LOT, book=50_000_000, counted=49_000_000,
                     occurred_at=now())
    alone = site.client.post("/entries", json=sign_body(count, [olga.key], log_id=LOG_ID), headers=olga.auth())
    assert alone.status_code == 409 and alone.json()["type"].endswith("rule/count-tolerance")
    site.propose(olga, count, ["oscar"])
    done = site.cosign_waiting(oscar)
    assert done["status"] == "appended" and done["signed_by"] == ["olga", "oscar"], done
    assert "counted: 49 t" in done["summary"]

    # A release policy: the security admin proposes, the minister co-signs.
    effective = format_time(parse_time(now()) + timedelta(seconds=2))
    policy = new_body("policy.set", "sara", owner=JP, material=NDPR, quorum=1, crisis_index="IDX-NDPR",
                      crisis_currency="USD", crisis_threshold="100", count_tolerance_pct="0.5",
                      regimes=["emergency_release"], effective_at=effective)
    site.propose(sara, policy, ["mina"])
    done = site.cosign_waiting(mina)
    assert done["status"] == "appended" and done["signed_by"] == ["sara", "mina"], done
    while now() <= effective:
        time.sleep(0.05)

    # A release request, an approval, the minister's order, and its execution.
    req = site.submit(fiona, "release.requested", owner=JP, material=NDPR, quantity=5_000_000,
                      recipient="Tokai Magnetics", regime="emergency_release", purpose="supply cut",
                      evidence={"type": "exhaustion_declaration", "document_sha256": "ee" * 32})
    site.submit(felix, "release.approved", request=req["entry_id"])
    start = now()
    order = site.submit(mina, "release.ordered", request=req["entry_id"], cap=5_000_000, valid_from=start,
                        valid_until=format_time(parse_time(start) + timedelta(days=1)), sites=[SITE],
                        regime="emergency_release", report_to="Diet committee")
    site.submit(olga, "stock.release", site=SITE, owner=JP, lot=LOT, quantity=2_000_000, occurred_at=now(),
                order=order["entry_id"], recipient="Tokai Magnetics")

    # No keystore holds a second person's key; the server holds no active user key.
    for person in p.values():
        assert person.keystore.names() == [person.name]
    server_names = set(site.server_keys.names())
    assert server_names == {"log", "root", TOKEN_KEY_NAME}
    registered = {k.key_id: k for k in site.server.registered_keys()}
    for name in server_names - {"log", TOKEN_KEY_NAME}:
        rec = registered[key_id(site.server_keys.public_key(name))]
        assert rec.revoked_seq is not None, name
    for person in p.values():
        rec = registered[person.key.key_id]
        assert rec.user == person.name and rec.custody == "self" and rec.revoked_seq is None

    # The history verifies: on the server's database and as an auditor's bundle.
    trusted = site.server.log_signer().public_key
    report = verify_database(site.server.engine, trusted_log_key=trusted)
    out = site.home / "bundle"
    export_bundle(site.server.engine, out)
    bundle = Bundle(out)
    bundle.check_files()
    offline = verify_history(bundle.rows(), bundle.checkpoints(), trusted_log_key=trusted,
                             projections=bundle.projections(), jobs=2)
    assert offline.size == report.size and offline.root == report.root
    assert not site.server.is_demo()
