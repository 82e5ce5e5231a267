"""Settings every command reads from the environment (a stable interface, issue #2), and
their validation (issue #11): every problem is found at start, one line each, before
anything is opened, so an operator fixes them all in one go.

``RESERVE_HOME``        keystore and local state (default ``./var``)
``RESERVE_DB``          database URL (default ``sqlite:///$RESERVE_HOME/ledger.db``)
``RESERVE_DB_READ``     optional PostgreSQL URL of a streaming replica for reads,
                        reports, proofs, exports and verification
``RESERVE_PASSPHRASE``  keystore passphrase (else a prompt on a terminal; never argv)
``RESERVE_USER``        whose key signs, when ``--as`` is not given
``RESERVE_LOG_LEVEL``   structlog level for the CLI (default ``warning``)
``RESERVE_LOG_FORMAT``  ``json`` (default) or ``console``
``RESERVE_KEYSTORE``    ``file`` (default: encrypted files under ``$RESERVE_HOME/keys``) or
                        ``pkcs11`` (an HSM, issue #11) with ``RESERVE_PKCS11_MODULE`` (the
                        library's path), ``RESERVE_PKCS11_TOKEN`` (token label) and
                        ``RESERVE_PKCS11_PIN``; their presence is checked at start, the rest
                        when the keystore is opened (``keys.open_keystore``)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "console")
KEYSTORES = ("file", "pkcs11")
PKCS11_VARIABLES = ("RESERVE_PKCS11_MODULE", "RESERVE_PKCS11_TOKEN", "RESERVE_PKCS11_PIN")


@dataclass(frozen=True)
class KeystoreSettings:
    """Which keystore backend holds the service's keys; raw values, validated by
    ``keys.open_keystore`` (the PIN is never shown by ``repr``)."""

    backend: str = "file"
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    home: Path
    db_url: str
    user: str | None
    log_level: str
    read_db_url: str | None = None
    log_format: str = "json"
    keystore: KeystoreSettings = field(default_factory=KeystoreSettings)

    @property
    def keystore_dir(self) -> Path:
        return self.home / "keys"

    @property
    def log_pub_path(self) -> Path:
        return self.home / "log.pub"

    @property
    def read_url(self) -> str:
        """Where reads go: the replica when one is configured, else the primary."""
        return self.read_db_url or self.db_url


def db_kind(url: str) -> str | None:
    """``sqlite``, ``postgresql`` or None for a URL this project cannot open."""
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        return "postgresql"
    return None


def settings_problems(env: Mapping[str, str]) -> list[str]:
    """Every problem with the ledger's variables, one line each (no value echoed: a URL
    or a PIN may hold a secret)."""
    problems: list[str] = []
    db = env.get("RESERVE_DB")
    if db and db_kind(db) is None:
        problems.append("RESERVE_DB must be sqlite:///PATH or postgresql://USER@HOST/DB")
    read = env.get("RESERVE_DB_READ")
    if read:
        if db_kind(read) != "postgresql":
            problems.append("RESERVE_DB_READ must be a postgresql:// URL (a streaming replica)")
        elif not db or db_kind(db) != "postgresql":
            problems.append("RESERVE_DB_READ needs RESERVE_DB to be the PostgreSQL primary")
    level = (env.get("RESERVE_LOG_LEVEL") or "warning").lower()
    if level not in LOG_LEVELS:
        problems.append(f"RESERVE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    fmt = (env.get("RESERVE_LOG_FORMAT") or "json").lower()
    if fmt not in LOG_FORMATS:
        problems.append(f"RESERVE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")
    keystore = (env.get("RESERVE_KEYSTORE") or "file").strip().lower()
    if keystore not in KEYSTORES:
        problems.append(f"RESERVE_KEYSTORE must be one of {', '.join(KEYSTORES)}")
    elif keystore == "pkcs11":
        for name in PKCS11_VARIABLES:
            if not env.get(name):
                problems.append(f"RESERVE_KEYSTORE=pkcs11 needs {name}")  # as keys.factory says
        module = env.get("RESERVE_PKCS11_MODULE")
        if module and not Path(module).is_file():
            problems.append("RESERVE_PKCS11_MODULE does not name a readable library file")
    return problems


def raise_problems(problems: list[str]) -> None:
    """One ConfigError listing every problem, one per line."""
    if problems:
        raise ConfigError("\n".join(problems))


def load_settings(env: Mapping[str, str] | None = None, *, strict: bool = False) -> Settings:
    """The settings; with ``strict`` every problem is raised at once (ConfigError, one
    line per problem). Lenient loading keeps ``--help`` and the offline verifier usable
    on a machine whose environment is meant for something else."""
    env = os.environ if env is None else env
    if strict:
        raise_problems(settings_problems(env))
    home = Path(env.get("RESERVE_HOME") or "var")
    db = env.get("RESERVE_DB") or f"sqlite:///{home / 'ledger.db'}"
    return Settings(
        home=home,
        db_url=db,
        user=env.get("RESERVE_USER") or None,
        log_level=(env.get("RESERVE_LOG_LEVEL") or "warning").lower(),
        read_db_url=env.get("RESERVE_DB_READ") or None,
        log_format=(env.get("RESERVE_LOG_FORMAT") or "json").lower(),
        keystore=KeystoreSettings(
            backend=(env.get("RESERVE_KEYSTORE") or "file").strip().lower(),
            pkcs11_module=env.get("RESERVE_PKCS11_MODULE") or None,
            pkcs11_token=env.get("RESERVE_PKCS11_TOKEN") or None,
            pkcs11_pin=env.get("RESERVE_PKCS11_PIN"),
        ),
    )
