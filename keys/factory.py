"""The one place that turns configuration into a keystore and a sealing key (issue #11).

``RESERVE_KEYSTORE=file`` (the default) is the passphrase-encrypted directory
``$RESERVE_HOME/keys``; ``RESERVE_KEYSTORE=pkcs11`` is a PKCS#11 token (an HSM) named by
``RESERVE_PKCS11_MODULE``, ``RESERVE_PKCS11_TOKEN`` and ``RESERVE_PKCS11_PIN``. Callers
(the ``reserve`` command, the service) never name a backend class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from keys.backend import Keystore
from keys.filestore import FileKeystore
from keys.sealing import load_or_create_sealer
from ledger.config import Settings
from ledger.errors import ConfigError
from ledger.locations import Sealer

__all__ = ["BACKENDS", "KeyBackend", "SealingKey", "open_keystore"]

BACKENDS: Final = ("file", "pkcs11")


class SealingKey(Sealer, Protocol):
    """A :class:`ledger.locations.Sealer` that also derives the access log's HMAC key."""

    def derive_key(self, label: bytes) -> bytes: ...


@dataclass(frozen=True)
class KeyBackend:
    """The keystore and how to get the sealing key (made on first use if absent).

    ``holds_key_files``: whether private keys live as files under ``RESERVE_HOME``.
    """

    keystore: Keystore
    sealer: Callable[[], SealingKey]
    name: str

    @property
    def holds_key_files(self) -> bool:
        return self.name == "file"


def _required(value: str | None, var: str) -> str:
    if value is None or value == "":
        raise ConfigError(f"RESERVE_KEYSTORE=pkcs11 needs {var}")
    return value


def open_keystore(settings: Settings, *, passphrase: Callable[[], bytes]) -> KeyBackend:
    """The keystore configured in ``settings.keystore``.

    ``passphrase`` is called only by the file backend (so an HSM deployment is never asked
    for one). Unknown backend, missing variable, unloadable module, unknown token, wrong
    PIN: :class:`ConfigError` naming the variable, never its secret value.
    """
    cfg = settings.keystore
    if cfg.backend == "file":
        secret = passphrase()
        root = settings.keystore_dir
        return KeyBackend(
            keystore=FileKeystore(root, passphrase=secret),
            sealer=lambda: load_or_create_sealer(root, passphrase=secret),
            name="file",
        )
    if cfg.backend == "pkcs11":
        module = _required(cfg.pkcs11_module, "RESERVE_PKCS11_MODULE")
        label = _required(cfg.pkcs11_token, "RESERVE_PKCS11_TOKEN")
        pin = _required(cfg.pkcs11_pin, "RESERVE_PKCS11_PIN")
        # Imported here: python-pkcs11 loads only where an HSM is configured.
        from keys.pkcs11sealing import load_or_create_pkcs11_sealer
        from keys.pkcs11store import Pkcs11Keystore
        from keys.pkcs11token import connect

        token = connect(module=module, token_label=label, pin=pin)
        return KeyBackend(
            keystore=Pkcs11Keystore(token),
            sealer=lambda: load_or_create_pkcs11_sealer(token),
            name="pkcs11",
        )
    raise ConfigError(f"RESERVE_KEYSTORE must be one of: {', '.join(BACKENDS)}")
