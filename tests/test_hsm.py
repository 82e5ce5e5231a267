"""Keys in an HSM over PKCS#11 (issue #11), against a real SoftHSM2 token.

The token is installed and initialised by the test set-up (tests/softhsm.py). These tests
attack: they try to read the private values out, log in with a wrong PIN, and look for
key files under RESERVE_HOME.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

from api.app import create_app
from api.auth import TokenSettings
from api.config import ApiSettings
from api.services import TOKEN_KEY_NAME, build_services
from keys import Keystore, open_keystore
from keys.pkcs11sealing import AES_LABEL, HMAC_LABEL
from keys.pkcs11store import LABEL_PREFIX
from keys.pkcs11token import connect
from ledger.config import KeystoreSettings, Settings, load_settings
from ledger.errors import ConfigError, KeystoreError
from ledger.locations import Location, location_bytes, verify_opening
from tests import softhsm
from tests.softhsm import Hsm

# The fixtures, by name: a session pool of SoftHSM2 tokens and one token per test.
softhsm_pool = softhsm.softhsm_pool
hsm = softhsm.hsm

ROOT = Path(__file__).resolve().parents[1]
LOCATION = {"name": "Depot North", "address": "1 Quarry Road", "latitude": 45.1, "longitude": 24.9}


def settings_for(h: Hsm, home: Path, *, pin: str | None = None, db: str | None = None) -> Settings:
    return load_settings({"RESERVE_HOME": str(home), **({"RESERVE_DB": db} if db else {}), **h.env(pin)})


def _no_passphrase() -> bytes:
    raise AssertionError("the PKCS#11 backend must not ask for a passphrase")


def run(home: Path, h: Hsm, *args: str, pin: str | None = None, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    env.update({"RESERVE_HOME": str(home), **h.env(pin)})  # no RESERVE_PASSPHRASE at all
    if db:
        env["RESERVE_DB"] = db
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def token_objects(h: Hsm) -> list[dict[str, object]]:
    """Every key object in the token, seen through a fresh session of our own."""
    tok = connect(module=h.module, token_label=h.label, pin=h.pin)

    def read(session: pkcs11.Session) -> list[dict[str, object]]:
        out = []
        for obj in session.get_objects({}):
            cls = obj[Attribute.CLASS]
            if cls in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY, ObjectClass.PUBLIC_KEY):
                out.append({"obj": obj, "class": cls, "label": obj[Attribute.LABEL]})
        return out

    return tok.run("list", read)


# -- the keystore backend -------------------------------------------------------------


def test_keys_are_made_in_the_token_and_sign_ed25519(hsm: Hsm, tmp_path: Path) -> None:
    backend = open_keystore(settings_for(hsm, tmp_path), passphrase=_no_passphrase)
    store = backend.keystore
    assert isinstance(store, Keystore) and not backend.holds_key_files
    signer = store.generate("alice")
    msg = b"entry bytes"
    Ed25519PublicKey.from_public_bytes(signer.public_key).verify(signer.sign(msg), msg)
    again = store.load("alice")
    assert again.public_key == signer.public_key == store.public_key("alice")
    assert again.key_id == signer.key_id
    assert store.exists("alice") and not store.exists("bob")
    store.generate("bob")
    assert store.names() == ["alice", "bob"]
    with pytest.raises(KeystoreError, match="already exists"):
        store.generate("alice")
    with pytest.raises(KeystoreError, match="no key named 'carol'"):
        store.load("carol")
    with pytest.raises(KeystoreError, match="invalid key name"):
        store.generate("../x")
    assert not list(tmp_path.rglob("*")), "the HSM backend wrote files under RESERVE_HOME"


def test_private_and_secret_keys_cannot_be_exported(hsm: Hsm, tmp_path: Path) -> None:
    backend = open_keystore(settings_for(hsm, tmp_path), passphrase=_no_passphrase)
    backend.keystore.generate("log")
    backend.sealer()
    secrets_ = [o for o in token_objects(hsm) if o["class"] != ObjectClass.PUBLIC_KEY]
    assert {o["label"] for o in secrets_} == {LABEL_PREFIX + "log", AES_LABEL, HMAC_LABEL}
    for o in secrets_:
        obj = o["obj"]
        assert obj[Attribute.EXTRACTABLE] is False  # type: ignore[index]
        assert obj[Attribute.SENSITIVE] is True  # type: ignore[index]
        assert obj[Attribute.NEVER_EXTRACTABLE] is True  # type: ignore[index]
        with pytest.raises(p11e.AttributeSensitive):
            obj[Attribute.VALUE]  # type: ignore[index]
    # Nor can it be wrapped out under a key the attacker makes in the same session.
    tok = connect(module=hsm.module, token_label=hsm.label, pin=hsm.pin)

    def wrap_out(session: pkcs11.Session) -> None:
        kek = session.generate_key(KeyType.AES, 256, template={Attribute.WRAP: True})
        for o in secrets_:
            with pytest.raises((p11e.KeyUnextractable, p11e.KeyNotWrappable, p11e.MechanismInvalid)):
                kek.wrap_key(o["obj"], mechanism=Mechanism.AES_KEY_WRAP_PAD)

    tok.run("wrap", wrap_out)


def test_sealer_in_the_token_seals_and_fails_closed(hsm: Hsm, tmp_path: Path) -> None:
    sealer = open_keystore(settings_for(hsm, tmp_path), passphrase=_no_passphrase).sealer()
    nonce, ct = sealer.seal(b"the secret place", aad=b"SITE-A|1")
    assert len(nonce) == 12 and len(ct) == len(b"the secret place") + 16
    assert sealer.open(nonce, ct, aad=b"SITE-A|1") == b"the secret place"
    flipped = bytes([ct[0] ^ 1]) + ct[1:]
    for args in ((nonce, flipped, b"SITE-A|1"), (nonce, ct, b"SITE-B|1"), (b"\0" * 12, ct, b"SITE-A|1"), (b"short", ct, b"SITE-A|1")):
        with pytest.raises(KeystoreError) as err:
            sealer.open(args[0], args[1], aad=args[2])
        assert str(err.value) == "sealed location cannot be opened with this key"
    with pytest.raises(KeystoreError, match="cannot be opened"):
        sealer.open(nonce, None, aad=b"SITE-A|1")  # type: ignore[arg-type]
    # The same key is found again (not a new one), and the derived key is stable.
    again = open_keystore(settings_for(hsm, tmp_path), passphrase=_no_passphrase).sealer()
    assert again.key_id == sealer.key_id
    assert again.open(nonce, ct, aad=b"SITE-A|1") == b"the secret place"
    assert again.derive_key(b"x") == sealer.derive_key(b"x") != sealer.derive_key(b"y")
    assert len(sealer.derive_key(b"x")) == 32


def test_configuration_errors_are_clear_and_hold_no_pin(hsm: Hsm, tmp_path: Path) -> None:
    def opened(**kw: str | None) -> None:
        cfg = KeystoreSettings(**{"backend": "pkcs11", "pkcs11_module": hsm.module,
                                  "pkcs11_token": hsm.label, "pkcs11_pin": hsm.pin, **kw})  # type: ignore[arg-type]
        s = Settings(home=tmp_path, db_url="sqlite://", user=None, log_level="warning", keystore=cfg)
        open_keystore(s, passphrase=_no_passphrase)

    cases = {
        "RESERVE_KEYSTORE must be one of": {"backend": "vault"},
        "needs RESERVE_PKCS11_MODULE": {"pkcs11_module": None},
        "needs RESERVE_PKCS11_TOKEN": {"pkcs11_token": ""},
        "needs RESERVE_PKCS11_PIN": {"pkcs11_pin": None},
        "does not name a file": {"pkcs11_module": str(tmp_path / "nope.so")},
        "no PKCS#11 token labelled 'absent'": {"pkcs11_token": "absent"},
        "refused the PIN": {"pkcs11_pin": "wrong-pin-0000"},
    }
    for message, change in cases.items():
        with pytest.raises(ConfigError, match=message) as err:
            opened(**change)
        assert hsm.pin not in str(err.value) and "wrong-pin-0000" not in str(err.value)
    assert hsm.pin not in repr(settings_for(hsm, tmp_path))


def _sign_in_child(h: Hsm, home: str, out: Any) -> None:
    try:
        backend = open_keystore(settings_for(h, Path(home)), passphrase=_no_passphrase)
        out.put(backend.keystore.load("worker").sign(b"from a forked worker"))
    except BaseException as exc:
        out.put(f"{type(exc).__name__}: {exc}")


def test_a_forked_worker_logs_in_again_and_signs(hsm: Hsm, tmp_path: Path) -> None:
    # Several workers (`reserve serve --workers N`) may fork after the parent used the
    # token: PKCS#11 state must not be inherited (v2.40 section 6.6.1).
    backend = open_keystore(settings_for(hsm, tmp_path), passphrase=_no_passphrase)
    signer = backend.keystore.generate("worker")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_sign_in_child, args=(hsm, str(tmp_path), out))
    child.start()
    got = out.get(timeout=60)
    child.join(timeout=60)
    assert isinstance(got, bytes), got
    Ed25519PublicKey.from_public_bytes(signer.public_key).verify(got, b"from a forked worker")
    assert backend.keystore.load("worker").sign(b"parent") != b""  # the parent still works


# -- end to end: the command, the service, the verifier ---------------------------------


def test_init_scenario_reveal_and_verify_with_keys_in_the_token(hsm: Hsm, db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = ok(run(home, hsm, "init", "--log-id", "test.local/hsm", db=db_url))
    assert "initialised log test.local/hsm" in out
    loc = tmp_path / "loc.json"
    loc.write_text(json.dumps(LOCATION))
    steps = [
        ("owner", "add", "FR", "--name", "France", "--country", "FR", "--as", "admin"),
        ("site", "add", "SITE-A", "--classification", "SECRET", "--custodian", "FR",
         "--location-file", str(loc), "--as", "admin"),
        ("keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator",
         "--sites", "SITE-A", "--owners", "FR", "--clearance", "SECRET"),
    ]
    for step in steps:
        ok(run(home, hsm, *step, db=db_url))

    # The service, in this process, on the same token: its token-issuer key is made there.
    settings = ApiSettings(
        ledger=settings_for(hsm, home, db=db_url), token=TokenSettings(), unsafe_demo_login=False
    )
    svc = build_services(settings, passphrase=_no_passphrase)
    client = TestClient(create_app(svc), raise_server_exceptions=False)
    assert svc.issuer is not None
    bearer = {"Authorization": f"Bearer {svc.issuer.issue('olga')}"}
    resp = client.post("/sites/SITE-A/reveal", json={"purpose": "annual inspection"}, headers=bearer)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    opened = Location(**body["location"])
    assert opened.name == LOCATION["name"]
    verify_opening(commitment=body["commitment"], salt=base64.b64decode(body["salt"]), location=location_bytes(opened))
    svc.ledger.engine.dispose()
    svc.reader.dispose()

    verified = ok(run(home, hsm, "verify", "--trust", str(home / "log.pub"), db=db_url))
    assert verified.startswith("OK size ")

    labels = {o["label"] for o in token_objects(hsm) if o["class"] != ObjectClass.PUBLIC_KEY}
    assert labels == {
        LABEL_PREFIX + n for n in ("log", "admin", "olga", TOKEN_KEY_NAME)
    } | {AES_LABEL, HMAC_LABEL}
    # No private key, sealing key or keystore directory under RESERVE_HOME: only the
    # database and the public log key.
    files = sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file())
    assert not (home / "keys").exists(), files
    assert not [f for f in files if f.endswith((".key", ".pem")) or "key" in f.split("/")[0]], files
    assert set(files) <= {"log.pub"}, files  # the database is elsewhere (db_url)


def test_wrong_pin_is_one_line_exit_2_and_never_echoed(hsm: Hsm, tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(run(home, hsm, "init", "--log-id", "test.local/hsm-pin"))
    wrong = "9876-not-the-pin"
    proc = run(home, hsm, "keys", "generate", "mallory", pin=wrong)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: the PKCS#11 token refused the PIN (RESERVE_PKCS11_PIN)"
    ]
    assert wrong not in proc.stderr + proc.stdout and hsm.pin not in proc.stderr + proc.stdout
    missing = run(home, hsm, "keys", "generate", "mallory", pin="")
    assert missing.returncode == 2 and "needs RESERVE_PKCS11_PIN" in missing.stderr


def test_log_key_rotation_makes_the_new_key_in_the_token(hsm: Hsm, tmp_path: Path) -> None:
    from ledger.service import Ledger
    from ledger.store.audit import verify_database
    from ledger.store.db import make_engine

    backend = open_keystore(settings_for(hsm, tmp_path), passphrase=_no_passphrase)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    led = Ledger(make_engine(url), backend.keystore, backend.sealer)
    led.init(log_id="test.local/hsm-rotate", admin="admin")
    genesis_key = led.log_signer().public_key
    led.rotate_log_key()
    assert backend.keystore.names() == ["admin", "log", "log-2"]
    assert led.log_signer().public_key == backend.keystore.public_key("log-2") != genesis_key
    report = verify_database(make_engine(url, readonly=True), trusted_log_key=genesis_key)
    assert report.log_keys == [genesis_key.hex(), backend.keystore.public_key("log-2").hex()]
    assert not [p for p in tmp_path.rglob("*") if p.suffix in (".key", ".pem")]
