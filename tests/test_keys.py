"""keys/: the Ed25519 signer, the encrypted file keystore, the passphrase source."""

from __future__ import annotations

import copy
import getpass
import os
import pickle
import re
import stat
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keys
from keys import (
    PASSPHRASE_ENV,
    Ed25519Signer,
    FileKeystore,
    Keystore,
    passphrase_from_env_or_prompt,
    validate_key_name,
)
from keys.filestore import RESERVED_NAMES
from ledger.crypto import Signer, key_id, verify_signature
from ledger.errors import ConfigError, KeystoreError, SignatureInvalid

PASSPHRASE = b"correct horse battery staple 7f3k"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "keystore"


@pytest.fixture
def store(root: Path) -> FileKeystore:
    return FileKeystore(root, passphrase=PASSPHRASE)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# ----------------------------------------------------------------------------- signer


def test_signer_implements_protocol_and_signs() -> None:
    signer = Ed25519Signer.generate()
    assert isinstance(signer, Signer)
    assert len(signer.public_key) == 32
    assert signer.key_id == key_id(signer.public_key)
    sig = signer.sign(b"hello")
    assert len(sig) == 64
    verify_signature(public_key=signer.public_key, signature=sig, message=b"hello")
    with pytest.raises(SignatureInvalid):
        verify_signature(public_key=signer.public_key, signature=sig, message=b"hellO")


def test_signer_never_shows_private_key() -> None:
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    signer = Ed25519Signer(private)
    for text in (repr(signer), str(signer), f"{signer}"):
        assert raw.hex() not in text
        assert signer.key_id in text
    assert not any("private" in name.lower() for name in dir(signer) if not name.startswith("_"))
    with pytest.raises(TypeError):
        pickle.dumps(signer)
    with pytest.raises(TypeError):
        copy.copy(signer)
    with pytest.raises(TypeError):
        copy.deepcopy(signer)


def test_signer_rejects_other_key_types() -> None:
    with pytest.raises(TypeError):
        Ed25519Signer(b"\x00" * 32)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- keystore


def test_round_trip(store: FileKeystore, root: Path) -> None:
    assert store.names() == []
    assert not store.exists("alice")
    created = store.generate("alice")
    assert store.exists("alice")
    assert store.names() == ["alice"]
    loaded = store.load("alice")
    assert isinstance(loaded, Ed25519Signer)
    assert loaded.public_key == created.public_key
    assert loaded.key_id == created.key_id
    assert store.public_key("alice") == created.public_key
    message = b"entry bytes"
    verify_signature(public_key=created.public_key, signature=loaded.sign(message), message=message)

    store.generate("log")
    store.generate("admin")
    assert store.names() == ["admin", "alice", "log"]
    assert sorted(p.name for p in root.iterdir()) == [
        "admin.key",
        "admin.pub",
        "alice.key",
        "alice.pub",
        "log.key",
        "log.pub",
    ]


def test_key_file_is_encrypted_json_not_pkcs8(store: FileKeystore, root: Path) -> None:
    """Issue #9: scrypt + AES-256-GCM (tests/test_key_files.py checks the KDF)."""
    signer = store.generate("alice")
    data = (root / "alice.key").read_bytes()
    assert not data.startswith(b"-----BEGIN")
    with pytest.raises(ValueError):  # not a PEM any more
        load_pem_private_key(data, password=PASSPHRASE)
    assert store.load("alice").public_key == signer.public_key
    assert (root / "alice.pub").read_text() == signer.public_key.hex() + "\n"


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_file_and_directory_modes(root: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        FileKeystore(root, passphrase=PASSPHRASE).generate("alice")
    finally:
        os.umask(old)
    assert mode(root) == 0o700
    assert mode(root / "alice.key") == 0o600
    assert mode(root / "alice.pub") == 0o644
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_existing_loose_directory_is_tightened(root: Path, umask_zero: None) -> None:
    root.mkdir(mode=0o777)
    assert mode(root) == 0o777
    FileKeystore(root, passphrase=PASSPHRASE).generate("alice")
    assert mode(root) == 0o700


def test_public_keys_without_passphrase(store: FileKeystore, root: Path) -> None:
    signer = store.generate("alice")
    other = FileKeystore(root, passphrase=b"some other passphrase")
    assert other.names() == ["alice"]
    assert other.public_key("alice") == signer.public_key


def test_wrong_passphrase_message_has_no_secret(store: FileKeystore, root: Path) -> None:
    store.generate("alice")
    wrong = b"hunter2-not-the-right-one"
    with pytest.raises(KeystoreError) as info:
        FileKeystore(root, passphrase=wrong).load("alice")
    err = info.value
    assert err.public_message == "wrong passphrase or corrupt key file for 'alice'"
    assert str(err) == "wrong passphrase or corrupt key file for 'alice'"
    rendered = "".join(traceback.format_exception(err)) + repr(err) + repr(err.args)
    for secret in (wrong, PASSPHRASE):
        assert secret.decode() not in rendered
    assert err.__cause__ is None
    assert err.__suppress_context__


def test_keystore_repr_has_no_passphrase(store: FileKeystore) -> None:
    assert PASSPHRASE.decode() not in repr(store)
    assert PASSPHRASE.decode() not in str(store)
    with pytest.raises(TypeError):
        pickle.dumps(store)


def test_corrupt_key_file(store: FileKeystore, root: Path) -> None:
    store.generate("alice")
    (root / "alice.key").write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(KeystoreError, match="wrong passphrase or corrupt key file for 'alice'"):
        store.load("alice")


def test_unencrypted_key_file_refused(store: FileKeystore, root: Path) -> None:
    store.generate("alice")
    plain = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    (root / "alice.key").write_bytes(plain)
    with pytest.raises(KeystoreError, match="wrong passphrase or corrupt key file"):
        store.load("alice")


def test_public_key_file_must_match(store: FileKeystore, root: Path) -> None:
    store.generate("alice")
    (root / "alice.pub").write_text(Ed25519Signer.generate().public_key.hex() + "\n")
    with pytest.raises(KeystoreError, match="does not match"):
        store.load("alice")


def test_missing_key(store: FileKeystore) -> None:
    with pytest.raises(KeystoreError, match="no key named 'bob'"):
        store.load("bob")
    with pytest.raises(KeystoreError, match="no key named 'bob'"):
        store.public_key("bob")
    assert store.names() == []  # root does not even exist yet


def test_refuses_overwrite(store: FileKeystore, root: Path) -> None:
    first = store.generate("alice")
    before = (root / "alice.key").read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        store.generate("alice")
    assert (root / "alice.key").read_bytes() == before
    assert store.load("alice").public_key == first.public_key
    assert store.public_key("alice") == first.public_key


def test_symlinked_key_refused(store: FileKeystore, root: Path, tmp_path: Path) -> None:
    FileKeystore(tmp_path / "elsewhere", passphrase=PASSPHRASE).generate("bob")
    store.generate("alice")
    (root / "alice.key").unlink()
    (root / "alice.key").symlink_to(tmp_path / "elsewhere" / "bob.key")
    with pytest.raises(KeystoreError, match="symbolic link"):
        store.load("alice")
    with pytest.raises(KeystoreError, match="already exists"):  # a dangling link counts too
        (root / "carol.key").symlink_to(tmp_path / "nowhere")
        store.generate("carol")
    assert not (tmp_path / "nowhere").exists()


def test_empty_passphrase_refused(root: Path) -> None:
    with pytest.raises(KeystoreError):
        FileKeystore(root, passphrase=b"")
    with pytest.raises(KeystoreError):
        FileKeystore(root, passphrase="text")  # type: ignore[arg-type]


BAD_NAMES = [
    "",
    "Admin",
    "../x",
    "..",
    ".",
    ".hidden",
    "a/b",
    "/etc/passwd",
    "a\\b",
    "-a",
    "_a",
    "a b",
    "alice\n",
    "x\x00",
    "é",
    "a" * 65,
    "a+b",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_refuses_bad_names(store: FileKeystore, root: Path, tmp_path: Path, name: str) -> None:
    for call in (store.generate, store.load, store.exists, store.public_key):
        with pytest.raises(KeystoreError, match="invalid key name"):
            call(name)
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


@pytest.mark.parametrize("name", ["a", "0", "log", "alice", "a.b", "a_b", "a-b", "a..", "a" * 64])
def test_good_names(name: str) -> None:
    assert validate_key_name(name) == name


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_name_validation_matches_pattern(name: str) -> None:
    # "sealing" is reserved: <root>/sealing.key is the location sealing key (keys.sealing).
    ok = re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", name) is not None and name not in RESERVED_NAMES
    if ok:
        assert validate_key_name(name) == name
        assert "/" not in name and not name.startswith(".")
    else:
        with pytest.raises(KeystoreError):
            validate_key_name(name)


def test_file_keystore_satisfies_keystore_protocol(store: FileKeystore) -> None:
    backend: Keystore = store  # checked by mypy
    assert isinstance(backend, Keystore)
    assert isinstance(backend.generate("log"), Signer)


def test_package_exports() -> None:
    for name in keys.__all__:
        assert hasattr(keys, name)


# ------------------------------------------------------------------------- passphrase


def test_passphrase_from_env() -> None:
    got = passphrase_from_env_or_prompt(env={PASSPHRASE_ENV: "s3cret é "}, prompt=True)
    assert got == "s3cret é ".encode()


def test_empty_env_passphrase_refused() -> None:
    with pytest.raises(ConfigError, match="empty"):
        passphrase_from_env_or_prompt(env={PASSPHRASE_ENV: ""}, prompt=True)


def test_no_passphrase_no_prompt() -> None:
    with pytest.raises(ConfigError) as info:
        passphrase_from_env_or_prompt(env={}, prompt=False)
    assert str(info.value) == "set RESERVE_PASSPHRASE or run on a terminal to be prompted"


class _FakeStdin:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_no_terminal_no_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _FakeStdin(False))

    def never(prompt: str = "") -> str:
        raise AssertionError("must not prompt without a terminal")

    monkeypatch.setattr(getpass, "getpass", never)
    with pytest.raises(ConfigError, match="set RESERVE_PASSPHRASE"):
        passphrase_from_env_or_prompt(env={}, prompt=True)


def test_prompt_on_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _FakeStdin(True))
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "typed in")
    assert passphrase_from_env_or_prompt(env={}, prompt=True) == b"typed in"


def test_prompted_empty_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _FakeStdin(True))
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "")
    with pytest.raises(ConfigError, match="empty"):
        passphrase_from_env_or_prompt(env={}, prompt=True)


def test_prompt_eof(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", _FakeStdin(True))

    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", eof)
    with pytest.raises(ConfigError, match="no passphrase"):
        passphrase_from_env_or_prompt(env={}, prompt=True)
