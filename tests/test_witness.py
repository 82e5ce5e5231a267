"""The witness (c2sp.org/tlog-witness): it cosigns only checkpoints that extend the last
one it cosigned, and its state never rolls back, even under concurrent submissions."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from keys.signer import Ed25519Signer
from ledger.checkpoint import parse_note_verifier_key
from ledger.cosignature import (
    Cosigner,
    check_quorum,
    cosign,
    parse_cosigner_vkey,
    valid_cosigners,
    with_signature_lines,
)
from ledger.errors import InvalidEntry, VerificationFailed
from ledger.witness import (
    BadSubmission,
    Cosigned,
    FileWitnessStore,
    InconsistentCheckpoint,
    LogSignatureRefused,
    OldSizeMismatch,
    UnknownLog,
    Witness,
    encode_add_checkpoint,
)
from tests.witness_helpers import ToyLog


def make_witness(tmp_path: Path, log: ToyLog, name: str = "w.example/1") -> tuple[Witness, Cosigner]:
    signer = Ed25519Signer.generate()
    origin, key = parse_note_verifier_key(log.vkey)
    w = Witness(name=name, signer=signer, logs={origin: [key]}, store=FileWitnessStore(tmp_path / f"{name.replace('/', '_')}.json"))
    return w, Cosigner(name=name, public_key=signer.public_key)


def submit(w: Witness, log: ToyLog, old: int, size: int | None = None, proof: list[bytes] | None = None) -> str:
    size = log.tree.size if size is None else size
    proof = log.proof(old, size) if proof is None else proof
    return w.add_checkpoint(encode_add_checkpoint(old_size=old, proof=proof, note=log.note(size)))


def test_vkey_round_trip_and_type() -> None:
    c = Cosigner(name="w.example/1", public_key=Ed25519Signer.generate().public_key)
    assert parse_cosigner_vkey(c.vkey) == c
    log = ToyLog()
    with pytest.raises(InvalidEntry):
        parse_cosigner_vkey(log.vkey)  # a log's note key (type 0x01) is not a cosigner key


def test_cosigns_growth_and_the_cosignature_verifies(tmp_path: Path) -> None:
    log = ToyLog()
    log.grow(5)
    w, c = make_witness(tmp_path, log)
    line = submit(w, log, 0)
    note = with_signature_lines(log.note(), [line])
    assert valid_cosigners(note, [c]) == [c]
    check_quorum(note, witnesses=[c], quorum=1)
    log.grow(7)
    line2 = submit(w, log, 5)
    assert valid_cosigners(with_signature_lines(log.note(), [line2]), [c]) == [c]
    # the old cosignature does not cover the new checkpoint
    assert valid_cosigners(with_signature_lines(log.note(), [line]), [c]) == []


def test_cosignature_message_is_the_spec_one(tmp_path: Path) -> None:
    signer = Ed25519Signer.generate()
    body = b"o\n3\n" + b"A" * 43 + b"=\n"
    line = cosign(body, signer=signer, name="w", timestamp=1679315147)
    import base64

    raw = base64.b64decode(line.split(" ")[2])
    assert raw[4:12] == (1679315147).to_bytes(8, "big")
    from nacl.signing import VerifyKey

    VerifyKey(signer.public_key).verify(b"cosignature/v1\ntime 1679315147\n" + body, raw[12:])


def test_refuses_a_checkpoint_that_does_not_extend_the_last(tmp_path: Path) -> None:
    log = ToyLog()
    log.grow(8)
    w, _ = make_witness(tmp_path, log)
    submit(w, log, 0)
    fork = ToyLog(signer=log.signer, salt=b"fork")  # same log key, other history
    fork.grow(8)
    with pytest.raises(InconsistentCheckpoint):  # same size, other root
        submit(w, fork, 8, proof=[])
    fork.grow(4)
    with pytest.raises(InconsistentCheckpoint):  # larger, but not an extension
        submit(w, fork, 8, 12, proof=fork.proof(8, 12))
    with pytest.raises(OldSizeMismatch) as exc:  # a rollback to an older size
        submit(w, log, 0, 5)
    assert exc.value.known_size == 8
    assert FileWitnessStore(tmp_path / "w.example_1.json").get(log.origin) == Cosigned(8, log.root(8))


def test_refuses_a_bad_proof(tmp_path: Path) -> None:
    log = ToyLog()
    log.grow(6)
    w, _ = make_witness(tmp_path, log)
    submit(w, log, 0, 3)
    good = log.proof(3, 6)
    with pytest.raises(InconsistentCheckpoint):
        submit(w, log, 3, 6, proof=[bytes(32), *good[1:]])
    with pytest.raises(InconsistentCheckpoint):
        submit(w, log, 3, 6, proof=[])
    with pytest.raises(InconsistentCheckpoint):  # a proof from 0 must be empty
        ToyLog().grow(1)
        w2, _ = make_witness(tmp_path, log, "w.example/2")
        submit(w2, log, 0, 6, proof=good)
    submit(w, log, 3, 6)  # the right proof still works: nothing was recorded meanwhile


def test_refuses_another_origin_and_a_bad_log_signature(tmp_path: Path) -> None:
    log = ToyLog()
    log.grow(3)
    w, _ = make_witness(tmp_path, log)
    other = ToyLog(origin="example.org/other")
    other.grow(3)
    with pytest.raises(UnknownLog):
        submit(w, other, 0)
    impostor = ToyLog(origin=log.origin)  # right origin, someone else's key
    impostor.grow(3)
    with pytest.raises(LogSignatureRefused):
        submit(w, impostor, 0)
    with pytest.raises(BadSubmission):
        w.add_checkpoint(b"old 01\n\n" + log.note().encode())
    with pytest.raises(BadSubmission):
        submit(w, log, 5, 3, proof=[])  # old size above the checkpoint size


def test_concurrent_submissions_leave_one_consistent_state(tmp_path: Path) -> None:
    """Two submissions from the same old size race between check and store: exactly one
    is cosigned, the other gets 409, and the state is the winner's (never a rollback)."""
    log = ToyLog()
    log.grow(20)
    store = FileWitnessStore(tmp_path / "shared.json")
    origin, key = parse_note_verifier_key(log.vkey)
    barrier = threading.Barrier(2)

    class RacingStore:
        def get(self, o: str) -> Cosigned | None:
            got = store.get(o)
            if got is not None and got.size == 4:
                barrier.wait(timeout=5)  # both read size 4 before either writes
            return got

        def compare_and_swap(self, o: str, expected: Cosigned | None, new: Cosigned) -> bool:
            return store.compare_and_swap(o, expected, new)

    signer = Ed25519Signer.generate()
    w = Witness(name="w", signer=signer, logs={origin: [key]}, store=store)
    submit(w, log, 0, 4)
    racer = Witness(name="w", signer=signer, logs={origin: [key]}, store=RacingStore())
    results: dict[int, str] = {}

    def go(size: int) -> None:
        try:
            submit(racer, log, 4, size)
            results[size] = "cosigned"
        except OldSizeMismatch as exc:
            results[size] = f"409 {exc.known_size}"

    threads = [threading.Thread(target=go, args=(n,)) for n in (10, 17)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(results.values()).count("cosigned") == 1
    winner = next(n for n, r in results.items() if r == "cosigned")
    loser = next(n for n, r in results.items() if r != "cosigned")
    assert results[loser] == f"409 {winner}"
    assert store.get(origin) == Cosigned(winner, log.root(winner))


def test_many_threads_never_roll_back(tmp_path: Path) -> None:
    log = ToyLog()
    log.grow(64)
    w, _ = make_witness(tmp_path, log)
    submit(w, log, 0, 1)
    seen: list[int] = []
    lock = threading.Lock()

    def go(size: int) -> None:
        for _ in range(30):
            store = FileWitnessStore(tmp_path / "w.example_1.json")
            cur = store.get(log.origin)
            assert cur is not None
            if cur.size >= size:
                return
            try:
                submit(w, log, cur.size, size)
                with lock:
                    seen.append(size)
                return
            except OldSizeMismatch:
                continue

    threads = [threading.Thread(target=go, args=(n,)) for n in range(2, 64, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = FileWitnessStore(tmp_path / "w.example_1.json").get(log.origin)
    assert final is not None and final.size == max(seen)
    assert final.root == log.root(final.size)


def test_quorum_counts_distinct_valid_witnesses(tmp_path: Path) -> None:
    log = ToyLog()
    log.grow(4)
    w1, c1 = make_witness(tmp_path, log, "w/1")
    _w2, c2 = make_witness(tmp_path, log, "w/2")
    note = with_signature_lines(log.note(), [submit(w1, log, 0)])
    check_quorum(note, witnesses=[c1, c2], quorum=1)
    with pytest.raises(VerificationFailed, match=r"size 4 has 1 valid cosignature.*2 required"):
        check_quorum(note, witnesses=[c1, c2], quorum=2)
    with pytest.raises(VerificationFailed):  # the same witness twice is one witness
        check_quorum(with_signature_lines(note, []), witnesses=[c1, c1, c2], quorum=2)
    forged = note.replace(note.split("\n")[-2][-8:], "AAAAAAA=")
    with pytest.raises(VerificationFailed, match="0 valid"):
        check_quorum(forged, witnesses=[c1], quorum=1)


def test_http_server_speaks_the_protocol(tmp_path: Path) -> None:
    from witness.server import make_server

    log = ToyLog()
    log.grow(5)
    w, c = make_witness(tmp_path, log)
    server = make_server(w, "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/add-checkpoint"
    try:
        def post(body: bytes) -> tuple[int, str, bytes]:
            req = urllib.request.Request(url, data=body, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, r.headers["Content-Type"], r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers["Content-Type"], e.read()

        status, _, body = post(encode_add_checkpoint(old_size=0, proof=[], note=log.note()))
        assert status == 200 and body.startswith("— w.example/1 ".encode())
        assert valid_cosigners(with_signature_lines(log.note(), [body.decode()]), [c]) == [c]
        status, ctype, body = post(encode_add_checkpoint(old_size=0, proof=[], note=log.note()))
        assert (status, ctype, body) == (409, "text/x.tlog.size", b"5\n")
        other = ToyLog(origin="example.org/other")
        other.grow(1)
        assert post(encode_add_checkpoint(old_size=0, proof=[], note=other.note()))[0] == 404
        assert post(b"garbage")[0] == 400
    finally:
        server.shutdown()
        server.server_close()


def _hammer(path: str, seed: int, sizes: list[int], out: object) -> None:
    """Child process: submit checkpoints of ``sizes`` to a witness over a shared state file."""
    import random

    log = ToyLog(signer=_LOG_SIGNER)
    log.grow(max(sizes))
    origin, key = parse_note_verifier_key(log.vkey)
    w = Witness(name="w", signer=Ed25519Signer.generate(), logs={origin: [key]}, store=FileWitnessStore(Path(path)))
    rnd = random.Random(seed)
    got = []
    for size in sizes:
        for _ in range(50):
            cur = FileWitnessStore(Path(path)).get(origin)
            old = cur.size if cur else 0
            if old >= size:
                break
            try:
                submit(w, log, old, size)
                got.append(size)
                break
            except OldSizeMismatch:
                time_sleep(rnd.random() / 1000)
    out.put(got)  # type: ignore[attr-defined]


def time_sleep(s: float) -> None:
    import time

    time.sleep(s)


_LOG_SIGNER = Ed25519Signer.generate()


def test_concurrent_processes_share_one_state_without_rollback(tmp_path: Path) -> None:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    path = str(tmp_path / "state.json")
    plans = [list(range(start, 60, 4)) for start in (1, 2, 3, 4)]
    procs = [ctx.Process(target=_hammer, args=(path, i, plan, q)) for i, plan in enumerate(plans)]
    for p in procs:
        p.start()
    cosigned = [size for _ in procs for size in q.get(timeout=60)]
    for p in procs:
        p.join(timeout=60)
    log = ToyLog(signer=_LOG_SIGNER)
    log.grow(60)
    final = FileWitnessStore(Path(path)).get(log.origin)
    assert final is not None and final.size == max(cosigned) and final.root == log.root(final.size)
    assert len(cosigned) == len(set(cosigned))  # each size cosigned at most once: no rollback and redo
