"""Custodial keys are unwrapped once per process, however many requests ask at once
(issue #11: a load is a scrypt of ~0.4 s and 128 MiB)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from keys import FileKeystore
from keys.signer import Ed25519Signer
from ledger.errors import KeystoreError
from ledger.service import Ledger


class SlowKeystore:
    """A keystore whose loads take a while and are counted."""

    def __init__(self, names: list[str], delay: float = 0.2):
        self._keys = {n: Ed25519Signer.generate() for n in names}
        self.loads: Counter[str] = Counter()
        self._delay = delay
        self._lock = threading.Lock()

    def load(self, name: str) -> Ed25519Signer:
        with self._lock:
            self.loads[name] += 1
        time.sleep(self._delay)
        return self._keys[name]

    def names(self) -> list[str]:
        return list(self._keys)

    def public_key(self, name: str) -> bytes:
        return self._keys[name].public_key

    def generate(self, name: str) -> Ed25519Signer:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        return name in self._keys


def _ask_at_once(led: Ledger, users: list[str]) -> list[object]:
    start = threading.Barrier(len(users))
    got: list[object] = [None] * len(users)

    def ask(i: int) -> None:
        start.wait()
        try:
            got[i] = led.signer_for(users[i])
        except Exception as exc:
            got[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return got


def test_concurrent_first_requests_of_a_user_load_the_key_once() -> None:
    store = SlowKeystore(["olga", "omar"])
    led = Ledger(engine=None, keystore=store)  # type: ignore[arg-type]  # no database needed
    got = _ask_at_once(led, ["olga"] * 20 + ["omar"] * 20)
    assert store.loads == Counter({"olga": 1, "omar": 1})
    assert all(g is got[0] for g in got[:20])
    assert all(g is got[20] for g in got[20:])
    assert got[0] is not got[20]
    led.signer_for("olga")
    assert store.loads["olga"] == 1  # cached afterwards


def test_users_load_in_parallel_not_one_after_another() -> None:
    """The lock is per user: ten users' first requests take about one load, not ten."""
    users = [f"op{i}" for i in range(10)]
    store = SlowKeystore(users, delay=0.3)
    led = Ledger(engine=None, keystore=store)  # type: ignore[arg-type]
    t0 = time.monotonic()
    _ask_at_once(led, users)
    assert time.monotonic() - t0 < 2.0  # serialised it would take 3 s
    assert store.loads == Counter(dict.fromkeys(users, 1))


def test_a_missing_key_is_refused_to_every_caller_and_not_cached() -> None:
    store = SlowKeystore(["olga"])
    led = Ledger(engine=None, keystore=store)  # type: ignore[arg-type]
    got = _ask_at_once(led, ["nobody"] * 5)
    assert all(isinstance(g, KeystoreError) for g in got)
    assert store.loads == Counter()


def test_file_keystore_loads_once_under_concurrency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real keystore behind the same lock: every caller gets the key that was
    generated, and the file is decrypted once."""
    ks = FileKeystore(tmp_path / "keys", passphrase=b"pw", unsafe_kdf_cost=10)
    made = ks.generate("olga")
    decrypts = Counter[str]()
    real = FileKeystore.load

    def counting(self: FileKeystore, name: str) -> Ed25519Signer:
        decrypts[name] += 1
        return real(self, name)

    monkeypatch.setattr(FileKeystore, "load", counting)
    led = Ledger(engine=None, keystore=ks)  # type: ignore[arg-type]
    got = _ask_at_once(led, ["olga"] * 8)
    assert decrypts["olga"] == 1
    assert {g.public_key for g in got} == {made.public_key}  # type: ignore[attr-defined]
