"""Locations, salts and out-of-scope sites never leak (issue #4, DESIGN.md "Secrets").

* A full scenario is run as every user who may not open a location (uncleared, out of
  scope, auditor, admin); every response body and header, and every log line the service
  writes meanwhile, is scanned for the location strings, the salts (base64 and hex) and
  the codes of sites outside that user's scope.
* A site outside the caller's scope answers byte for byte as a site that does not exist
  (apart from the X-Request-ID value, and the code itself in the detail).
* The reveal: a cleared user in scope gets the opening, which checks against the signed
  commitment; the access-log entry is written first; if it cannot be written, nothing is
  revealed (503, and the sealed row is never opened).
* The access log: every reveal, refusal and export is there, paths HMAC'd, and it
  verifies for the auditor.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

import api.audit
import ledger.store.access
import ledger.store.locations
from ledger import policy
from ledger.canonical import canonical
from ledger.errors import StorageError
from ledger.locations import location_bytes, verify_opening
from ledger.policy import ADMIN, AUDITOR, OFFICIAL, OPERATOR
from ledger.store.access import keyed_hash
from ledger.store.locations import sealed_aad
from ledger.store.projections import read_table, read_user_keys
from ledger.store.schema import site_locations
from ledger.timefmt import now
from tests import api_fixtures
from tests.api_fixtures import (
    GHOST,
    JP,
    LOCATIONS,
    LOT_DY,
    LOT_GA,
    LOT_KR,
    LOT_NDPR,
    NDPR,
    SELF_CUSTODY_USER,
    SITE_A,
    SITE_B,
    SITE_K,
    SITES,
    Location,
    World,
    captured_logs,
    captured_stdlib_logs,
    location_needles,
    salt_needles,
)

# Fixtures (bound here so pytest finds them in this module).
api_template = api_fixtures.api_template
pg_world = api_fixtures.pg_world
world = api_fixtures.world

PROBLEM = "https://reserve-ledger.example/problems/"
PURPOSE = "scheduled safety inspection of the vault"


@dataclass
class Exchange:
    user: str
    method: str
    url: str
    status: int
    headers: str
    body: str

    def text(self) -> str:
        return f"{self.status}\n{self.headers}\n{self.body}"


class Session:
    """Requests as one user, every exchange kept."""

    def __init__(self, w: World, user: str):
        self.w = w
        self.user = user
        self.log: list[Exchange] = []
        self.tokens: list[str] = []

    def __call__(self, method: str, url: str, *, token: str | None = "auto", **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}) or {})
        if token == "auto":
            token = self.w.token(self.user)
        if token is not None:
            self.tokens.append(token)
            headers["Authorization"] = f"Bearer {token}"
        resp = self.w.client.request(method, url, headers=headers, **kw)
        self.log.append(
            Exchange(
                self.user,
                method,
                url,
                resp.status_code,
                "\n".join(f"{k}: {v}" for k, v in resp.headers.items()),
                resp.text,
            )
        )
        return resp


def principal(w: World, user: str) -> policy.Principal:
    with w.svc.reader.connect() as conn:
        return policy.Principal.from_keys(user, read_user_keys(conn, user))


def sites_in_scope(w: World, user: str) -> set[str]:
    p = principal(w, user)
    with w.svc.reader.connect() as conn:
        sites = read_table(conn, "sites").values()
    return {s.code for s in policy.visible_sites(p, sites)}


def may_open(w: World, user: str, site: str) -> bool:
    p = principal(w, user)
    with w.svc.reader.connect() as conn:
        rec = read_table(conn, "sites").get(site)
    try:
        policy.require_reveal(p, rec, site)
    except Exception:
        return False
    return True


def run_session(w: World, user: str) -> Session:
    """Everything this user's roles allow (and a few things they do not), with in-scope
    parameters only: no request names a site outside their scope."""
    s = Session(w, user)
    p = principal(w, user)
    scope = sorted(sites_in_scope(w, user))
    s("GET", "/health", token=None)
    s("GET", "/ready", token=None)
    s("GET", "/.well-known/jwks.json", token=None)
    s("GET", "/log/checkpoint", token=None)
    s("GET", "/openapi.json", token=None)
    s("GET", "/me")
    s("GET", "/sites")
    s("GET", "/no/such/route")
    s("GET", "/me", token=w.token(user, now=0))  # expired
    s("GET", "/me", token=None)
    for code in scope:
        s("GET", f"/sites/{code}")
        s("POST", f"/sites/{code}/reveal", json={"purpose": "too short"})
        if not may_open(w, user, code):
            s("POST", f"/sites/{code}/reveal", json={"purpose": PURPOSE})
        s("GET", f"/balances?site={code}")
    s("GET", "/balances")
    s("GET", f"/balances?owner={JP}&material={NDPR}")
    s("GET", "/balances?as_of_seq=20")
    for lot in (LOT_NDPR, LOT_DY, LOT_GA, LOT_KR, "NO-SUCH-LOT"):
        s("GET", f"/lots/{lot}/trace")
    s("GET", "/cover")
    s("GET", "/reports/crma")
    s("GET", "/loans/overdue")
    s("GET", "/log/checkpoints/3")
    s("GET", "/log/proofs/inclusion?seq=2&size=10")
    s("GET", "/log/proofs/consistency?old=3&new=12")
    s("GET", "/log/proofs/inclusion?seq=99999&size=10")
    s("GET", "/log/entries")
    s("GET", "/log/export")
    s("GET", "/log/access?limit=1000")
    s("GET", "/log/access/verify")
    if p.has(OPERATOR):
        site = sorted(p.sites)[0]
        owner = JP if site != SITE_K else "KR-KOMIR"
        lot = LOT_NDPR if site != SITE_K else LOT_KR
        move = {
            "site": site,
            "owner": owner,
            "lot": lot,
            "quantity": "2.5 kg",
            "occurred_at": now(),
            "supplier": "Lynas Rare Earths",
            "accepted_purity": "99.50",
            "reference": "PO-LEAK-1",
        }
        s("POST", "/stock/receive", json=move, headers={"Idempotency-Key": f"leak-{user}"})
        s("POST", "/stock/receive", json=move, headers={"Idempotency-Key": f"leak-{user}"})
        s(
            "POST",
            "/stock/dispatch",
            json={
                "site": site,
                "owner": owner,
                "lot": lot,
                "quantity": "900 t",
                "occurred_at": now(),
                "to_site": site,
                "reference": "TR-LEAK",
            },
        )
        s("POST", "/stock/receive", json={**move, "quantity": "1.0000001 g"})
        s("POST", "/stock/teleport", json=move)
    if p.has(OFFICIAL):
        s(
            "POST",
            "/reference/lots",
            json={
                "code": f"LOT-LEAK-{user.upper()}",
                "material": NDPR,
                "origin": "AU",
                "supplier": "Lynas Rare Earths",
                "purity": "99.50",
                "basis": "TREO",
                "certificate_sha256": "ef" * 32,
                "containers": [{"id": "C1", "type": "drum", "net_mass": 1000}],
            },
        )
    if p.has(ADMIN):
        s("POST", "/keys", json={"user": "leak-new-user", "roles": [AUDITOR]})
        s(
            "POST",
            "/reference/owners",
            json={"code": "OWNER-LEAK", "name": "Leak test", "country": "FR"},
        )
    s("POST", "/stock/receive", json={"site": scope[0] if scope else SITE_A})
    s("POST", "/entries", json={"entry": {"kind": "stock.receipt"}, "sigs": []})
    s("POST", "/tokens/revoke", json={"jti": "not-mine"})
    return s


# Users who may open no location at all, and users with sites out of scope.
OBSERVERS = ["oscar", "felix", "elena", "mina", "omar", "kim", "audrey", "admin", "sam"]


def _line_user(line: str) -> str | None:
    try:
        return json.loads(line).get("user")
    except ValueError:
        return None


def test_full_scenario_leaks_nothing(world: World) -> None:
    w = world
    with captured_logs() as lines, captured_stdlib_logs() as std_lines:
        # Cleared users open what they may first: the access log then holds reveals for
        # the auditor to read, and the log lines of granted reveals are scanned too.
        for user, site in (
            ("olga", SITE_A),
            ("fiona", SITE_A),
            ("omar", SITE_B),
            ("kim", SITE_K),
            ("max", SITE_B),
        ):
            resp = w.client.post(
                f"/sites/{site}/reveal", json={"purpose": PURPOSE}, headers=w.auth(user)
            )
            assert resp.status_code == 200, (user, site, resp.text)
            assert resp.json()["location"]["name"] == LOCATIONS[site].name
        sessions = {user: run_session(w, user) for user in OBSERVERS}

    assert sum(len(sess.log) for sess in sessions.values()) > 300
    leaks: list[str] = []
    for user, sess in sessions.items():
        openable = {site for site in SITES if may_open(w, user, site)}
        secrets = [
            n
            for site in SITES
            if site not in openable
            for n in location_needles(site) + salt_needles(w.salts[site])
        ]
        foreign = sorted(set(SITES) - sites_in_scope(w, user))
        statuses = {ex.status for ex in sess.log}
        assert {200, 401, 403, 404, 422} <= statuses, (user, statuses)
        for ex in sess.log:
            t = ex.text()
            leaks += [f"{user} {ex.method} {ex.url}: {n!r}" for n in secrets + foreign if n in t]
            if "Traceback" in t or (
                ex.status >= 500 and "detail" in ex.body and "try again later" not in ex.body
            ):
                leaks.append(f"{user} {ex.method} {ex.url}: server error says too much: {ex.body}")
        for line in lines:
            if _line_user(line) == user:
                leaks += [f"log line of {user}: {n!r}" for n in foreign if n in line]
        for token in sess.tokens:
            sig = token.rsplit(".", 1)[-1]
            leaks += ["a token in a log line" for line in lines + std_lines if sig in line]
    everything = [n for site in SITES for n in location_needles(site) + salt_needles(w.salts[site])]
    for line in lines + std_lines:
        leaks += [f"log line: {n!r} in {line[:200]}" for n in everything if n in line]
    assert lines, "no log line was captured: the capture is broken"
    assert any('"request"' in line for line in lines)
    assert not leaks, "\n".join(leaks[:40])


# (user, a site outside their scope): the same answers as for GHOST, which does not exist.
PROBES = [
    ("omar", SITE_A),
    ("omar", SITE_K),
    ("kim", SITE_A),
    ("kim", SITE_B),
    ("oscar", SITE_K),
    ("elena", SITE_K),
    ("felix", SITE_K),
    ("mina", SITE_K),
    ("max", SITE_K),
    ("sam", SITE_B),
]


def _normalised(resp: Any, code: str) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted(
        (k.lower(), v.replace(code, "<CODE>"))
        for k, v in resp.headers.items()
        if k.lower() != "x-request-id"
    )
    return resp.status_code, headers, resp.content.replace(code.encode(), b"<CODE>")


def _probe_requests(w: World, user: str, code: str) -> Iterator[tuple[str, str, Any]]:
    yield "GET", f"/sites/{code}", None
    yield "POST", f"/sites/{code}/reveal", {"purpose": PURPOSE}
    yield "POST", f"/sites/{code}/reveal", {"purpose": "short"}
    yield "POST", f"/sites/{code}/reveal", {}
    yield "GET", f"/balances?site={code}", None
    yield "GET", f"/balances?site={code}&as_of_seq=30", None
    if principal(w, user).has(OPERATOR) and user != SELF_CUSTODY_USER:
        yield (
            "POST",
            "/stock/receive",
            {
                "site": code,
                "owner": JP,
                "lot": LOT_NDPR,
                "quantity": "1 kg",
                "occurred_at": "2026-01-01T00:00:00Z",
                "supplier": "Lynas Rare Earths",
                "accepted_purity": "99.50",
                "reference": "PO-PROBE",
            },
        )
        yield (
            "POST",
            "/stock/count",
            {
                "site": code,
                "owner": JP,
                "lot": LOT_NDPR,
                "book": "1 t",
                "counted": "1 t",
                "occurred_at": "2026-01-01T00:00:00Z",
            },
        )


def test_out_of_scope_site_answers_as_a_nonexistent_one(world: World) -> None:
    w = world
    assert len({len(c) for c in (*SITES, GHOST)}) == 1
    for user, code in PROBES:
        assert code not in sites_in_scope(w, user)
        auth = w.auth(user)
        for method, url, body in _probe_requests(w, user, code):
            before = len(w.access_events())
            real = w.client.request(method, url, json=body, headers=auth)
            real_events = w.access_events()[before:]
            before = len(w.access_events())
            ghost = w.client.request(
                method,
                url.replace(code, GHOST),
                json=json.loads(json.dumps(body).replace(code, GHOST))
                if body is not None
                else None,
                headers=auth,
            )
            ghost_events = w.access_events()[before:]
            assert real.status_code in (200, 404, 409, 422), (
                user,
                url,
                real.status_code,
                real.text,
            )
            assert _normalised(real, code) == _normalised(ghost, GHOST), (
                user,
                method,
                url,
                real.text,
                ghost.text,
            )

            # The access log records both the same way (and names neither: paths are HMAC'd).
            def shape(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
                drop = {"request_id", "path_hmac", "refused_at"}
                return [{k: v for k, v in e["event"].items() if k not in drop} for e in events]

            assert shape(real_events) == shape(ghost_events), (user, url)
            assert code.encode() not in b"".join(canonical(e) for e in real_events)


def test_dispatch_destination_is_no_existence_oracle(world: World) -> None:
    w = world

    def dispatch(to: str) -> Any:
        return w.client.post(
            "/stock/dispatch",
            headers=w.auth("olga"),
            json={
                "site": SITE_A,
                "owner": JP,
                "lot": LOT_NDPR,
                "quantity": "1 kg",
                "occurred_at": now(),
                "to_site": to,
                "reference": "TR-PROBE",
            },
        )

    real, ghost = dispatch(SITE_K), dispatch(GHOST)
    assert real.status_code == ghost.status_code == 409
    assert _normalised(real, SITE_K) == _normalised(ghost, GHOST), (real.text, ghost.text)


def test_arrival_refusal_names_no_foreign_site(world: World) -> None:
    w = world
    resp = w.client.post(
        "/stock/dispatch",
        headers=w.auth("olga"),
        json={
            "site": SITE_A,
            "owner": JP,
            "lot": LOT_NDPR,
            "quantity": "1 t",
            "occurred_at": now(),
            "to_site": SITE_B,
            "reference": "TR-ARR",
        },
    )
    assert resp.status_code == 201, resp.text
    transfer = resp.json()["entry_id"]
    resp = w.client.post(
        "/stock/arrive",
        headers=w.auth("kim"),
        json={
            "site": SITE_K,
            "transfer": transfer,
            "quantity": "1 t",
            "occurred_at": now(),
            "shortfall_reason": "",
        },
    )
    assert resp.status_code == 409
    leaked = [resp.text] if SITE_B in resp.text else []
    # A reversal of a movement recorded at another site: same kind of message.
    resp = w.client.post(
        "/stock/reverse",
        headers=w.auth("kim"),
        json={"site": SITE_K, "reverses": transfer, "occurred_at": now(), "reason": "probe"},
    )
    assert resp.status_code == 409
    if SITE_A in resp.text:
        leaked.append(resp.text)
    assert not leaked, leaked


# -- the reveal -----------------------------------------------------------------------


def test_reveal_returns_an_opening_that_checks_against_the_signed_commitment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    seen_before_opening: list[dict[str, Any]] = []
    real_open = ledger.store.locations.open_location

    def spy(conn: Any, **kw: Any) -> Any:
        # At the moment the sealed row is opened, the access-log entry must exist.
        seen_before_opening.extend(w.access_events())
        return real_open(conn, **kw)

    monkeypatch.setattr(ledger.store.locations, "open_location", spy)
    resp = w.client.post(
        f"/sites/{SITE_A}/reveal", json={"purpose": PURPOSE}, headers=w.auth("olga")
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["site"] == SITE_A
    loc = Location(**body["location"])
    assert loc == LOCATIONS[SITE_A]
    salt = base64.b64decode(body["salt"], validate=True)
    assert salt == w.salts[SITE_A]
    # The client's check, with nothing but the response and the signed log.
    verify_opening(commitment=body["commitment"], salt=salt, location=location_bytes(loc))
    assert hashlib.sha256(salt + location_bytes(loc)).hexdigest() == body["commitment"]
    site = w.client.get(f"/sites/{SITE_A}", headers=w.auth("olga")).json()
    assert site["location_commitment"] == body["commitment"]
    assert site["commitment_seq"] == body["commitment_seq"]
    entries = w.client.get(
        f"/log/entries?start={body['commitment_seq']}&limit=1", headers=w.auth("audrey")
    ).json()
    leaf = entries["entries"][0]
    assert leaf["entry"]["kind"] == "site.registered"
    assert leaf["entry"]["location_commitment"] == body["commitment"]
    # Written first, with who, what, why.
    reveals = [e for e in seen_before_opening if e["event"]["action"] == "reveal"]
    assert len(reveals) == 1
    ev = reveals[0]["event"]
    assert ev["actor"] == "olga" and ev["site"] == SITE_A and ev["outcome"] == "granted"
    assert ev["purpose"] == PURPOSE and ev["commitment_seq"] == body["commitment_seq"]
    assert ev["request_id"] == resp.headers["x-request-id"]
    leaves = b"".join(w.access_leaves())
    for needle in location_needles(SITE_A) + salt_needles(salt):
        assert needle.encode() not in leaves


def test_reveal_refusals(world: World) -> None:
    w = world
    cases = [
        ("audrey", SITE_A, {"purpose": PURPOSE}, 403),  # auditors never open
        ("admin", SITE_A, {"purpose": PURPOSE}, 403),  # nor security admins
        ("oscar", SITE_A, {"purpose": PURPOSE}, 403),  # RESTRICTED < SECRET
        ("felix", SITE_B, {"purpose": PURPOSE}, 403),  # NONE < CONFIDENTIAL
        ("mina", SITE_A, {"purpose": PURPOSE}, 403),
        ("omar", SITE_A, {"purpose": PURPOSE}, 404),  # out of scope: as if absent
        ("olga", SITE_A, {}, 422),  # no stated purpose
        ("olga", SITE_A, {"purpose": "because"}, 422),
        ("olga", SITE_A, {"purpose": "x" * 501}, 422),
    ]
    for user, site, body, status in cases:
        before = len(w.access_events())
        resp = w.client.post(f"/sites/{site}/reveal", json=body, headers=w.auth(user))
        assert resp.status_code == status, (user, site, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        for n in location_needles(site) + salt_needles(w.salts[site]):
            assert n not in resp.text
        events = w.access_events()[before:]
        assert not [e for e in events if e["event"]["action"] == "reveal"], (
            "refused, yet logged as a reveal"
        )
        if status in (401, 403, 404):
            assert [e["event"]["outcome"] for e in events] == [str(status)], (user, events)


def _assert_reveal_failed_closed(w: World, resp: Any, before: int, opened: list[Any]) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body["type"] == PROBLEM + "storage"
    assert body["detail"] == "the service could not complete this request; try again later"
    for n in location_needles(SITE_A) + salt_needles(w.salts[SITE_A]) + ["salt", 'location":']:
        assert n not in resp.text
    assert opened == [], "the sealed location was opened although the access log was not written"
    assert len(w.access_events()) == before


def _spy_openings(monkeypatch: pytest.MonkeyPatch, w: World) -> list[Any]:
    opened: list[Any] = []
    real_open = ledger.store.locations.open_location
    real_site_open = w.svc.ledger.open_site_location

    def spy_open(*a: Any, **kw: Any) -> Any:
        opened.append(("open_location", kw.get("site")))
        return real_open(*a, **kw)

    def spy_site_open(code: str) -> Any:
        opened.append(("open_site_location", code))
        return real_site_open(code)

    monkeypatch.setattr(ledger.store.locations, "open_location", spy_open)
    monkeypatch.setattr(w.svc.ledger, "open_site_location", spy_site_open)
    return opened


def test_reveal_fails_closed_when_the_access_log_write_fails(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    opened = _spy_openings(monkeypatch, w)

    def broken(*a: Any, **kw: Any) -> int:
        raise StorageError("the access log could not be written; nothing was done")

    monkeypatch.setattr(ledger.store.access, "record", broken)
    monkeypatch.setattr(api.audit, "record", broken)
    before = len(w.access_events())
    with captured_logs() as lines:
        resp = w.client.post(
            f"/sites/{SITE_A}/reveal", json={"purpose": PURPOSE}, headers=w.auth("olga")
        )
    _assert_reveal_failed_closed(w, resp, before, opened)
    for line in lines:
        for n in location_needles(SITE_A) + salt_needles(w.salts[SITE_A]):
            assert n not in line


def _break_access_log(w: World) -> None:
    """Make the database itself refuse access-log rows (a real DBAPI error)."""
    with w.svc.ledger.engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER test_broken_access BEFORE INSERT ON access_log "
                    "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION test_broken_access() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER test_broken_access BEFORE INSERT ON access_log "
                    "FOR EACH ROW EXECUTE FUNCTION test_broken_access()"
                )
            )


def _reveal_with_broken_database(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = _spy_openings(monkeypatch, w)
    before = len(w.access_events())
    _break_access_log(w)
    resp = w.client.post(
        f"/sites/{SITE_A}/reveal", json={"purpose": PURPOSE}, headers=w.auth("olga")
    )
    _assert_reveal_failed_closed(w, resp, before, opened)
    assert "disk on fire" not in resp.text
    # An export that cannot be recorded does not happen either.
    resp = w.client.get("/log/export", headers=w.auth("audrey"))
    assert resp.status_code == 503 and b"site.registered" not in resp.content
    # A refusal still stands when it cannot be recorded (and says nothing more).
    resp = w.client.get(f"/sites/{SITE_A}", headers=w.auth("omar"))
    assert resp.status_code == 404
    assert w.client.get("/me").status_code == 401


def test_reveal_fails_closed_on_a_real_database_failure(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reveal_with_broken_database(world, monkeypatch)


@pytest.mark.postgres
def test_reveal_fails_closed_on_a_real_database_failure_postgres(
    pg_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = pg_world
    resp = w.client.post(
        f"/sites/{SITE_B}/reveal", json={"purpose": PURPOSE}, headers=w.auth("max")
    )
    assert resp.status_code == 200
    assert Location(**resp.json()["location"]) == LOCATIONS[SITE_B]
    _reveal_with_broken_database(w, monkeypatch)


def test_reveal_of_a_corrupt_seal_is_a_server_error(world: World) -> None:
    w = world
    # A second sealed version of SITE_A, valid in itself but for a location the signed
    # log never committed to (as if someone wrote the table behind the log's back).
    sealer = w.svc.ledger._sealer()
    other = Location(name="Decoy Store", address="1 Decoy Street", latitude=1.0, longitude=2.0)
    salt = b"\x07" * 32
    commitment = hashlib.sha256(salt + location_bytes(other)).hexdigest()
    plaintext = canonical(
        {"location": json.loads(location_bytes(other)), "salt": base64.b64encode(salt).decode()}
    )
    aad = sealed_aad(site=SITE_A, version=2, commitment=commitment)
    nonce, ct = sealer.seal(plaintext, aad=aad)
    with w.svc.ledger.engine.begin() as conn:
        conn.execute(
            insert(site_locations).values(
                site=SITE_A,
                version=2,
                commitment=commitment,
                key_id=sealer.key_id,
                nonce=nonce,
                ciphertext=ct,
                created_at=now(),
            )
        )
    resp = w.client.post(
        f"/sites/{SITE_A}/reveal", json={"purpose": PURPOSE}, headers=w.auth("olga")
    )
    assert "Decoy" not in resp.text and "salt" not in resp.text
    assert resp.status_code >= 500, (resp.status_code, resp.text)


# -- the access log -------------------------------------------------------------------


def test_access_log_records_reveals_refusals_and_exports_and_verifies(world: World) -> None:
    w = world
    before = len(w.access_events())
    assert (
        w.client.post(
            f"/sites/{SITE_A}/reveal", json={"purpose": PURPOSE}, headers=w.auth("olga")
        ).status_code
        == 200
    )
    assert (
        w.client.post(
            f"/sites/{SITE_A}/reveal", json={"purpose": PURPOSE}, headers=w.auth("oscar")
        ).status_code
        == 403
    )
    assert w.client.get(f"/sites/{SITE_K}", headers=w.auth("omar")).status_code == 404
    assert w.client.get("/log/access", headers=w.auth("olga")).status_code == 403
    assert w.client.get("/me").status_code == 401
    assert w.client.get("/log/export", headers=w.auth("audrey")).status_code == 200

    resp = w.client.get(f"/log/access?start={before}", headers=w.auth("audrey"))
    assert resp.status_code == 200
    events = [e["event"] for e in resp.json()["events"]]
    assert [(e["action"], e["outcome"], e["actor"]) for e in events] == [
        ("reveal", "granted", "olga"),
        ("refused", "403", "oscar"),
        ("refused", "404", "omar"),
        ("refused", "403", "olga"),
        ("refused", "401", "anonymous"),
        ("export", "started", "audrey"),
    ]
    key = w.svc.hmac_key
    assert events[1]["path_hmac"] == keyed_hash(key, f"/sites/{SITE_A}/reveal")
    assert events[1]["route"] == "/sites/{code}/reveal"
    assert events[2]["path_hmac"] == keyed_hash(key, f"/sites/{SITE_K}")
    assert events[2]["route"] == "/sites/{code}"
    assert events[5]["size"] == w.entry_count()
    for e in events:
        assert e["client_hmac"] == keyed_hash(key, "testclient")
        assert "testclient" not in json.dumps(e)
    refused_leaves = [canonical(e) for e in events if e["action"] == "refused"]
    assert not [
        leaf for leaf in refused_leaves if SITE_K.encode() in leaf or SITE_A.encode() in leaf
    ]

    resp = w.client.get("/log/access/verify", headers=w.auth("audrey"))
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["ok"] is True
    assert report["size"] == len(w.access_events())
    # Refusals are written in batches under one checkpoint each (issue #8 item 9).
    assert 1 <= report["checkpoints"] < report["size"]


def test_access_log_is_append_only_and_tampering_is_detected(world: World) -> None:
    w = world
    w.client.get("/me")  # one refusal, so there is a row
    assert w.access_events()
    for stmt in ("UPDATE access_log SET leaf_hash = leaf_hash", "DELETE FROM access_log"):
        with pytest.raises(DBAPIError), w.svc.ledger.engine.begin() as conn:
            conn.execute(text(stmt))
    # An event slipped in behind the service's back (no checkpoint covers it).
    n = len(w.access_events())
    forged = canonical(
        {"seq": n, "prev_hash": "00" * 32, "at": now(), "event": {"action": "nothing"}}
    )
    with w.svc.ledger.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO access_log (seq, leaf_hash, leaf) VALUES (:s, :h, :l)"),
            {"s": n, "h": hashlib.sha256(b"\x00" + forged).digest(), "l": forged},
        )
    resp = w.client.get("/log/access/verify", headers=w.auth("audrey"))
    assert resp.status_code != 200 or resp.json().get("ok") is not True, resp.text
    assert "Traceback" not in resp.text


def test_scope_refusals_by_the_rules_are_in_the_access_log(world: World) -> None:
    w = world
    move = {
        "site": SITE_B,
        "owner": JP,
        "lot": LOT_NDPR,
        "quantity": "1 kg",
        "occurred_at": now(),
        "supplier": "Lynas Rare Earths",
        "accepted_purity": "99.50",
        "reference": "PO-SCOPE",
    }
    before = len(w.access_events())
    resp = w.client.post("/stock/receive", json=move, headers=w.auth("olga"))
    assert resp.status_code == 409 and resp.json()["type"] == PROBLEM + "rule/site-scope"
    events = w.access_events()[before:]
    assert [(e["event"]["action"], e["event"]["actor"]) for e in events] == [("refused", "olga")]


# -- reads are scoped -----------------------------------------------------------------


def test_reads_are_scoped(world: World) -> None:
    """Listings silently leave out what the caller may not see; aggregates cover the
    owners in scope only."""
    w = world
    expected_sites = {
        "olga": {SITE_A},
        "oscar": {SITE_A},
        "omar": {SITE_B},
        "kim": {SITE_K},
        "fiona": {SITE_A, SITE_B},
        "felix": {SITE_A, SITE_B},
        "elena": {SITE_A, SITE_B},
        "max": {SITE_A, SITE_B},
        "mina": {SITE_A, SITE_B},
        "audrey": set(SITES),
        "admin": set(SITES),
    }
    for user, sites in expected_sites.items():
        got = {s["code"] for s in w.client.get("/sites", headers=w.auth(user)).json()["sites"]}
        assert got == sites, user
    for user in ("olga", "omar", "kim", "fiona", "elena", "max", "audrey"):
        p = principal(w, user)
        rows = w.client.get("/balances", headers=w.auth(user)).json()["balances"]
        assert rows, user
        for r in rows:
            assert policy.holding_visible(p, r["owner"], r["site"]), (user, r)
        trace = w.client.get(f"/lots/{LOT_NDPR}/trace", headers=w.auth(user)).json()
        # Every movement shown touches a holding the user can see.
        shown_seqs = {leg["seq"] for leg in trace["legs"]}
        mine = {leg["seq"] for leg in trace["legs"]
                if leg["account"].startswith("H/") and leg["account"] != "H/(outside your scope)"}
        assert shown_seqs == mine, user
        for leg in trace["legs"]:
            acct = leg["account"]
            if acct.startswith("H/") and acct != "H/(outside your scope)":
                _, owner, site = acct.split("/", 2)
                assert policy.holding_visible(p, owner, site), (user, acct)
            for foreign in set(SITES) - sites_in_scope(w, user):
                assert foreign not in acct
    kr_ga = 4.0
    for user, owners in (
        ("elena", {"EU-JOINT"}),
        ("fiona", {JP}),
        ("max", {"EU-JOINT", JP}),
        ("mina", {JP}),
    ):
        cover = w.client.get("/cover", headers=w.auth(user)).json()["cover"]
        assert {c["owner"] for c in cover} <= owners, user
        crma = w.client.get("/reports/crma", headers=w.auth(user)).json()
        assert set(crma["owners"]) == owners, user
        ga = [m for m in crma["materials"] if m["material"] == "GA-METAL"]
        assert all(float(m["tonnes_held"]) < kr_ga for m in ga), (user, ga)  # no KR stock
    crma = w.client.get("/reports/crma", headers=w.auth("audrey")).json()
    assert crma["owners"] is None
    assert [float(m["tonnes_held"]) for m in crma["materials"] if m["material"] == "GA-METAL"] == [
        7.0
    ]
