"""Bearer tokens (PyJWT), following RFC 8725 (JWT best current practice).

* A fixed allow-list of algorithms (EdDSA, plus ES256/RS256 for an identity provider's
  JWKS); never taken from the token, never ``none``, never HS* beside asymmetric keys,
  which rules out the "HS256 signed with the public key" confusion.
* ``iss``, ``aud``, ``exp``, ``nbf``, ``iat``, ``sub`` and ``jti`` are all required and
  checked, with a small leeway for clock skew; ``typ`` must be ``at+jwt`` (RFC 9068).
* ``kid`` is validated against a strict pattern before any lookup (no path or SQL in it).
* Revoked ``jti`` values are refused (a denylist kept until the token's own expiry).

Embedded default: the service issues tokens itself with an Ed25519 key from the keystore
(``token-issuer``), signed through the ``Signer`` protocol so the private key never
leaves the keystore object. Production: tokens from the organisation's identity provider,
whose keys come from its JWKS URL (PyJWT's ``PyJWKClient``: cached, refetched on an
unknown ``kid`` at most once per cooldown; a kid still unknown is remembered as such for
a while, so made-up kids cost no fetch, issue #8).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.algorithms import Algorithm

from ledger.crypto import Signer
from ledger.errors import Unauthenticated

TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
KID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
REQUIRED_CLAIMS = ["iss", "aud", "exp", "nbf", "iat", "sub", "jti"]
LOCAL_ALGORITHMS = ("EdDSA",)
IDP_ALGORITHMS = ("EdDSA", "ES256", "RS256")
UNKNOWN_KID_SECONDS = 60.0  # a key the IdP publishes later is accepted after this
UNKNOWN_KID_MAX = 4096


@dataclass(frozen=True)
class TokenSettings:
    issuer: str = "reserve-ledger"
    audience: str = "reserve-ledger-api"
    ttl_seconds: int = 900
    leeway_seconds: int = 30
    jwks_url: str | None = None


@dataclass(frozen=True)
class Claims:
    sub: str
    jti: str
    exp: int
    raw: dict[str, Any]


class _SignerAlgorithm(Algorithm):
    """EdDSA through a :class:`ledger.crypto.Signer`: PyJWT builds and serialises the
    token, the keystore object signs it."""

    def prepare_key(self, key: Any) -> Any:
        if not isinstance(key, Signer):
            raise TypeError("expected a Signer")
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        return bytes(key.sign(msg))

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:  # pragma: no cover - signing only
        raise NotImplementedError

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:  # pragma: no cover - signing only
        raise NotImplementedError

    @staticmethod
    def from_jwk(jwk: Any) -> Any:  # pragma: no cover - signing only
        raise NotImplementedError


_signing_jws = jwt.PyJWS(algorithms=[])
_signing_jws.register_algorithm("EdDSA", _SignerAlgorithm())


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """Issues short-lived access tokens for registered users (embedded default)."""

    def __init__(self, signer: Signer, settings: TokenSettings):
        self._signer = signer
        self.settings = settings
        self.kid = signer.key_id

    def issue(
        self, user: str, *, extra: dict[str, Any] | None = None, now: float | None = None
    ) -> str:
        t = int(now if now is not None else time.time())
        claims = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": user,
            "iat": t,
            "nbf": t,
            "exp": t + self.settings.ttl_seconds,
            "jti": secrets.token_hex(16),
            **(extra or {}),
        }
        payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
        # The registered _SignerAlgorithm takes our Signer where PyJWT's types expect a key.
        return _signing_jws.encode(
            payload,
            self._signer,  # type: ignore[arg-type]
            algorithm="EdDSA",
            headers={"typ": TOKEN_TYPE, "kid": self.kid},
        )

    def jwks(self) -> dict[str, Any]:
        """The public key as a JWKS (RFC 8037 OKP), for relying parties."""
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": b64url(self._signer.public_key),
                    "kid": self.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                }
            ]
        }


class TokenVerifier:
    """Checks a bearer token and returns its claims, or raises :class:`Unauthenticated`
    with a message that says what to do and never echoes the token."""

    def __init__(
        self,
        settings: TokenSettings,
        *,
        local_keys: dict[str, bytes] | None = None,
        is_revoked: Callable[[str], bool] = lambda jti: False,
        jwks_client: jwt.PyJWKClient | None = None,
        cache_size: int = 4096,
    ):
        self.settings = settings
        self._local = {
            kid: Ed25519PublicKey.from_public_bytes(raw) for kid, raw in (local_keys or {}).items()
        }
        self._is_revoked = is_revoked
        self._jwks = jwks_client
        if self._jwks is None and settings.jwks_url:
            # At most one forced refetch per 30 s for a kid the cached set lacks.
            self._jwks = jwt.PyJWKClient(
                settings.jwks_url, cache_keys=True, lifespan=300, timeout=5, cooldown_duration=30
            )
        # Key ids the JWKS did not have, until when (monotonic): a token naming one is
        # refused without asking PyJWKClient, which would refetch (issue #8 item 9).
        self._unknown_kids: dict[str, float] = {}
        self._unknown_lock = threading.Lock()
        self._algorithms = list(IDP_ALGORITHMS if self._jwks is not None else LOCAL_ALGORITHMS)
        # Verified tokens by their exact bytes: the same token verifies the same way until
        # it expires, so a repeat skips the signature (expiry and revocation are checked
        # on every use).
        self._cache: dict[str, Claims] = {}
        self._cache_size = cache_size

    def _key_for(self, kid: str, alg: str) -> Any:
        """The key named by ``kid``; the key, not the token, decides the algorithm
        (RFC 8725 section 3.1)."""
        if kid in self._local:
            if alg != "EdDSA":
                raise Unauthenticated("token algorithm does not match its key")
            return self._local[kid]
        if self._jwks is not None:
            jwk = self._jwks_key(kid)
            if jwk.algorithm_name != alg:
                raise Unauthenticated("token algorithm does not match its key")
            return jwk.key
        raise Unauthenticated("the token's signing key is not known")

    @property
    def may_fetch(self) -> bool:
        """Whether :meth:`verify` may block on the network (a JWKS fetch)."""
        return self._jwks is not None

    def _jwks_key(self, kid: str) -> Any:
        """The identity provider's key ``kid``. PyJWKClient refetches the JWKS for a kid
        its cached set lacks; a kid it could not find is remembered as unknown for
        ``UNKNOWN_KID_SECONDS`` (at most ``UNKNOWN_KID_MAX`` of them), so a flood of
        tokens naming made-up kids costs no fetch each."""
        assert self._jwks is not None
        t = time.monotonic()
        with self._unknown_lock:
            until = self._unknown_kids.get(kid)
            if until is not None and until > t:
                raise Unauthenticated("the token's signing key is not known")
        try:
            return self._jwks.get_signing_key(kid)
        except jwt.PyJWKClientError:
            with self._unknown_lock:
                if len(self._unknown_kids) >= UNKNOWN_KID_MAX:
                    self._unknown_kids = {k: u for k, u in self._unknown_kids.items() if u > t}
                    if len(self._unknown_kids) >= UNKNOWN_KID_MAX:
                        self._unknown_kids.clear()
                self._unknown_kids[kid] = t + UNKNOWN_KID_SECONDS
            raise Unauthenticated("the token's signing key is not known") from None

    def verify(self, token: str, *, check_revoked: bool = True) -> Claims:
        claims = self._cache.get(token)
        if claims is None:
            claims = self._verify_signed(token)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[token] = claims
        elif claims.exp + self.settings.leeway_seconds < time.time():
            self._cache.pop(token, None)
            raise Unauthenticated("token expired: get a new one")
        if check_revoked and self._is_revoked(claims.jti):
            raise Unauthenticated("token was revoked")
        return claims

    def _verify_signed(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed bearer token") from None
        if header.get("alg") not in self._algorithms:
            raise Unauthenticated("token algorithm not accepted")
        if str(header.get("typ", "")).lower() not in (TOKEN_TYPE, "application/" + TOKEN_TYPE):
            raise Unauthenticated("token type must be at+jwt")
        kid = header.get("kid")
        if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
            raise Unauthenticated("token key id is missing or malformed")
        key = self._key_for(kid, str(header["alg"]))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": REQUIRED_CLAIMS, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired: get a new one") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token is from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the '{exc.claim}' claim") from None
        except (jwt.InvalidTokenError, jwt.InvalidKeyError, TypeError, ValueError):
            raise Unauthenticated("token signature or claims are invalid") from None
        sub, jti = claims.get("sub"), claims.get("jti")
        if not isinstance(sub, str) or not isinstance(jti, str) or not sub or not jti:
            raise Unauthenticated("token subject or id is malformed")
        return Claims(sub=sub, jti=jti, exp=int(claims["exp"]), raw=claims)
