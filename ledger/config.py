"""Settings every command reads from the environment (a stable interface, issue #2).

``RESERVE_HOME``        keystore and local state (default ``./var``)
``RESERVE_DB``          database URL (default ``sqlite:///$RESERVE_HOME/ledger.db``)
``RESERVE_PASSPHRASE``  keystore passphrase (else a prompt on a terminal; never argv)
``RESERVE_USER``        whose key signs, when ``--as`` is not given
``RESERVE_LOG_LEVEL``   structlog level for the CLI (default ``warning``)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    db_url: str
    user: str | None
    log_level: str

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
    )
