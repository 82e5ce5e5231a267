"""Service settings from the environment (on top of ledger.config's RESERVE_*).

``RESERVE_TOKEN_ISSUER`` / ``RESERVE_TOKEN_AUDIENCE``  expected ``iss`` / ``aud``
``RESERVE_JWKS_URL``       production: accept the identity provider's tokens (its JWKS);
                           custodial signing is then off (users sign their own entries)
``RESERVE_TOKEN_TTL``      lifetime of tokens the embedded issuer signs (seconds, 900)
``RESERVE_REFUSAL_BUDGET``  refused requests written to the access log per client address
                           per minute (30); beyond, counted in one summary event
``RESERVE_UNSAFE_DEMO_LOGIN=1``  a login endpoint that hands a token to any registered
                           user without a password: for the demo on a laptop only; a
                           warning is logged at start and at every use
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from api.auth import TokenSettings
from api.refusals import RefusalLimits
from ledger.config import Settings, load_settings
from ledger.errors import ConfigError


@dataclass(frozen=True)
class ApiSettings:
    ledger: Settings
    token: TokenSettings
    unsafe_demo_login: bool = False
    refusals: RefusalLimits = field(default_factory=RefusalLimits)

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
        refusals=RefusalLimits(per_client=_positive_int(env, "RESERVE_REFUSAL_BUDGET", 30)),
    )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise ConfigError(f"{name} must be a whole number from 1 to 1000000")
    return int(raw)
