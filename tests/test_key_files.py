"""Key files that resist cracking (issue #9 item 5): a memory-hard KDF whose parameters
are in the file, a salt per file, AES-256-GCM; old PKCS#8 files still load and
``reserve keys upgrade`` rewrites them; derived HMAC keys by HKDF, one label each."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    PublicFormat,
)
from structlog.testing import capture_logs

from api.services import ACCESS_LOG_HMAC_LABEL, IDEMPOTENCY_HMAC_LABEL
from keys import AesGcmSealer, FileKeystore
from keys.filestore import UNSAFE_KDF_COST_ENV
from keys.sealing import DERIVE_SALT
from ledger.errors import KeystoreError
from tests.test_cli import assert_one_line_error, run

PASSPHRASE = b"one passphrase for the whole office"
WRONG = "wrong passphrase or corrupt key file for 'alice'"


@pytest.fixture
def real_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production default: no test shortcut."""
    monkeypatch.delenv(UNSAFE_KDF_COST_ENV, raising=False)


def doc(root: Path, name: str) -> dict[str, object]:
    data = json.loads((root / f"{name}.key").read_text())
    assert isinstance(data, dict)
    return data


def test_a_key_file_states_scrypt_at_production_cost(tmp_path: Path, real_cost: None) -> None:
    store = FileKeystore(tmp_path, passphrase=PASSPHRASE)
    with capture_logs() as logs:
        alice = store.generate("alice")
        store.generate("bob")
    assert not [e for e in logs if e["log_level"] == "warning"]
    a, b = doc(tmp_path, "alice"), doc(tmp_path, "bob")
    assert a["kdf"] == "scrypt" and a["v"] == 2
    assert isinstance(a["n"], int) and a["n"] >= 2**17 and a["r"] == 8 and a["p"] == 1
    assert len(base64.b64decode(str(a["salt"]))) == 16
    assert a["salt"] != b["salt"]  # each file its own salt
    assert a["pub"] == alice.public_key.hex()
    text = (tmp_path / "alice.key").read_bytes()
    assert b"PRIVATE KEY" not in text and PASSPHRASE not in text
    info = store.key_file_info("alice")
    assert (info.kdf, info.n, info.r, info.p) == ("scrypt", 2**17, 8, 1)
    assert "salt" not in repr(info)
    assert store.load("alice").public_key == alice.public_key
    assert not store.needs_upgrade("alice")


def test_a_wrong_passphrase_is_one_clear_line(tmp_path: Path) -> None:
    FileKeystore(tmp_path, passphrase=PASSPHRASE).generate("alice")
    with pytest.raises(KeystoreError) as ei:
        FileKeystore(tmp_path, passphrase=b"not it").load("alice")
    assert str(ei.value) == WRONG and ei.value.__cause__ is None
    # Tampering with the stated parameters or the public key is the same refusal.
    d = doc(tmp_path, "alice")
    for change in ({"n": int(str(d["n"])) * 2}, {"pub": "ab" * 32}, {"salt": base64.b64encode(b"x" * 16).decode()}):
        (tmp_path / "alice.key").write_text(json.dumps({**d, **change}))
        with pytest.raises(KeystoreError, match=r"^wrong passphrase or corrupt key file for 'alice'$"):
            FileKeystore(tmp_path, passphrase=PASSPHRASE).load("alice")
    # A file that states a ruinous cost is refused before any work is done.
    (tmp_path / "alice.key").write_text(json.dumps({**d, "n": 2**30}))
    with pytest.raises(KeystoreError, match="unsupported scrypt parameters"):
        FileKeystore(tmp_path, passphrase=PASSPHRASE).load("alice")


def test_the_unsafe_test_cost_is_explicit_and_warned(tmp_path: Path, real_cost: None) -> None:
    store = FileKeystore(tmp_path, passphrase=PASSPHRASE, unsafe_kdf_cost=10)
    with capture_logs() as logs:
        store.generate("alice")
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["unsafe_kdf_cost"]
    assert doc(tmp_path, "alice")["n"] == 2**10
    # A keystore at the real cost reads it, and calls it weak.
    real = FileKeystore(tmp_path, passphrase=PASSPHRASE)
    assert real.needs_upgrade("alice")
    with pytest.raises(KeystoreError):
        FileKeystore(tmp_path, passphrase=PASSPHRASE, unsafe_kdf_cost=2)


def legacy_file(root: Path, name: str, passphrase: bytes = PASSPHRASE) -> bytes:
    """A key file as every keystore held before issue #9: PKCS#8, PBKDF2 2,048 rounds."""
    key = Ed25519PrivateKey.generate()
    root.mkdir(mode=0o700, exist_ok=True)
    (root / f"{name}.key").write_bytes(
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase))
    )
    (root / f"{name}.key").chmod(0o600)
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (root / f"{name}.pub").write_text(pub.hex() + "\n")
    return pub


def test_old_pkcs8_files_still_load_and_upgrade_rewrites_them(tmp_path: Path) -> None:
    pub = legacy_file(tmp_path, "olga")
    store = FileKeystore(tmp_path, passphrase=PASSPHRASE)
    assert store.load("olga").public_key == pub
    assert store.key_file_info("olga").kdf == "pkcs8-pbkdf2"
    assert store.needs_upgrade("olga")
    with pytest.raises(KeystoreError, match=r"^wrong passphrase or corrupt key file for 'olga'$"):
        FileKeystore(tmp_path, passphrase=b"nope").upgrade("olga")
    assert store.key_file_info("olga").kdf == "pkcs8-pbkdf2"  # untouched by the failure
    assert store.upgrade("olga") is True
    assert doc(tmp_path, "olga")["kdf"] == "scrypt"
    assert store.load("olga").public_key == pub  # the same key, better protected
    assert store.upgrade("olga") is False
    assert (tmp_path / "olga.key").stat().st_mode & 0o777 == 0o600


def test_reserve_keys_upgrade(tmp_path: Path) -> None:
    home = tmp_path / "home"
    keys_dir = home / "keys"
    keys_dir.mkdir(parents=True, mode=0o700)
    pub = legacy_file(keys_dir, "olga", b"cli-test-pass")  # the passphrase run() sets
    proc = run(home, "keys", "upgrade", env={"RESERVE_PASSPHRASE": "wrong-one"})
    assert_one_line_error(proc)
    assert proc.returncode == 1 and "wrong passphrase or corrupt key file for 'olga'" in proc.stderr
    assert "wrong-one" not in proc.stderr + proc.stdout
    proc = run(home, "keys", "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("olga upgraded: scrypt N=2^")
    store = FileKeystore(keys_dir, passphrase=b"cli-test-pass")
    assert store.load("olga").public_key == pub and store.key_file_info("olga").kdf == "scrypt"
    again = run(home, "keys", "upgrade", "olga")
    assert again.returncode == 0 and "olga up to date" in again.stdout


def test_derived_hmac_keys_are_hkdf_one_label_each() -> None:
    key = bytes(range(32))
    sealer = AesGcmSealer(key)
    access = sealer.derive_key(ACCESS_LOG_HMAC_LABEL)
    idem = sealer.derive_key(IDEMPOTENCY_HMAC_LABEL)
    assert len(access) == len(idem) == 32 and access != idem and key not in (access, idem)
    for label, derived in ((ACCESS_LOG_HMAC_LABEL, access), (IDEMPOTENCY_HMAC_LABEL, idem)):
        # RFC 5869 HKDF-SHA256, computed independently.
        assert derived == HKDF(algorithm=SHA256(), length=32, salt=DERIVE_SALT, info=label).derive(key)
    with pytest.raises(KeystoreError):
        sealer.derive_key(b"")
