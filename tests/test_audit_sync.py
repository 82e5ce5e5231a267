"""Incremental audit (issue #10): growth, rollback, fork, restart, corrupted state, and
the split view that a witness quorum defeats."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keys import FileKeystore
from keys.signer import Ed25519Signer
from ledger.audit_state import load
from ledger.audit_sync import PROGRESS_FILE, STATE_FILE, sync
from ledger.checkpoint import parse_note_verifier_key
from ledger.cosignature import Cosigner
from ledger.errors import VerificationFailed
from ledger.owner_scope import make_commitment
from ledger.service import Ledger
from ledger.store import owner_scope
from ledger.store.audit import verify_database
from ledger.store.audit_source import DbAuditSource
from ledger.store.db import make_engine
from ledger.store.witness_feed import feed_witnesses
from ledger.store.witnesses import add_witness, cosigned_note
from ledger.witness import FileWitnessStore, Witness, encode_add_checkpoint
from ledger.witnessing import WitnessAnswer
from tests.conftest import PASSPHRASE, make_ledger, with_operator
from tests.test_owner_scope import keyring


def grow(led: Ledger, n: int, account: str = "A") -> None:
    for i in range(n):
        led.act("olga", "test.movement", account=account, delta=i + 1)


def open_copy(src: Path, dst: Path, keydir: Path) -> Ledger:
    """A copy of the log as it is now (SQLite's backup API: the WAL included)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    return Ledger(make_engine(f"sqlite:///{dst}"), FileKeystore(keydir, passphrase=PASSPHRASE))


@pytest.fixture
def base(tmp_path: Path) -> tuple[Ledger, Path]:
    db = tmp_path / "a.db"
    led = with_operator(make_ledger(f"sqlite:///{db}", tmp_path / "keys"))
    grow(led, 5)
    return led, db


def log_key(led: Ledger) -> bytes:
    return led.log_signer().public_key


def test_growth_verifies_only_what_is_new(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    state = tmp_path / "audit"
    r1 = sync(state, DbAuditSource(led.engine), trusted_log_key=log_key(led))
    assert (r1.old_size, r1.size) == (0, r1.verified)
    grow(led, 7)
    r2 = sync(state, DbAuditSource(led.engine), trusted_log_key=None, save_every=3)
    assert r2.old_size == r1.size and r2.verified == r2.size - r1.size == 7
    full = verify_database(led.engine, trusted_log_key=log_key(led), progress=False)
    assert (r2.size, r2.root) == (full.size, full.root)
    saved = load(state / STATE_FILE)
    assert saved is not None and full.snapshot is not None
    assert saved.snapshot.state.parts() == full.snapshot.state.parts()  # resumed == replayed
    assert saved.snapshot.tree.frontier == full.snapshot.tree.frontier
    again = sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    assert again.verified == 0 and again.size == full.size
    assert not (state / PROGRESS_FILE).exists()


def test_restored_state_equals_the_replay(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    sync(tmp_path / "audit", DbAuditSource(led.engine), trusted_log_key=None)
    saved = load(tmp_path / "audit" / STATE_FILE)
    assert saved is not None
    full = verify_database(led.engine, trusted_log_key=None, progress=False)
    assert full.snapshot is not None
    for part_saved, part_full in zip(saved.snapshot.state.parts(), full.snapshot.state.parts(), strict=True):
        assert part_saved == part_full


def test_rollback_is_refused_and_state_untouched(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, db = base
    old = open_copy(db, tmp_path / "old.db", tmp_path / "keys")  # the log as it was
    grow(led, 4)
    state = tmp_path / "audit"
    sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    before = (state / STATE_FILE).read_bytes()
    with pytest.raises(VerificationFailed, match="rolled back"):
        sync(state, DbAuditSource(old.engine), trusted_log_key=None)
    assert (state / STATE_FILE).read_bytes() == before


def test_fork_is_refused_and_state_untouched(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, db = base
    state = tmp_path / "audit"
    sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    fork = open_copy(db, tmp_path / "fork.db", tmp_path / "keys")
    grow(led, 3, account="B")
    sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    before = (state / STATE_FILE).read_bytes()
    grow(fork, 6, account="C")  # same start, another continuation, longer
    with pytest.raises(VerificationFailed, match="rewritten"):
        sync(state, DbAuditSource(fork.engine), trusted_log_key=None)
    assert (state / STATE_FILE).read_bytes() == before
    grow(led, 3, account="B")  # same size as the fork, other root
    with pytest.raises(VerificationFailed, match="rewritten"):
        sync(state, DbAuditSource(fork.engine), trusted_log_key=None)


class Flaky(DbAuditSource):
    """Dies after ``limit`` leaves, like a dropped connection or a killed process."""

    def __init__(self, engine: object, limit: int):
        super().__init__(engine)  # type: ignore[arg-type]
        self.limit = limit
        self.starts: list[int] = []

    def leaves(self, start: int, end: int) -> Iterator[bytes]:
        self.starts.append(start)
        for n, line in enumerate(super().leaves(start, end)):
            if n == self.limit:
                raise ConnectionError("connection reset")
            yield line


def test_restart_mid_sync_resumes(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    state = tmp_path / "audit"
    sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    size0 = load(state / STATE_FILE).snapshot.tree.size  # type: ignore[union-attr]
    grow(led, 10)
    flaky = Flaky(led.engine, limit=7)
    with pytest.raises(ConnectionError):
        sync(state, flaky, trusted_log_key=None, save_every=3)
    assert load(state / STATE_FILE).snapshot.tree.size == size0  # type: ignore[union-attr]
    progress = load(state / PROGRESS_FILE)
    assert progress is not None and progress.snapshot.tree.size == size0 + 6
    grow(led, 2)  # the log moves on meanwhile
    resumed = Flaky(led.engine, limit=10**9)
    r = sync(state, resumed, trusted_log_key=None, save_every=3)
    assert r.resumed and resumed.starts[0] == size0 + 6  # nothing fetched twice
    full = verify_database(led.engine, trusted_log_key=None, progress=False)
    assert (r.size, r.root) == (full.size, full.root)
    assert not (state / PROGRESS_FILE).exists()


def test_corrupted_state_is_refused_clearly(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    state = tmp_path / "audit"
    sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    data = bytearray((state / STATE_FILE).read_bytes())
    i = data.index(b'"prev_hash":"') + 14
    data[i] = ord("0") if data[i] != ord("0") else ord("1")
    (state / STATE_FILE).write_bytes(bytes(data))
    grow(led, 1)
    with pytest.raises(VerificationFailed, match="unusable: its checksum does not match"):
        sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    (state / STATE_FILE).write_bytes(b"garbage\n")
    with pytest.raises(VerificationFailed, match="not an audit state file"):
        sync(state, DbAuditSource(led.engine), trusted_log_key=None)


def test_a_tampered_new_entry_is_refused(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    state = tmp_path / "audit"
    sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    before = (state / STATE_FILE).read_bytes()
    grow(led, 3)

    class Tampered(DbAuditSource):
        def leaves(self, start: int, end: int) -> Iterator[bytes]:
            for line in super().leaves(start, end):
                yield line.replace(b'"delta":2', b'"delta":9')

    with pytest.raises(VerificationFailed):
        sync(state, Tampered(led.engine), trusted_log_key=None)
    assert (state / STATE_FILE).read_bytes() == before


# -- witnesses: the log feeds them; a quorum defeats a split view ----------------------


class DirectTransport:
    """Hands the add-checkpoint body to in-process witnesses by URL (no sockets)."""

    def __init__(self, witnesses: dict[str, Witness]):
        self.witnesses = witnesses

    def add_checkpoint(self, url: str, body: bytes) -> WitnessAnswer:
        from ledger.witness import OldSizeMismatch, WitnessError

        if url not in self.witnesses:
            raise ConnectionError("unreachable")
        try:
            return WitnessAnswer(200, "text/plain", self.witnesses[url].add_checkpoint(body).encode())
        except OldSizeMismatch as exc:
            return WitnessAnswer(409, "text/x.tlog.size", f"{exc.known_size}\n".encode())
        except WitnessError as exc:
            return WitnessAnswer(exc.status, "text/plain", b"no\n")


def witnesses_for(led: Ledger, tmp_path: Path, n: int) -> tuple[dict[str, Witness], list[Cosigner]]:
    from ledger.checkpoint import note_verifier_key

    info = led.log_info() if hasattr(led, "log_info") else None
    with led.engine.connect() as conn:
        from ledger.store.projections import read_log_info

        info = read_log_info(conn)
    assert info is not None
    origin, key = parse_note_verifier_key(note_verifier_key(key_name=info.log_id, public_key=bytes.fromhex(info.log_key)))
    ws: dict[str, Witness] = {}
    cs: list[Cosigner] = []
    for i in range(n):
        signer = Ed25519Signer.generate()
        name = f"w{i}.example"
        ws[f"http://{name}"] = Witness(
            name=name, signer=signer, logs={origin: [key]}, store=FileWitnessStore(tmp_path / f"{name}.json")
        )
        cs.append(Cosigner(name=name, public_key=signer.public_key))
    return ws, cs


def register(led: Ledger, ws: dict[str, Witness], cs: list[Cosigner]) -> None:
    for url, c in zip(ws, cs, strict=True):
        add_witness(led.engine, name=c.name, url=url, vkey=c.vkey)


def test_feeder_collects_cosignatures_and_a_lagging_witness_catches_up(
    base: tuple[Ledger, Path], tmp_path: Path
) -> None:
    led, _ = base
    ws, cs = witnesses_for(led, tmp_path, 2)
    transport = DirectTransport(ws)
    # w1 saw this log's checkpoint before we registered it (we have no record of that):
    # the feeder starts from 0, gets 409 with w1's size, and proves from there.
    with led.engine.connect() as conn:
        first = cosigned_note(conn)
    ws["http://w1.example"].add_checkpoint(encode_add_checkpoint(old_size=0, proof=[], note=first))
    grow(led, 1)
    register(led, ws, cs)
    assert feed_witnesses(led.engine, transport) == {c.name: "cosigned" for c in cs}
    grow(led, 3)
    # w1 is unreachable for a while: it lags
    only_w0 = DirectTransport({k: v for k, v in ws.items() if "w0" in k})
    out = feed_witnesses(led.engine, only_w0)
    assert out[cs[0].name] == "cosigned" and out[cs[1].name] != "cosigned"
    grow(led, 2)
    assert feed_witnesses(led.engine, transport) == {c.name: "cosigned" for c in cs}
    with led.engine.connect() as conn:
        note = cosigned_note(conn)
    from ledger.cosignature import valid_cosigners

    assert valid_cosigners(note, cs) == cs
    state = tmp_path / "audit"
    r = sync(state, DbAuditSource(led.engine), trusted_log_key=None, witnesses=cs, quorum=2)
    assert r.size == int(note.split("\n")[1])
    grow(led, 1)  # a checkpoint the witnesses have not seen yet
    with pytest.raises(VerificationFailed, match=r"has 0 valid cosignature\(s\).*2 required"):
        sync(state, DbAuditSource(led.engine), trusted_log_key=None, witnesses=cs, quorum=2)
    # w0's old cosignature on another size does not count either
    assert feed_witnesses(led.engine, transport) == {c.name: "cosigned" for c in cs}
    sync(state, DbAuditSource(led.engine), trusted_log_key=None, witnesses=cs, quorum=2)


def test_split_view_is_caught_by_the_witness_quorum(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    """The log shows two histories of the same size to two auditors. The witnesses see
    the log's submissions of both, cosign only the first, and the auditor shown the
    other one refuses it."""
    led, db = base
    ws, cs = witnesses_for(led, tmp_path, 2)
    register(led, ws, cs)
    transport = DirectTransport(ws)
    feed_witnesses(led.engine, transport)
    view_b = open_copy(db, tmp_path / "b.db", tmp_path / "keys")
    grow(led, 4, account="HONEST")
    grow(view_b, 4, account="FORGED")  # same size, other entries
    with led.engine.connect() as c1, view_b.engine.connect() as c2:
        na, nb = cosigned_note(c1), cosigned_note(c2)
    assert na.split("\n")[1] == nb.split("\n")[1] and na.split("\n")[2] != nb.split("\n")[2]
    out_a = feed_witnesses(led.engine, transport)
    out_b = feed_witnesses(view_b.engine, transport)
    assert set(out_a.values()) == {"cosigned"}
    assert "cosigned" not in out_b.values()  # the witnesses never cosign both
    results = {}
    for name, src in (("alice", led), ("bob", view_b)):
        try:
            sync(tmp_path / name, DbAuditSource(src.engine), trusted_log_key=log_key(led), witnesses=cs, quorum=2)
            results[name] = "ok"
        except VerificationFailed as exc:
            results[name] = str(exc)
    assert results["alice"] == "ok"
    assert "0 valid cosignature(s) from the given witnesses; 2 required" in results["bob"]
    # without a quorum the split view would have gone unnoticed: that is the point
    sync(tmp_path / "carol", DbAuditSource(view_b.engine), trusted_log_key=log_key(led))


def test_a_forged_note_of_the_same_size_is_refused(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    state = tmp_path / "audit"
    sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    before = (state / STATE_FILE).read_bytes()

    class Forged(DbAuditSource):
        def checkpoint(self) -> str:
            note = super().checkpoint()
            text, _, sig = note.rpartition("\n\n")
            return text.replace("time 20", "time 19") + "\n\n" + sig

    with pytest.raises(VerificationFailed, match="signature"):
        sync(state, Forged(led.engine), trusted_log_key=None)
    assert (state / STATE_FILE).read_bytes() == before


# -- owner-scoped logs (issue #14): commitments fetched with the leaves ----------------


def _switch_to_v2(led: Ledger) -> None:
    """Enable owner scope mid-way and register two owners (each v2 leaf gets a C)."""
    owner_scope.enable(led.engine, keyring=keyring(led))
    led.act("admin", "owner.registered", code="JP-RESERVE", name="JOGMEC", country="JP")
    led.act("admin", "owner.registered", code="FR-RESERVE", name="Ministere", country="FR")
    grow(led, 3)


def test_growth_across_the_v1_to_v2_switch_with_owner_keys(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    state = tmp_path / "audit"
    r1 = sync(state, DbAuditSource(led.engine), trusted_log_key=log_key(led))
    _switch_to_v2(led)
    with led.engine.connect() as conn:
        secrets = {o: [e.secret for e in es] for o, es in owner_scope.read_secrets(conn, keyring=keyring(led)).items()}
        assert owner_scope.read_commitments(conn, start=0, end=10_000)  # v2 leaves exist
    r2 = sync(state, DbAuditSource(led.engine), trusted_log_key=None, save_every=2, owner_secrets=secrets)
    full = verify_database(led.engine, trusted_log_key=log_key(led), progress=False, keyring=keyring(led))
    assert (r2.old_size, r2.size, r2.root) == (r1.size, full.size, full.root)
    saved = load(state / STATE_FILE)
    assert saved is not None and saved.snapshot.leaf_version == 2
    # Missing one owner's key file: the check cannot be made, and says so.
    grow(led, 1)
    with pytest.raises(VerificationFailed, match="no scoped-audit secret for owner FR-RESERVE"):
        sync(state, DbAuditSource(led.engine), trusted_log_key=None, owner_secrets={"JP-RESERVE": secrets["JP-RESERVE"]})
    assert sync(state, DbAuditSource(led.engine), trusted_log_key=None).verified == 1


class NoCommitments(DbAuditSource):
    """A log (or an old server) that serves the leaves without their commitments."""

    def commitments(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        return iter(())


def test_leaves_without_their_commitments_are_refused(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    state = tmp_path / "audit"
    _switch_to_v2(led)
    sync(state, DbAuditSource(led.engine), trusted_log_key=None)
    size = verify_database(led.engine, trusted_log_key=None, progress=False).size
    grow(led, 2)
    before = (state / STATE_FILE).read_bytes()
    # The ratchet survives between syncs: a v1 leaf after a v2 one is named at its seq.
    with pytest.raises(VerificationFailed, match=r"v1 leaf .* after the log's first v2 leaf") as ei:
        sync(state, NoCommitments(led.engine), trusted_log_key=None)
    assert ei.value.seq == size
    assert (state / STATE_FILE).read_bytes() == before


def test_a_wrong_owner_commitment_is_caught_by_a_sync_holding_owner_keys(
    base: tuple[Ledger, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    led, _ = base
    state = tmp_path / "audit"
    _switch_to_v2(led)
    with led.engine.connect() as conn:
        secrets = {o: [e.secret for e in es] for o, es in owner_scope.read_secrets(conn, keyring=keyring(led)).items()}
    sync(state, DbAuditSource(led.engine), trusted_log_key=None, owner_secrets=secrets)
    honest = owner_scope.Committer.commit

    def naming_nobody(self: Any, body: Any, st: Any, *, seq: int, log_id: str) -> bytes | None:
        honest(self, body, st, seq=seq, log_id=log_id)
        return make_commitment([], log_id=log_id, seq=seq)

    monkeypatch.setattr(owner_scope.Committer, "commit", naming_nobody)
    seq = led.act("olga", "test.movement", account="A", delta=1).first_seq
    monkeypatch.setattr(owner_scope.Committer, "commit", honest)
    # Hashes and checkpoint agree with the lie: without the keys the sync passes ...
    assert sync(tmp_path / "blind", DbAuditSource(led.engine), trusted_log_key=None).size == seq + 1
    # ... with every owner's key file it is caught, naming the seq.
    with pytest.raises(VerificationFailed, match="owner commitment is wrong") as ei:
        sync(state, DbAuditSource(led.engine), trusted_log_key=None, owner_secrets=secrets)
    assert ei.value.seq == seq



class Doubled(DbAuditSource):
    """Serves every commitment twice."""

    def commitments(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        for item in super().commitments(start, end):
            yield item
            yield item


class Reversed(DbAuditSource):
    def commitments(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        return iter(sorted(super().commitments(start, end), reverse=True))


def test_commitments_served_out_of_order_are_refused(base: tuple[Ledger, Path], tmp_path: Path) -> None:
    led, _ = base
    _switch_to_v2(led)
    with pytest.raises(VerificationFailed, match=r"owner commitment for seq .* out of order"):
        sync(tmp_path / "audit", Doubled(led.engine), trusted_log_key=None)
    # Reordered: the first v2 leaf goes without its commitment and its hash then differs.
    with pytest.raises(VerificationFailed):
        sync(tmp_path / "audit", Reversed(led.engine), trusted_log_key=None)
    assert not (tmp_path / "audit" / STATE_FILE).exists()


def test_sync_of_a_history_with_policies_and_owners(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    """The three-owner history of tests/test_owner_scope.py (policies, releases, a shared
    site, v2 leaves): the saved state holds policy versions, and a later sync continues
    from it to the full verify's root, checking every owner commitment."""
    from tests.test_owner_scope import JP, LOT_JP, SITE_JP1, _receipt, build

    led = sqlite_ledger
    build(led)
    kr = keyring(led)
    with led.engine.connect() as conn:
        secrets = {o: [e.secret for e in es] for o, es in owner_scope.read_secrets(conn, keyring=kr).items()}
    state = tmp_path / "audit"
    sync(state, DbAuditSource(led.engine), trusted_log_key=log_key(led), owner_secrets=secrets)
    _receipt(led, "olga", SITE_JP1, JP, LOT_JP, 1_000, "Lynas Rare Earths", "PO-JP-S")
    r = sync(state, DbAuditSource(led.engine), trusted_log_key=None, owner_secrets=secrets)
    full = verify_database(led.engine, trusted_log_key=log_key(led), progress=False, keyring=kr)
    assert (r.verified, r.size, r.root) == (1, full.size, full.root)
