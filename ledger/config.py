"""Settings every command reads from the environment (a stable interface, issue #2).

``RESERVE_HOME``        keystore and local state (default ``./var``)
``RESERVE_DB``          database URL (default ``sqlite:///$RESERVE_HOME/ledger.db``)
``RESERVE_PASSPHRASE``  keystore passphrase (else a prompt on a terminal; never argv)
``RESERVE_USER``        whose key signs, when ``--as`` is not given
``RESERVE_LOG_LEVEL``   structlog level for the CLI (default ``warning``)
``RESERVE_KEYSTORE``    ``file`` (default: encrypted files under ``$RESERVE_HOME/keys``) or
                        ``pkcs11`` (an HSM, issue #11) with ``RESERVE_PKCS11_MODULE`` (the
                        library's path), ``RESERVE_PKCS11_TOKEN`` (token label) and
                        ``RESERVE_PKCS11_PIN``; checked when the keystore is opened
                        (``keys.open_keystore``)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


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
    keystore: KeystoreSettings = field(default_factory=KeystoreSettings)

    @property
    def keystore_dir(self) -> Path:
        return self.home / "keys"

    @property
    def log_pub_path(self) -> Path:
        return self.home / "log.pub"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    home = Path(env.get("RESERVE_HOME") or "var")
    db = env.get("RESERVE_DB") or f"sqlite:///{home / 'ledger.db'}"
    return Settings(
        home=home,
        db_url=db,
        user=env.get("RESERVE_USER") or None,
        log_level=(env.get("RESERVE_LOG_LEVEL") or "warning").lower(),
        keystore=KeystoreSettings(
            backend=(env.get("RESERVE_KEYSTORE") or "file").strip().lower(),
            pkcs11_module=env.get("RESERVE_PKCS11_MODULE") or None,
            pkcs11_token=env.get("RESERVE_PKCS11_TOKEN") or None,
            pkcs11_pin=env.get("RESERVE_PKCS11_PIN"),
        ),
    )
