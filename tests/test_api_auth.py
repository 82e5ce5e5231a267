"""Bearer-token attacks (issue #4, RFC 8725): every forged, broken, stale or revoked
token gets a 401 problem that echoes nothing of the token, changes nothing, and is
recorded in the access log as a refusal.

The forgeries use PyJWT and ``cryptography`` directly; tokens the issuer would never
produce (no ``exp``, wrong ``typ``...) are signed with the service's REAL issuer key, so
only the rule under test can refuse them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from api.auth import REQUIRED_CLAIMS, TOKEN_TYPE, TokenSettings, TokenVerifier
from ledger.errors import Unauthenticated
from tests import api_fixtures
from tests.api_fixtures import (
    DROP,
    SITE_A,
    Template,
    World,
    api_settings,
    b64url,
    copy_world,
    foreign_token,
    raw_jwt,
)

# Fixtures (bound here so pytest finds them in this module).
api_template = api_fixtures.api_template
shared_world = api_fixtures.shared_world
world = api_fixtures.world

PROBLEM = "https://reserve-ledger.example/problems/"


def me(w: World, token: str | None, **headers: str) -> Any:
    h = dict(headers)
    if token is not None:
        h.setdefault("Authorization", f"Bearer {token}")
    return w.client.get("/me", headers=h)


def assert_401(resp: Any, token: str | None = None) -> None:
    assert resp.status_code == 401, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    body = resp.json()
    assert body["type"] == PROBLEM + "unauthenticated"
    assert "Traceback" not in resp.text
    if token:
        for part in token.split("."):
            if len(part) > 8:
                assert part not in resp.text, "a 401 must not echo the token"


def public_key_forms(w: World) -> dict[str, bytes]:
    """The issuer's public key in every form an attacker could HMAC with."""
    assert w.svc.issuer is not None
    jwk = w.svc.issuer.jwks()["keys"][0]
    raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pub = Ed25519PublicKey.from_public_bytes(raw)
    return {
        "raw": raw,
        "hex": raw.hex().encode(),
        "jwk-x": jwk["x"].encode(),
        "jwk-json": json.dumps(jwk).encode(),
        "pem": pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "openssh": pub.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    }


# -- the good path, so every refusal below is meaningful -----------------------------


def test_issued_token_works(shared_world: World) -> None:
    resp = me(shared_world, shared_world.token("felix"))
    assert resp.status_code == 200
    assert resp.json() == {
        "user": "felix",
        "roles": ["official"],
        "sites": [],
        "owners": ["JP-RESERVE"],
        "clearance": "NONE",
    }
    # A hand-built token with the same claims, signed by the real key, works too.
    w = shared_world
    assert me(w, w.sign_token(w.good_claims("felix"))).status_code == 200


def test_scope_comes_from_the_registry_not_the_token(shared_world: World) -> None:
    """Roles, sites or clearance claimed in a (validly signed) token grant nothing."""
    w = shared_world
    extra = {"roles": ["security_admin", "auditor"], "sites": [SITE_A], "clearance": "SECRET"}
    token = w.sign_token(w.good_claims("felix", **extra))
    assert me(w, token).json()["roles"] == ["official"]
    resp = w.client.post(
        f"/sites/{SITE_A}/reveal",
        json={"purpose": "claims in the token should not matter"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 403
    assert (
        w.client.get("/log/access", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    )


# -- the attacks the issue lists ------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none(shared_world: World, alg: str) -> None:
    w = shared_world
    assert w.svc.issuer is not None
    header = {"alg": alg, "typ": TOKEN_TYPE, "kid": w.svc.issuer.kid}
    for sig in (b"", b"x"):
        token = raw_jwt(header, w.good_claims("admin"), sig)
        assert_401(me(w, token), token)
        # And with the signature part left out altogether.
        assert_401(me(w, token.rsplit(".", 1)[0] + "."))


def test_hs256_signed_with_the_public_key(shared_world: World) -> None:
    """The classic algorithm confusion: HMAC keyed with the verifier's public key."""
    w = shared_world
    assert w.svc.issuer is not None
    for alg, digest in (
        ("HS256", hashlib.sha256),
        ("HS384", hashlib.sha384),
        ("HS512", hashlib.sha512),
    ):
        for form, key in public_key_forms(w).items():
            header = {"alg": alg, "typ": TOKEN_TYPE, "kid": w.svc.issuer.kid}
            unsigned = raw_jwt(header, w.good_claims("admin")).rsplit(".", 1)[0]
            sig = hmac.new(key, unsigned.encode(), digest).digest()
            token = f"{unsigned}.{b64url(sig)}"
            resp = me(w, token)
            assert_401(resp, token)
            assert resp.json()["detail"] == "token algorithm not accepted", (alg, form)


def test_token_from_an_untrusted_key(shared_world: World) -> None:
    w = shared_world
    assert w.svc.issuer is not None
    claims = w.good_claims("admin")
    # Same kid as the real issuer (the lookup succeeds, the signature must not).
    token = foreign_token(claims, w.svc.issuer.kid)
    assert_401(me(w, token), token)
    assert me(w, token).json()["detail"] == "token signature or claims are invalid"
    # A kid of its own.
    assert_401(me(w, foreign_token(claims, "attacker-key-1")))
    # Other asymmetric algorithms, which the embedded issuer never uses.
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for alg, key in (("RS256", rsa_key), ("PS256", rsa_key), ("ES256", ec_key)):
        token = jwt.encode(
            claims, key, algorithm=alg, headers={"typ": TOKEN_TYPE, "kid": w.svc.issuer.kid}
        )
        assert_401(me(w, token), token)


def test_embedded_keys_in_the_header_are_ignored(shared_world: World) -> None:
    """``jwk``, ``jku`` and ``x5u`` headers must never supply the verification key."""
    w = shared_world
    assert w.svc.issuer is not None
    key = Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    for extra in (
        {"jwk": jwk},
        {"jku": "https://attacker.invalid/jwks.json"},
        {"x5u": "https://attacker.invalid/cert.pem"},
    ):
        for kid in (w.svc.issuer.kid, "attacker"):
            token = jwt.encode(
                w.good_claims("admin"),
                key,
                algorithm="EdDSA",
                headers={"typ": TOKEN_TYPE, "kid": kid, **extra},
            )
            assert_401(me(w, token), token)


def test_tampered_payload_and_header(shared_world: World) -> None:
    w = shared_world
    token = w.token("felix")
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    for change in ({"sub": "admin"}, {"exp": claims["exp"] + 3600}, {"aud": "reserve-ledger-api "}):
        forged = f"{h}.{b64url(json.dumps({**claims, **change}).encode())}.{s}"
        assert_401(me(w, forged), forged)
    header = json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))
    forged = f"{b64url(json.dumps({**header, 'typ': 'AT+JWT'}).encode())}.{p}.{s}"
    assert_401(me(w, forged), forged)
    # One flipped bit of the signature.
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[0] ^= 1
    assert_401(me(w, f"{h}.{p}.{b64url(bytes(sig))}"))


def test_replayed_revoked_jti(world: World) -> None:
    w = world
    token = w.token("olga")
    auth = {"Authorization": f"Bearer {token}"}
    assert w.client.get("/me", headers=auth).status_code == 200
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    # Someone else (not a security admin) cannot revoke it...
    resp = w.client.post("/tokens/revoke", json={"jti": jti}, headers=w.auth("oscar"))
    assert resp.status_code == 403
    assert w.client.get("/me", headers=auth).status_code == 200
    # ...its holder can, and from then on every replay is refused, on every route.
    assert w.client.post("/tokens/revoke", json={"jti": jti}, headers=auth).status_code == 204
    for _ in range(2):
        resp = w.client.get("/me", headers=auth)
        assert_401(resp, token)
        assert resp.json()["detail"] == "token was revoked"
    assert_401(w.client.get("/sites", headers=auth))
    # A security admin revokes anyone's token.
    other = w.token("felix")
    other_jti = jwt.decode(other, options={"verify_signature": False})["jti"]
    assert (
        w.client.post(
            "/tokens/revoke", json={"jti": other_jti}, headers=w.auth("admin")
        ).status_code
        == 204
    )
    assert_401(me(w, other))
    # A fresh token for the same user still works: the jti is revoked, not the user.
    assert me(w, w.token("olga")).status_code == 200


HOSTILE_KIDS = [
    "../../keys/admin",
    "../token-issuer",
    "..\\..\\keys\\admin",
    "/etc/passwd",
    "keys/admin.key",
    "x' OR '1'='1",
    "1; DROP TABLE entries; --",
    "admin'--",
    "%2e%2e%2fkeys%2fadmin",
    "kid\x00admin",
    "kid\nadmin",
    "a" * 129,
    "",
    "unknown-but-well-formed",
    "log",
    "admin",
    "sealing",
]


def test_unknown_kid_with_path_or_sql(world: World) -> None:
    """Hostile ``kid`` values are refused before any lookup; nothing is read, written or
    created, and the answer does not echo them."""
    w = world
    before = w.entry_count()
    keys_before = sorted(p.name for p in (w.home / "keys").iterdir())
    for kid in HOSTILE_KIDS:
        for token in (
            foreign_token(w.good_claims("admin"), kid),
            w.sign_token(w.good_claims("admin"), {"kid": kid}),
        ):
            resp = me(w, token)
            assert_401(resp, token)
            assert resp.json()["detail"] in (
                "token key id is missing or malformed",
                "the token's signing key is not known",
            ), kid
    assert w.entry_count() == before
    assert sorted(p.name for p in (w.home / "keys").iterdir()) == keys_before
    assert me(w, w.token("admin")).status_code == 200  # the database is intact


@pytest.mark.parametrize("bad_kid", [None, 5, ["a"], {"a": 1}])
def test_kid_of_the_wrong_type(shared_world: World, bad_kid: Any) -> None:
    w = shared_world
    header: dict[str, Any] = {"alg": "EdDSA", "typ": TOKEN_TYPE}
    if bad_kid is not None:
        header["kid"] = bad_kid
    token = raw_jwt(header, w.good_claims("admin"), b"\x00" * 64)
    assert_401(me(w, token))


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_every_required_claim(shared_world: World, claim: str) -> None:
    """A token without ``exp`` (or any other required claim), signed by the REAL key."""
    w = shared_world
    token = w.sign_token(w.good_claims("olga", **{claim: DROP}))
    resp = me(w, token)
    assert_401(resp, token)
    assert claim in resp.json()["detail"]


def test_token_without_exp(shared_world: World) -> None:
    w = shared_world
    token = w.sign_token(w.good_claims("admin", exp=DROP))
    resp = me(w, token)
    assert_401(resp, token)
    assert resp.json()["detail"] == "token lacks the 'exp' claim"


@pytest.mark.parametrize(
    "over",
    [
        {"iss": "someone-else"},
        {"aud": "another-api"},
        {"aud": ["another-api"]},
        {"sub": 123},
        {"sub": ""},
        {"jti": 7},
        {"jti": ""},
        {"exp": "tomorrow"},
        {"iat": "now"},
        {"nbf": "now"},
        {"sub": "nobody"},  # no key in this ledger
        {"sub": "log"},  # the log itself is no user
    ],
    ids=lambda o: json.dumps(o),
)
def test_bad_claims(shared_world: World, over: dict[str, Any]) -> None:
    w = shared_world
    token = w.sign_token(w.good_claims("olga", **over))
    assert_401(me(w, token), token)


def test_time_claims_and_leeway(shared_world: World) -> None:
    """A small leeway (30 s) for clock skew, no more."""
    w = shared_world
    t = int(time.time())
    ok = [{"exp": t - 10}, {"nbf": t + 10}, {"iat": t + 10}]
    bad = [{"exp": t - 120}, {"nbf": t + 120}, {"iat": t + 3600}]
    for over in ok:
        assert me(w, w.sign_token(w.good_claims("olga", **over))).status_code == 200, over
    for over in bad:
        assert_401(me(w, w.sign_token(w.good_claims("olga", **over))))
    # An issuer token from an hour ago.
    assert_401(me(w, w.token("olga", now=time.time() - 3600)))


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt+x", "JOSE", ""])
def test_explicit_typ(shared_world: World, typ: str | None) -> None:
    w = shared_world
    headers: dict[str, Any] = {"typ": typ}
    token = w.sign_token(w.good_claims("olga"), headers)
    resp = me(w, token)
    assert_401(resp, token)
    assert resp.json()["detail"] == "token type must be at+jwt"


def test_crit_header_is_refused(shared_world: World) -> None:
    w = shared_world
    for hdr in ({"crit": ["exp"]}, {"crit": ["x-unknown"], "x-unknown": 1}):
        assert_401(me(w, w.sign_token(w.good_claims("olga"), hdr)))


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic b2xnYTpvbGdh",
        "Bearer",
        "Bearer ",
        "Bearer a.b.c",
        "Bearer ....",
        "Bearer " + "A" * 20000,
        "Bearer eyJhbGciOiJFZERTQSJ9",
        "Token abc",
    ],
    ids=range(8),
)
def test_malformed_authorization(shared_world: World, authorization: str) -> None:
    resp = shared_world.client.get("/me", headers={"Authorization": authorization})
    assert_401(resp)


def test_token_in_query_string_is_not_accepted(shared_world: World) -> None:
    w = shared_world
    token = w.token("olga")
    assert_401(w.client.get(f"/me?access_token={token}"), token)


def test_revoked_key_cannot_authenticate(world: World) -> None:
    """A user whose every key is revoked holds valid tokens that no longer work, even a
    token the verifier has already seen (and cached)."""
    w = world
    token = w.token("felix")
    assert me(w, token).status_code == 200
    key_id = w.svc.ledger.active_key_of("felix").key_id
    resp = w.client.post(
        f"/keys/{key_id}/revoke", json={"reason": "left the ministry"}, headers=w.auth("admin")
    )
    assert resp.status_code == 201, resp.text
    assert_401(me(w, token))
    assert_401(me(w, w.token("felix")))


def test_a_token_seen_before_still_expires(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified tokens are remembered; expiry must still be checked on every use."""
    import api.auth

    w = world
    token = w.token("olga")
    assert me(w, token).status_code == 200

    class Later:
        @staticmethod
        def time() -> float:
            return time.time() + 3600

    monkeypatch.setattr(api.auth, "time", Later)
    resp = me(w, token)
    assert_401(resp, token)


def test_refusals_are_in_the_access_log(world: World) -> None:
    w = world
    before = len(w.access_events())
    token = foreign_token(w.good_claims("admin"), "attacker")
    assert_401(me(w, token))
    assert_401(me(w, None))
    events = w.access_events()[before:]
    assert [e["event"]["action"] for e in events] == ["refused", "refused"]
    for e in events:
        assert e["event"]["actor"] == "anonymous"
        assert e["event"]["outcome"] == "401"
        assert e["event"]["reason"] == "unauthenticated"
        assert e["event"]["route"] == "/me"
    assert token.split(".")[2] not in json.dumps(events)


# -- production mode: the identity provider's JWKS ------------------------------------


class StubJWKS(jwt.PyJWKClient):
    """PyJWKClient over a JWKS held in memory (no network)."""

    def __init__(self, jwks: dict[str, Any]):
        super().__init__("https://idp.invalid/.well-known/jwks.json", cache_keys=False)
        self._jwks = jwks

    def fetch_data(self) -> Any:
        return self._jwks


class IdP:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = Ed25519PrivateKey.generate()

        def jwk(pub: Any, cls: Any, kid: str, alg: str) -> dict[str, Any]:
            d = json.loads(cls.to_jwk(pub))
            d.update(kid=kid, alg=alg, use="sig")
            return d

        self.jwks = {
            "keys": [
                jwk(self.rsa.public_key(), RSAAlgorithm, "idp-rsa", "RS256"),
                jwk(self.ec.public_key(), ECAlgorithm, "idp-ec", "ES256"),
                jwk(self.ed.public_key(), OKPAlgorithm, "idp-ed", "EdDSA"),
                {"kty": "oct", "k": b64url(b"idp-shared-secret"), "kid": "idp-oct", "alg": "HS256"},
            ]
        }

    def sign(self, claims: dict[str, Any], alg: str, kid: str) -> str:
        key = {"RS256": self.rsa, "ES256": self.ec, "EdDSA": self.ed}[alg]
        return jwt.encode(claims, key, algorithm=alg, headers={"typ": TOKEN_TYPE, "kid": kid})


@pytest.fixture
def idp_world(api_template: Template, tmp_path: Path) -> Any:
    home = tmp_path / "home"
    settings = api_settings(
        home,
        f"sqlite:///{home / 'ledger.db'}",
        jwks_url="https://idp.invalid/.well-known/jwks.json",
    )
    w = copy_world(api_template, home, settings=settings)
    idp = IdP()
    w.svc.verifier = TokenVerifier(
        settings.token, jwks_client=StubJWKS(idp.jwks), is_revoked=w.svc.is_revoked
    )
    yield w, idp
    w.close()


def _claims(w: World, sub: str, **over: Any) -> dict[str, Any]:
    t = int(time.time())
    c = {
        "iss": "reserve-ledger",
        "aud": "reserve-ledger-api",
        "sub": sub,
        "iat": t,
        "nbf": t,
        "exp": t + 300,
        "jti": f"idp-{time.time_ns()}",
    }
    c.update(over)
    return c


def test_jwks_tokens_work(idp_world: Any) -> None:
    w, idp = idp_world
    assert w.client.get("/.well-known/jwks.json").json() == {"keys": []}
    for alg, kid in (("RS256", "idp-rsa"), ("ES256", "idp-ec"), ("EdDSA", "idp-ed")):
        resp = me(w, idp.sign(_claims(w, "felix"), alg, kid))
        assert resp.status_code == 200, (alg, resp.text)
    # Custodial signing is off: the server holds no user keys in production mode.
    resp = w.client.post(
        "/stock/receive",
        json={"site": SITE_A},
        headers={"Authorization": "Bearer " + idp.sign(_claims(w, "olga"), "EdDSA", "idp-ed")},
    )
    assert resp.status_code == 403
    assert resp.json()["type"] == PROBLEM + "forbidden"


def test_jwks_refuses_hs256_and_none(idp_world: Any) -> None:
    w, _ = idp_world
    claims = _claims(w, "admin")
    unsigned = raw_jwt({"alg": "HS256", "typ": TOKEN_TYPE, "kid": "idp-oct"}, claims).rsplit(
        ".", 1
    )[0]
    sig = hmac.new(b"idp-shared-secret", unsigned.encode(), hashlib.sha256).digest()
    assert_401(me(w, f"{unsigned}.{b64url(sig)}"))
    assert_401(me(w, raw_jwt({"alg": "none", "typ": TOKEN_TYPE, "kid": "idp-ed"}, claims)))
    assert_401(me(w, foreign_token(claims, "idp-ed")))
    assert_401(me(w, foreign_token(claims, "not-in-the-jwks")))


def test_jwks_alg_must_match_the_key(idp_world: Any) -> None:
    w, idp = idp_world
    claims = _claims(w, "admin")
    forged = [
        idp.sign(claims, "ES256", "idp-rsa"),
        idp.sign(claims, "RS256", "idp-ec"),
        idp.sign(claims, "RS256", "idp-ed"),
        idp.sign(claims, "EdDSA", "idp-rsa"),
        idp.sign(claims, "RS256", "idp-oct"),
    ]
    for token in forged:
        assert_401(me(w, token), token)


def test_jwks_verifier_raises_only_unauthenticated() -> None:
    idp = IdP()
    v = TokenVerifier(
        replace(TokenSettings(), jwks_url="https://idp.invalid/jwks"),
        jwks_client=StubJWKS(idp.jwks),
    )
    t = int(time.time())
    claims = {
        "iss": "reserve-ledger",
        "aud": "reserve-ledger-api",
        "sub": "x",
        "iat": t,
        "nbf": t,
        "exp": t + 60,
        "jti": "j",
    }
    with pytest.raises(Unauthenticated):
        v.verify(idp.sign(claims, "ES256", "idp-rsa"))
