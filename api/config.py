"""Service settings from the environment (on top of ledger.config's RESERVE_*).

``RESERVE_TOKEN_ISSUER`` / ``RESERVE_TOKEN_AUDIENCE``  expected ``iss`` / ``aud``
``RESERVE_JWKS_URL``       production: accept the identity provider's tokens (its JWKS);
                           custodial signing is then off (users sign their own entries)
``RESERVE_TOKEN_TTL``      lifetime of tokens the embedded issuer signs (seconds, 900)
``RESERVE_UNSAFE_DEMO_LOGIN=1``  a login endpoint that hands a token to any registered
                           user without a password: for the demo on a laptop only; a
                           warning is logged at start and at every use
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from api.auth import TokenSettings
from ledger.config import Settings, load_settings


@dataclass(frozen=True)
class ApiSettings:
    ledger: Settings
    token: TokenSettings
    unsafe_demo_login: bool = False

    @property
    def custodial(self) -> bool:
        """The embedded default signs for users with their custodial keys; with an
        external identity provider the server never holds users' keys."""
        return self.token.jwks_url is None


def load_api_settings(env: Mapping[str, str] | None = None) -> ApiSettings:
    env = os.environ if env is None else env
    token = TokenSettings(
        issuer=env.get("RESERVE_TOKEN_ISSUER") or "reserve-ledger",
        audience=env.get("RESERVE_TOKEN_AUDIENCE") or "reserve-ledger-api",
        ttl_seconds=int(env.get("RESERVE_TOKEN_TTL") or 900),
        jwks_url=env.get("RESERVE_JWKS_URL") or None,
    )
    return ApiSettings(
        ledger=load_settings(env),
        token=token,
        unsafe_demo_login=env.get("RESERVE_UNSAFE_DEMO_LOGIN") == "1",
    )
