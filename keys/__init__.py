"""Key management: Ed25519 signers and the keystores that hold their private keys.

``ledger`` never imports this package (the offline verifier needs no secrets); it sees a
signer only through the :class:`ledger.crypto.Signer` protocol.
"""

from keys.backend import Keystore
from keys.factory import KeyBackend, open_keystore
from keys.filestore import KEY_NAME_PATTERN, FileKeystore, validate_key_name
from keys.passphrase import PASSPHRASE_ENV, passphrase_from_env_or_prompt
from keys.sealing import SEALING_KEY_FILE, AesGcmSealer, load_or_create_sealer, load_sealer
from keys.signer import Ed25519Signer

__all__ = [
    "KEY_NAME_PATTERN",
    "PASSPHRASE_ENV",
    "SEALING_KEY_FILE",
    "AesGcmSealer",
    "Ed25519Signer",
    "FileKeystore",
    "KeyBackend",
    "Keystore",
    "load_or_create_sealer",
    "load_sealer",
    "open_keystore",
    "passphrase_from_env_or_prompt",
    "validate_key_name",
]
