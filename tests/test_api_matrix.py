"""The access matrix (issue #4): every route against every role, and against no token,
an expired token and a token for another audience, asserting the exact allowed set.

The table ``MATRIX`` is the specification: one row per (method, path) of the app, with
the roles that must get a 2xx and a valid request for each caller. A route added to the
app without a row here fails ``test_every_route_has_a_matrix_row``; a route whose
declared ``x-roles`` differ from its row fails ``test_declared_roles_match_the_matrix``.
Each caller is the role's cleared, in-scope user (``MATRIX_USERS``), so a refusal can
only come from the role check. The matrix runs on SQLite; a smoke subset on PostgreSQL.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from fastapi.routing import APIRoute

from api.routes.writes import MOVEMENT_FORMS, REFERENCE_FORMS
from api.web import is_web_path
from ledger.kinds.requests import example
from ledger.policy import ADMIN, ALL_ROLES, AUDITOR, MINISTER, OFFICIAL, OPERATOR
from tests import api_fixtures
from tests.api_fixtures import (
    JP,
    LOT_NDPR,
    MATRIX_USERS,
    NDPR,
    SITE_A,
    World,
)

# Fixtures (bound here so pytest finds them in this module).
api_template = api_fixtures.api_template
pg_world = api_fixtures.pg_world
shared_world = api_fixtures.shared_world

PUBLIC = "public"  # no token needed; everyone gets a 2xx
DEMO_OFF = "demo-off"  # the demo login: 404 for everyone unless explicitly enabled
STOCK_READERS = frozenset({OPERATOR, OFFICIAL, MINISTER, AUDITOR})
AGGREGATE_READERS = frozenset({OFFICIAL, MINISTER, AUDITOR})
EVERYONE = frozenset(ALL_ROLES)
PROBLEM = "https://reserve-ledger.example/problems/"

_n = itertools.count(1)


@dataclass(frozen=True)
class Req:
    method: str
    url: str
    json: Any = None
    headers: dict[str, str] | None = None
    # Statuses that still show the role check passed (a rule refusal, an unknown id):
    # for routes whose success needs state the shared world does not have.
    passed: frozenset[int] = frozenset()


# A request builder gets the world, the calling user (None for a token-less or broken
# caller) and the token it will send (to revoke "its own" jti).
Builder = Callable[[World, str | None, str | None], Req]


def _get(url: str) -> Builder:
    return lambda w, user, token: Req("GET", url)


def _revoke_token(w: World, user: str | None, token: str | None) -> Req:
    jti = "not-a-token"
    if token:
        jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    return Req("POST", "/tokens/revoke", {"jti": jti})


def _reveal(w: World, user: str | None, token: str | None) -> Req:
    return Req("POST", f"/sites/{SITE_A}/reveal", {"purpose": "matrix test of the reveal route"})


def _spare(w: World, user: str | None, index: int) -> str:
    if user is None or user not in w.template.spares:
        return "ab" * 32
    return w.template.spares[user][index]


def _signed_entry(w: World, user: str | None, token: str | None) -> Req:
    # Everyone may author the revocation of one of their own keys: the one entry kind
    # every role can write, so the route's own answer is tested, not a rule's.
    author = user or "olga"
    sub = w.signed_entry(author, "key.revoked", key_id=_spare(w, user, 0), reason="matrix")
    return Req("POST", "/entries", sub, {"Idempotency-Key": f"m-{next(_n)}"})


def _movement(w: World, user: str | None, token: str | None) -> Req:
    body = {
        "site": SITE_A,
        "owner": JP,
        "lot": LOT_NDPR,
        "quantity": "1.5 kg",
        "occurred_at": _now(),
        "supplier": "Lynas Rare Earths",
        "accepted_purity": "99.50",
        "reference": f"PO-M-{next(_n)}",
    }
    return Req("POST", "/stock/receive", body)


def _reference(w: World, user: str | None, token: str | None) -> Req:
    n = next(_n)
    if user == MATRIX_USERS[ADMIN]:
        return Req(
            "POST", "/reference/owners", {"code": f"OWNER-M{n}", "name": "Matrix", "country": "FR"}
        )
    body = {
        "code": f"LOT-M{n}",
        "material": NDPR,
        "origin": "AU",
        "supplier": "Lynas Rare Earths",
        "purity": "99.50",
        "basis": "TREO",
        "certificate_sha256": "cd" * 32,
        "containers": [{"id": f"LOT-M{n}-C1", "type": "drum", "net_mass": "250 kg"}],
    }
    return Req("POST", "/reference/lots", body)


def _new_site(w: World, user: str | None, token: str | None) -> Req:
    n = next(_n)
    return Req(
        "POST",
        "/sites",
        {
            "code": f"SITE-M{n:03d}",
            "classification": "RESTRICTED",
            "custodian": JP,
            "owners": [JP],
            "location": {
                "name": f"Matrix store {n}",
                "address": "Nowhere 1",
                "latitude": 1.5,
                "longitude": 2.5,
            },
        },
    )


def _new_key(w: World, user: str | None, token: str | None) -> Req:
    n = next(_n)
    return Req("POST", "/keys", {"user": f"matrix-user-{n}", "roles": [AUDITOR]})


def _revoke_key(w: World, user: str | None, token: str | None) -> Req:
    return Req("POST", f"/keys/{_spare(w, user, 1)}/revoke", {"reason": "matrix"})


def _demo_login(w: World, user: str | None, token: str | None) -> Req:
    return Req("POST", "/auth/demo-login", {"user": user or "olga"})


def _release(method: str, url: str, body: Any = None) -> Builder:
    def build(w: World, user: str | None, token: str | None) -> Req:
        return Req(method, url, body, passed=frozenset({404, 409}))

    return build


_NO_ID = "0" * 32


def _passing(method: str, url: str, body: Any = None, statuses: frozenset[int] = frozenset({404})) -> Builder:
    def build(w: World, user: str | None, token: str | None) -> Req:
        return Req(method, url, body, passed=statuses)

    return build


def _key_login(w: World, user: str | None, token: str | None) -> Req:
    """A real key login by the self-custody user (issue #9): challenge, sign, token."""
    from ledger.login import sign_login
    from tests.api_fixtures import SELF_CUSTODY_USER

    c = w.client.post("/auth/challenge", json={"user": SELF_CUSTODY_USER}).json()
    sig = sign_login(w.template.sam, log_id=c["log_id"], nonce=c["nonce"])
    return Req("POST", "/auth/token", {"nonce": c["nonce"], "public_key": w.template.sam.public_key.hex(), "signature": sig})


def _proposal(w: World, user: str | None, token: str | None) -> Req:
    # A kind that takes no co-signatures: refused (422) after the role check, for all.
    sub = w.signed_entry(user or "olga", "test.movement", account="ACC-M", delta=1)
    return Req("POST", "/proposals", {**sub, "cosigners": ["audrey"]}, passed=frozenset({422}))


_A_SIG = {"pub": "ab" * 32, "sig": "A" * 86 + "=="}


def _now() -> str:
    from ledger.timefmt import now

    return now()


MATRIX: dict[tuple[str, str], tuple[Any, Builder]] = {
    # the service around the ledger
    ("GET", "/health"): (PUBLIC, _get("/health")),
    ("GET", "/ready"): (PUBLIC, _get("/ready")),
    ("GET", "/.well-known/jwks.json"): (PUBLIC, _get("/.well-known/jwks.json")),
    ("POST", "/auth/demo-login"): (DEMO_OFF, _demo_login),
    # Metrics: the monitoring host only (an unproxied loopback peer); 404 to any caller
    # here, token or not, like a route that does not exist.
    ("GET", "/metrics"): (DEMO_OFF, _get("/metrics")),
    ("GET", "/me"): (EVERYONE, _get("/me")),
    # key login and co-signature proposals (issue #9)
    ("POST", "/auth/challenge"): (PUBLIC, lambda w, user, token: Req("POST", "/auth/challenge", {"user": user or "olga"})),
    ("POST", "/auth/token"): (PUBLIC, _key_login),
    ("POST", "/proposals"): (EVERYONE, _proposal),
    ("GET", "/proposals"): (EVERYONE, _get("/proposals?for=me")),
    ("GET", "/proposals/{pid}"): (EVERYONE, _passing("GET", f"/proposals/{_NO_ID}")),
    ("POST", "/proposals/{pid}/cosign"): (EVERYONE, _passing("POST", f"/proposals/{_NO_ID}/cosign", {"sig": _A_SIG})),
    ("POST", "/proposals/{pid}/withdraw"): (EVERYONE, _passing("POST", f"/proposals/{_NO_ID}/withdraw")),
    ("POST", "/tokens/revoke"): (EVERYONE, _revoke_token),
    # FastAPI's own documentation routes
    ("GET", "/openapi.json"): (PUBLIC, _get("/openapi.json")),
    ("GET", "/docs"): (PUBLIC, _get("/docs")),
    ("GET", "/docs/oauth2-redirect"): (PUBLIC, _get("/docs/oauth2-redirect")),
    # reads
    ("GET", "/sites"): (EVERYONE, _get("/sites")),
    ("GET", "/sites/{code}"): (EVERYONE, _get(f"/sites/{SITE_A}")),
    ("POST", "/sites/{code}/reveal"): (frozenset({OPERATOR, OFFICIAL, MINISTER}), _reveal),
    ("GET", "/balances"): (STOCK_READERS, _get("/balances")),
    ("GET", "/lots/{lot}/trace"): (STOCK_READERS, _get(f"/lots/{LOT_NDPR}/trace")),
    ("GET", "/cover"): (AGGREGATE_READERS, _get("/cover")),
    ("GET", "/reports/crma"): (AGGREGATE_READERS, _get("/reports/crma")),
    ("GET", "/loans/overdue"): (STOCK_READERS, _get("/loans/overdue")),
    # registries the client reads (issue #9, api/routes/registry.py)
    ("GET", "/registry/owners"): (EVERYONE, _get("/registry/owners")),
    ("GET", "/registry/materials"): (EVERYONE, _get("/registry/materials")),
    ("GET", "/registry/lots"): (EVERYONE, _get("/registry/lots")),
    ("GET", "/registry/keys"): (frozenset({ADMIN, AUDITOR}), _get("/registry/keys")),
    ("GET", "/registry/users"): (frozenset({ADMIN, AUDITOR}), _get("/registry/users")),
    ("GET", "/registry/policies"): (AGGREGATE_READERS, _get("/registry/policies")),
    ("GET", "/registry/loans"): (STOCK_READERS, _get("/registry/loans")),
    ("GET", "/registry/refs/{ref}"): (EVERYONE, _get("/registry/refs/1")),
    # issue #12: a key by id, prefix or user name (others' keys only for admins, auditors)
    ("GET", "/registry/keys/{ref}"): (EVERYONE, _passing("GET", "/registry/keys/nobody")),
    # issue #12: inboxes
    ("GET", "/transfers"): (STOCK_READERS, _get("/transfers")),
    ("GET", "/orders"): (STOCK_READERS, _get("/orders")),
    # writes
    ("POST", "/entries"): (EVERYONE, _signed_entry),
    # the outcome of a write answered 202 (issue #8): an unknown key is a 404 past the role check
    ("GET", "/entries/outcome/{idempotency_key}"): (
        EVERYONE, lambda w, user, token: Req("GET", "/entries/outcome/m-unknown", passed=frozenset({404}))),
    # One route per movement and reference collection (issue #12), below; any other
    # action or collection is refused by name after the role check.
    ("POST", "/stock/{action}"): (frozenset({OPERATOR}), _passing("POST", "/stock/melt", {}, frozenset({422}))),
    ("POST", "/reference/{collection}"): (
        frozenset({ADMIN, OPERATOR, OFFICIAL}), _passing("POST", "/reference/planets", {}, frozenset({422}))),
    ("POST", "/sites"): (frozenset({ADMIN}), _new_site),
    ("POST", "/keys"): (frozenset({ADMIN}), _new_key),
    ("POST", "/keys/{key_id}/revoke"): (EVERYONE, _revoke_key),
    # release authorisation (issue #5): the role check, then the rules
    ("POST", "/releases/prices"): (frozenset({OFFICIAL}), _release("POST", "/releases/prices", {
        "index": "NDPR-SPOT", "material": NDPR, "value": "95.5", "currency": "USD",
        "observed_at": "2026-01-01T00:00:00Z", "source": "matrix"})),
    ("POST", "/releases/requests"): (frozenset({OFFICIAL}), _release("POST", "/releases/requests", {
        "owner": JP, "material": NDPR, "quantity": "1 t", "recipient": "R", "regime": "ordinary_sale",
        "purpose": "matrix test purpose"})),
    ("POST", "/releases/requests/{request_id}/approve"): (
        frozenset({OFFICIAL}), _release("POST", f"/releases/requests/{_NO_ID}/approve", {})),
    ("POST", "/releases/orders"): (frozenset({MINISTER}), _release("POST", "/releases/orders", {
        "request": _NO_ID, "cap": "1 t", "valid_from": "2026-01-01T00:00:00Z",
        "valid_until": "2027-01-01T00:00:00Z", "sites": [SITE_A], "regime": "ordinary_sale",
        "report_to": "Diet committee"})),
    ("POST", "/releases/orders/{order_id}/revoke"): (
        frozenset({MINISTER}), _release("POST", f"/releases/orders/{_NO_ID}/revoke", {"reason": "matrix"})),
    ("GET", "/releases/requests"): (AGGREGATE_READERS, _get("/releases/requests")),
    ("GET", "/releases/orders"): (AGGREGATE_READERS, _get("/releases/orders")),
    ("GET", "/releases/orders/{order_id}/report"): (
        AGGREGATE_READERS, _release("GET", f"/releases/orders/{_NO_ID}/report")),
    # the signed log and the access log
    ("GET", "/log/checkpoint"): (PUBLIC, _get("/log/checkpoint")),
    ("GET", "/log/checkpoints/{size}"): (EVERYONE, _get("/log/checkpoints/1")),
    ("GET", "/log/proofs/inclusion"): (EVERYONE, _get("/log/proofs/inclusion?seq=0&size=2")),
    ("GET", "/log/proofs/consistency"): (EVERYONE, _get("/log/proofs/consistency?old=1&new=5")),
    ("GET", "/log/entries"): (frozenset({AUDITOR}), _get("/log/entries?start=0&limit=5")),
    ("GET", "/log/export"): (frozenset({AUDITOR}), _get("/log/export")),
    ("GET", "/log/leaves"): (frozenset({AUDITOR}), _get("/log/leaves?start=0&end=2")),
    ("GET", "/log/bundle"): (frozenset({AUDITOR}), _get("/log/bundle")),
    ("GET", "/log/commitments"): (frozenset({AUDITOR}), _get("/log/commitments?start=0&end=2")),
    # Issue #14: the role check passes for auditors; the matrix's auditor is not scoped to
    # the owner, so the owner scope then refuses it (tests/test_owner_scope_api.py).
    ("GET", "/owners/{code}/scope-key"): (
        frozenset({AUDITOR}),
        lambda w, user, token: Req(
            "GET", f"/owners/{JP}/scope-key",
            passed=frozenset({403}) if user == MATRIX_USERS[AUDITOR] else frozenset(),
        ),
    ),
    ("GET", "/log/access"): (frozenset({AUDITOR}), _get("/log/access")),
    ("GET", "/log/access/verify"): (frozenset({AUDITOR}), _get("/log/access/verify")),
}

# Each movement and collection route, called with its schema's own example (a rule may
# refuse it: a made-up transfer or order id, a role the rules do not allow).
for _action, _form in MOVEMENT_FORMS.items():
    MATRIX[("POST", f"/stock/{_action}")] = (
        frozenset({OPERATOR}),
        _movement if _action == "receive" else _release("POST", f"/stock/{_action}", example(_form)),
    )
for _collection, _form in REFERENCE_FORMS.items():
    MATRIX[("POST", f"/reference/{_collection}")] = (
        frozenset({ADMIN, OPERATOR, OFFICIAL}),
        _reference if _collection in ("owners", "lots") else _release("POST", f"/reference/{_collection}", example(_form)),
    )

HIDDEN_FALLBACKS = ("/stock/{action}", "/reference/{collection}")


def walk_routes(routes: Any, prefix: str = "") -> Any:
    """(path, route) for every endpoint, through included routers (FastAPI >= 0.16x keeps
    them nested) and mounts. An unknown kind of route fails, so it cannot hide."""
    for r in routes:
        sub = getattr(r, "original_router", None)
        if sub is not None:
            ctx = getattr(r, "include_context", None)
            yield from walk_routes(sub.routes, prefix + (getattr(ctx, "prefix", "") or ""))
        elif getattr(r, "methods", None):
            yield prefix + r.path, r
        elif getattr(r, "routes", None) is not None:  # a Mount
            yield from walk_routes(r.routes, prefix + r.path)
        else:
            raise AssertionError(f"route of unknown kind: {r!r}")


def app_routes(w: World) -> set[tuple[str, str]]:
    # The web pages (issue #13) answer HTML, not problems: tests/test_web_pages.py holds
    # their matrix, over the same roles.
    return {
        (m, path)
        for path, r in walk_routes(w.app.routes)
        for m in r.methods
        if m != "HEAD" and not is_web_path(path)
    }


def call(w: World, req: Req, token: str | None) -> Any:
    headers = dict(req.headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return w.client.request(req.method, req.url, json=req.json, headers=headers)


def assert_problem(resp: Any, status: int, type_: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status
    assert body["type"].startswith(PROBLEM)
    if type_ is not None:
        assert body["type"] == PROBLEM + type_, body
    assert "Traceback" not in resp.text
    return dict(body)


def check_row(w: World, key: tuple[str, str], roles: tuple[str, ...] = ALL_ROLES) -> None:
    allowed, build = MATRIX[key]
    if allowed == PUBLIC:
        resp = call(w, build(w, None, None), None)
        assert 200 <= resp.status_code < 300, (key, resp.status_code, resp.text)
        return
    if allowed == DEMO_OFF:
        for role in roles:
            user = MATRIX_USERS[role]
            assert_problem(call(w, build(w, user, None), w.token(user)), 404)
        assert_problem(call(w, build(w, None, None), None), 404)
        return
    got = set()
    for role in roles:
        user = MATRIX_USERS[role]
        token = w.token(user)
        req = build(w, user, token)
        resp = call(w, req, token)
        if 200 <= resp.status_code < 300 or resp.status_code in req.passed:
            got.add(role)
        else:
            # Refused by the role check itself, not by some other error.
            assert_problem(resp, 403, "forbidden")
            assert role not in allowed, (key, role, resp.status_code, resp.text)
    assert got == set(allowed) & set(roles), (key, sorted(got), sorted(allowed))

    user = MATRIX_USERS[OPERATOR]
    bad = {
        "no token": None,
        "expired": w.token(user, now=time.time() - 3600),
        "other audience": w.token(user, extra={"aud": "another-api"}),
    }
    for what, token in bad.items():
        resp = call(w, build(w, None, token), token)
        assert_problem(resp, 401, "unauthenticated")
        assert resp.headers.get("www-authenticate", "").startswith("Bearer"), (key, what)
        assert token is None or token not in resp.text


def test_every_route_has_a_matrix_row(shared_world: World) -> None:
    routes = app_routes(shared_world)
    assert routes - set(MATRIX) == set(), "routes without a row in the access matrix"
    assert set(MATRIX) - routes == set(), "matrix rows for routes that no longer exist"


def test_declared_roles_match_the_matrix(shared_world: World) -> None:
    """The ``x-roles`` each route declares (and enforces) are the matrix's set; a route
    without them must be one the matrix says is public."""
    spec = shared_world.app.openapi()
    by_route = {
        (m, path): r
        for path, r in walk_routes(shared_world.app.routes)
        if isinstance(r, APIRoute)
        for m in r.methods
    }
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented - set(MATRIX) == set(), "documented operations without a matrix row"
    for (method, path), (allowed, _) in MATRIX.items():
        if (method, path) not in by_route:
            assert allowed == PUBLIC, (method, path)
            continue
        if path in HIDDEN_FALLBACKS:  # not documented: they only name the routes that exist
            assert path not in spec["paths"], path
            continue
        op = spec["paths"][path][method.lower()]
        declared = op.get("x-roles")
        if allowed in (PUBLIC, DEMO_OFF):
            assert declared is None, (method, path, declared)
        else:
            assert declared is not None, f"{method} {path} declares no roles"
            assert set(declared) == set(allowed), (method, path, declared, sorted(allowed))


@pytest.mark.parametrize("key", list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_matrix(shared_world: World, key: tuple[str, str]) -> None:
    check_row(shared_world, key)


def test_public_routes_reveal_nothing_per_user(shared_world: World) -> None:
    """The public checkpoint holds only the log's size and root; readiness the log id."""
    w = shared_world
    text = w.client.get("/log/checkpoint").text
    assert text.startswith("test.local/ledger\n")
    assert len(text.splitlines()) <= 6
    assert set(w.client.get("/ready").json()) == {"status", "log_id", "demo"}
    assert w.client.get("/ready").json()["demo"] is False


def test_demo_login_when_enabled(api_template: Any, tmp_path: Any) -> None:
    """RESERVE_UNSAFE_DEMO_LOGIN=1: a working token for a registered user, 404 for
    anyone else; off (the default) the route answers 404 for everybody (matrix)."""
    from dataclasses import replace

    from tests.api_fixtures import api_settings, copy_world

    home = tmp_path / "home"
    settings = replace(
        api_settings(home, f"sqlite:///{home / 'ledger.db'}"), unsafe_demo_login=True
    )
    w = copy_world(api_template, home, settings=settings)
    try:
        resp = w.client.post("/auth/demo-login", json={"user": "felix"})
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
        me = w.client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["user"] == "felix"
        assert_problem(w.client.post("/auth/demo-login", json={"user": "nobody"}), 404)
    finally:
        w.close()


SMOKE_ROUTES = [
    ("GET", "/sites/{code}"),
    ("POST", "/sites/{code}/reveal"),
    ("GET", "/balances"),
    ("GET", "/cover"),
    ("POST", "/stock/{action}"),
    ("POST", "/entries"),
    ("GET", "/log/access/verify"),
]


@pytest.mark.postgres
def test_matrix_smoke_postgres(pg_world: World) -> None:
    for key in SMOKE_ROUTES:
        check_row(pg_world, key)
