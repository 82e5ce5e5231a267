"""Service settings from the environment (on top of ledger.config's RESERVE_*), validated
at start: ``load_api_settings`` raises one ConfigError listing every problem, one per line.

``RESERVE_TOKEN_ISSUER`` / ``RESERVE_TOKEN_AUDIENCE``  expected ``iss`` / ``aud``
``RESERVE_JWKS_URL``       production: accept the identity provider's tokens (its JWKS,
                           https, or http on loopback for tests); custodial signing is
                           then off (users sign their own entries)
``RESERVE_TOKEN_TTL``      lifetime of tokens the embedded issuer signs (seconds, 900)
``RESERVE_REFUSAL_BUDGET``  refused requests written to the access log per client address
                           per minute (30); beyond, counted in one summary event
``RESERVE_TRUSTED_PROXIES`` comma-separated addresses or networks of the TLS proxies whose
                           ``X-Forwarded-For`` is believed (default: none, the peer address
                           is the client)
``RESERVE_WORKERS``        worker processes for ``reserve serve`` (1); more than one needs
                           PostgreSQL
``RESERVE_METRICS_ALLOW``  networks that may read ``GET /metrics`` (default loopback only)
``RESERVE_UNSAFE_DEMO_LOGIN=1``  a login endpoint that hands a token to any registered
                           user without a password: for the demo on a laptop only; a
                           warning is logged at start and at every use
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from api.auth import TokenSettings
from api.refusals import RefusalLimits
from ledger.config import Settings, db_kind, load_settings, raise_problems, settings_problems
from ledger.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_WORKERS = 64


@dataclass(frozen=True)
class ApiSettings:
    ledger: Settings
    token: TokenSettings
    unsafe_demo_login: bool = False
    refusals: RefusalLimits = field(default_factory=RefusalLimits)
    workers: int = 1
    trusted_proxies: tuple[Network, ...] = ()
    metrics_allow: tuple[Network, ...] = field(
        default_factory=lambda: tuple(ipaddress.ip_network(n) for n in LOOPBACK)
    )

    @property
    def custodial(self) -> bool:
        """The embedded default signs for users with their custodial keys; with an
        external identity provider the server never holds users' keys."""
        return self.token.jwks_url is None


def _networks(name: str, value: str, problems: list[str]) -> tuple[Network, ...]:
    out: list[Network] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            problems.append(f"{name}: '{part}' is not an IP address or network")
    return tuple(out)


def _int(name: str, value: str | None, default: int, lo: int, hi: int, problems: list[str]) -> int:
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        problems.append(f"{name} must be a whole number")
        return default
    if not lo <= n <= hi:
        problems.append(f"{name} must be between {lo} and {hi}")
        return default
    return n


def _jwks_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"):
        return None  # a test identity provider on this machine
    return "RESERVE_JWKS_URL must be an https:// URL (http only on loopback)"


def api_problems(env: Mapping[str, str], *, workers: int | None = None) -> list[str]:
    """Problems with the service's own variables (the ledger's are checked too)."""
    problems = settings_problems(env)
    for name in ("RESERVE_TOKEN_ISSUER", "RESERVE_TOKEN_AUDIENCE"):
        if name in env and not env[name].strip():
            problems.append(f"{name} is set but empty")
    _int("RESERVE_TOKEN_TTL", env.get("RESERVE_TOKEN_TTL"), 900, 60, 86400, problems)
    jwks = env.get("RESERVE_JWKS_URL")
    if jwks and (p := _jwks_problem(jwks)) is not None:
        problems.append(p)
    _networks("RESERVE_TRUSTED_PROXIES", env.get("RESERVE_TRUSTED_PROXIES", ""), problems)
    _networks("RESERVE_METRICS_ALLOW", env.get("RESERVE_METRICS_ALLOW", ""), problems)
    n = workers if workers is not None else _int(
        "RESERVE_WORKERS", env.get("RESERVE_WORKERS"), 1, 1, MAX_WORKERS, problems
    )
    if not 1 <= n <= MAX_WORKERS:
        problems.append(f"--workers must be between 1 and {MAX_WORKERS}")
    db = env.get("RESERVE_DB") or "sqlite:///"
    if n > 1 and db_kind(db) == "sqlite":
        # SQLite has one writer and no advisory lock shared between processes' group
        # committers worth the name: several workers need PostgreSQL (issue #11).
        problems.append("--workers > 1 needs PostgreSQL (RESERVE_DB=postgresql://...); SQLite runs one worker")
    return problems


def load_api_settings(env: Mapping[str, str] | None = None, *, workers: int | None = None) -> ApiSettings:
    """The validated settings; ConfigError lists every problem, one per line."""
    env = os.environ if env is None else env
    problems = api_problems(env, workers=workers)
    raise_problems(problems)
    token = TokenSettings(
        issuer=env.get("RESERVE_TOKEN_ISSUER") or "reserve-ledger",
        audience=env.get("RESERVE_TOKEN_AUDIENCE") or "reserve-ledger-api",
        ttl_seconds=int(env.get("RESERVE_TOKEN_TTL") or 900),
        jwks_url=env.get("RESERVE_JWKS_URL") or None,
    )
    allow = env.get("RESERVE_METRICS_ALLOW") or ",".join(LOOPBACK)
    return ApiSettings(
        ledger=load_settings(env),
        token=token,
        unsafe_demo_login=env.get("RESERVE_UNSAFE_DEMO_LOGIN") == "1",
        refusals=RefusalLimits(per_client=_positive_int(env, "RESERVE_REFUSAL_BUDGET", 30)),
        workers=workers if workers is not None else int(env.get("RESERVE_WORKERS") or 1),
        trusted_proxies=_networks("RESERVE_TRUSTED_PROXIES", env.get("RESERVE_TRUSTED_PROXIES", ""), []),
        metrics_allow=_networks("RESERVE_METRICS_ALLOW", allow, []),
    )


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise ConfigError(f"{name} must be a whole number from 1 to 1000000")
    return int(raw)
