"""Tampering with a stored history is caught, and the verifier names the first bad seq.

Every test builds the same history on SQLite and on PostgreSQL (genesis, ``olga``'s key,
eight movements appended one by one, so ten entries and ten checkpoints), then rewrites
it behind the application's back (triggers bypassed, see :mod:`tests.tamper_helpers`)
the way an attacker with database rights would, keeping everything consistent that
does not need a private key. :func:`verify_database` must refuse with the right ``seq``
and say what is wrong. The second half does the same to an export bundle on disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from keys import Ed25519Signer
from ledger.bundle import CHECKPOINTS, ENTRIES, PROJECTIONS, Bundle
from ledger.canonical import canonical, parse_json
from ledger.entries import make_leaf
from ledger.errors import VerificationFailed
from ledger.merkle import leaf_hash
from ledger.service import Ledger
from ledger.store.audit import export_bundle, verify_database
from ledger.store.schema import checkpoints, entries, log_state, test_balances, tree_nodes
from ledger.verify import Report, verify_history
from tests.tamper_helpers import (
    ACCOUNT,
    DELTAS,
    FIRST_MOVE,
    OPERATOR,
    SIZE,
    build_history,
    checkpoint_row,
    entry_row,
    flip_sig_byte,
    log_public_key,
    other_root,
    read_leaf,
    replace_note_root,
    resign,
    swap_entries,
    tampering,
    trigger_names,
    write_leaf,
)

K = FIRST_MOVE + 3  # seq 7: a movement in the middle (delta 7), covered by checkpoint 8


@pytest.fixture
def led(ledger: Ledger) -> Ledger:
    build_history(ledger)
    return ledger


def verify(led: Ledger, *, jobs: int = 1) -> Report:
    return verify_database(led.engine, trusted_log_key=log_public_key(led), jobs=jobs)


def refused(led: Ledger, *, jobs: int = 1) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as ei:
        verify(led, jobs=jobs)
    return ei.value


def assert_names(exc: VerificationFailed, seq: int | None, message: str) -> None:
    """The refusal names ``seq`` and says ``message`` (exactly, or as a prefix if it
    ends with an ellipsis)."""
    assert exc.seq == seq, f"expected seq {seq}, got {exc.seq}: {exc.public_message}"
    if message.endswith("..."):
        assert exc.public_message.startswith(message[:-3]), exc.public_message
    else:
        assert exc.public_message == message
    if seq is not None:
        assert str(exc).startswith(f"seq {seq}: ")


# -- a clean history -------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_clean_history_verifies(led: Ledger, jobs: int) -> None:
    report = verify(led, jobs=jobs)
    assert report.size == SIZE
    assert report.checkpoints == SIZE  # one per append
    assert report.log_id == "test.local/ledger"
    assert report.log_keys == [log_public_key(led).hex()]
    with led.engine.connect() as conn:
        assert report.root == bytes(checkpoint_row(conn, SIZE).root)
        assert conn.execute(select(test_balances.c.balance)).scalar_one() == sum(DELTAS)


def test_tamper_helper_leaves_the_triggers_in_place(led: Ledger) -> None:
    before = trigger_names(led.engine)
    with tampering(led.engine):
        pass
    assert trigger_names(led.engine) == before
    assert verify(led).size == SIZE


def test_a_different_trusted_key_is_refused(led: Ledger) -> None:
    with pytest.raises(VerificationFailed) as ei:
        verify_database(led.engine, trusted_log_key=Ed25519Signer.generate().public_key)
    assert_names(
        ei.value,
        0,
        "the trusted log key is not this log's key: the history is not the one you trust",
    )


# -- (a) a changed quantity ------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_changed_quantity_is_caught_by_the_signature(led: Ledger, jobs: int) -> None:
    with tampering(led.engine) as conn:
        leaf = read_leaf(conn, K)
        assert leaf["entry"]["delta"] == DELTAS[K - FIRST_MOVE]
        leaf["entry"]["delta"] = 700
        line = write_leaf(conn, K, leaf)  # leaf_hash column kept consistent
        assert bytes(entry_row(conn, K).leaf_hash) == leaf_hash(line)
    assert_names(refused(led, jobs=jobs), K, "signature does not verify over the entry (sigs[0])")


def test_changed_quantity_with_the_old_leaf_hash_is_caught_by_the_column(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        leaf = read_leaf(conn, K)
        leaf["entry"]["delta"] = 700
        write_leaf(conn, K, leaf, update_hash=False)
    assert_names(refused(led), K, "stored column 'leaf_hash' does not match the signed entry")


def test_changed_quantity_rechained_is_still_caught_by_the_signature(led: Ledger) -> None:
    """Even with every later prev_hash and leaf_hash recomputed (a perfect chain), the
    author's signature names the forged entry."""
    with tampering(led.engine) as conn:
        prev = None
        for seq in range(K, SIZE):
            leaf = read_leaf(conn, seq)
            if seq == K:
                leaf["entry"]["delta"] = 700
            else:
                leaf["prev_hash"] = prev
            prev = leaf_hash(write_leaf(conn, seq, leaf)).hex()
        conn.execute(update(log_state).values(head_hash=prev))
    assert_names(refused(led), K, "signature does not verify over the entry (sigs[0])")


@pytest.mark.parametrize(
    ("column", "value"),
    [("author", "mallory"), ("kind", "key.revoked"), ("entry_id", "f" * 32)],
)
def test_changed_index_column_is_caught(led: Ledger, column: str, value: str) -> None:
    with tampering(led.engine) as conn:
        conn.execute(update(entries).where(entries.c.seq == K).values({column: value}))
    assert_names(refused(led), K, f"stored column '{column}' does not match the signed entry")


# -- (b) a changed signature -----------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "index"),
    [(K, 0), (0, 0), (0, 1), (1, 0), (SIZE - 1, 0)],
    ids=["movement", "genesis-admin", "genesis-log-key", "key-registration", "last"],
)
def test_changed_signature_is_caught(led: Ledger, seq: int, index: int) -> None:
    with tampering(led.engine) as conn:
        leaf = read_leaf(conn, seq)
        leaf["sigs"][index]["sig"] = flip_sig_byte(leaf["sigs"][index]["sig"])
        write_leaf(conn, seq, leaf)
    assert_names(refused(led), seq, f"signature does not verify over the entry (sigs[{index}])")


def test_changed_signature_is_caught_by_parallel_workers(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        leaf = read_leaf(conn, K)
        leaf["sigs"][0]["sig"] = flip_sig_byte(leaf["sigs"][0]["sig"], index=63)
        write_leaf(conn, K, leaf)
    assert_names(refused(led, jobs=2), K, "signature does not verify over the entry (sigs[0])")


# -- (c) a deleted entry ---------------------------------------------------------------


def test_deleted_entry_in_the_middle_is_named(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        conn.execute(delete(entries).where(entries.c.seq == K))
    assert_names(
        refused(led),
        K,
        f"entry out of place: expected seq {K}, found seq {K + 1} (deleted or reordered)",
    )


def test_deleted_entry_renumbered_is_caught_by_the_chain(led: Ledger) -> None:
    """The attacker closes the gap: later entries are moved down and their leaves'
    ``seq`` rewritten. The first moved entry's prev_hash no longer matches."""
    with tampering(led.engine) as conn:
        conn.execute(delete(entries).where(entries.c.seq == K))
        for seq in range(K + 1, SIZE):
            leaf = read_leaf(conn, seq)
            leaf["seq"] = seq - 1
            line = canonical(leaf)
            conn.execute(
                update(entries)
                .where(entries.c.seq == seq)
                .values(seq=seq - 1, leaf=line, leaf_hash=leaf_hash(line))
            )
    assert_names(
        refused(led), K, "hash chain broken: prev_hash is not the hash of the previous entry"
    )


# -- (d) two entries swapped -----------------------------------------------------------


def test_swapped_pair_is_named(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        swap_entries(conn, K)
        assert read_leaf(conn, K)["seq"] == K + 1
    assert_names(
        refused(led),
        K,
        f"entry out of place: expected seq {K}, found seq {K + 1} (deleted or reordered)",
    )


def test_swapped_bodies_with_a_rebuilt_chain_are_caught_by_the_checkpoint(led: Ledger) -> None:
    """The strongest reordering without the log key: bodies of K and K+1 exchanged, each
    leaf keeps its place (seq, recorded_at), the chain and all columns are recomputed.
    Every signature is genuine; only the signed checkpoint of size K+1 can object."""
    with tampering(led.engine) as conn:
        leaves = [read_leaf(conn, s) for s in range(SIZE)]
        a, b = leaves[K], leaves[K + 1]
        (a["entry"], a["sigs"]), (b["entry"], b["sigs"]) = (
            (b["entry"], b["sigs"]),
            (a["entry"], a["sigs"]),
        )
        prev = leaf_hash(canonical(leaves[K - 1])).hex()
        for seq in range(K, SIZE):
            leaves[seq]["prev_hash"] = prev
            line = write_leaf(conn, seq, leaves[seq])
            conn.execute(
                update(entries)
                .where(entries.c.seq == seq)
                .values(entry_id=f"tmp{seq:029d}")  # keep entry_id unique while moving
            )
            prev = leaf_hash(line).hex()
        for seq in range(K, SIZE):
            conn.execute(
                update(entries)
                .where(entries.c.seq == seq)
                .values(entry_id=leaves[seq]["entry"]["id"])
            )
        conn.execute(update(log_state).values(head_hash=prev))
    assert_names(refused(led), K, f"checkpoint at size {K + 1}: root does not match the entries")


# -- (e) re-signed with a key that is not registered -----------------------------------


def test_entry_resigned_with_an_unregistered_key_is_named(led: Ledger) -> None:
    stranger = Ed25519Signer.generate()
    with tampering(led.engine) as conn:
        leaf = resign(read_leaf(conn, K), [stranger])
        assert leaf["entry"]["author"] == OPERATOR
        assert leaf["sigs"][0]["pub"] == stranger.public_key.hex()
        write_leaf(conn, K, leaf)
    assert_names(
        refused(led), K, "rule broken: signing key is not registered in this log (sigs[0])"
    )


def test_entry_resigned_with_another_users_key_is_named(led: Ledger) -> None:
    """A registered key, but not the author's: the admin signs as if it were olga."""
    with tampering(led.engine) as conn:
        write_leaf(conn, K, resign(read_leaf(conn, K), [led.keystore.load("admin")]))
    assert_names(
        refused(led),
        K,
        f"rule broken: the first signature must be by the author '{OPERATOR}' (sigs[0])",
    )


def test_entry_resigned_by_its_author_with_changed_content_is_caught(
    led: Ledger,
) -> None:
    """Even the author's own key cannot rewrite history: a re-signed body changes the
    leaf hash, which the checkpoint signed right after it pins (and the next entry's
    prev_hash too)."""
    with tampering(led.engine) as conn:
        leaf = read_leaf(conn, K)
        leaf["entry"]["delta"] = 700
        write_leaf(conn, K, resign(leaf, [led.keystore.load(OPERATOR)]))
    assert_names(refused(led), K, f"checkpoint at size {K + 1}: root does not match the entries")


# -- (f) a truncated tail --------------------------------------------------------------


def test_truncated_tail_names_the_first_missing_seq(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        conn.execute(delete(entries).where(entries.c.seq >= SIZE - 2))
    assert_names(
        refused(led),
        SIZE - 2,
        f"history truncated: a checkpoint covers {SIZE - 1} entries but only {SIZE - 2} are present",
    )


def test_truncated_tail_and_its_checkpoints_names_the_first_missing_seq(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        conn.execute(delete(entries).where(entries.c.seq >= SIZE - 2))
        conn.execute(delete(checkpoints).where(checkpoints.c.size > SIZE - 2))
    exc = refused(led)
    assert exc.seq == SIZE - 2, f"{exc.seq}: {exc.public_message}"
    assert "truncated" in exc.public_message


def test_truncated_tail_checkpoints_and_head_is_caught_by_the_projections(led: Ledger) -> None:
    """A full rollback of the log tables (entries, nodes, checkpoints, head) is
    self-consistent; the projections still hold the newer balance."""
    with tampering(led.engine) as conn:
        prev = entry_row(conn, SIZE - 3)
        conn.execute(delete(entries).where(entries.c.seq >= SIZE - 2))
        conn.execute(delete(checkpoints).where(checkpoints.c.size > SIZE - 2))
        for node in conn.execute(select(tree_nodes.c.level, tree_nodes.c.idx)).all():
            if (node.idx + 1) << node.level > SIZE - 2:  # covers a removed leaf
                conn.execute(
                    delete(tree_nodes).where(
                        tree_nodes.c.level == node.level, tree_nodes.c.idx == node.idx
                    )
                )
        conn.execute(
            update(log_state).values(
                size=SIZE - 2,
                head_hash=bytes(prev.leaf_hash).hex(),
                last_recorded_at=prev.recorded_at,
            )
        )
    assert_names(
        refused(led), None, f"projection 'test_balances' differs from the replay for {ACCOUNT}"
    )


def test_changed_log_head_is_caught(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        conn.execute(update(log_state).values(head_hash="0" * 64))
    assert_names(refused(led), SIZE - 1, "the log head does not match the last entry")


def test_changed_projection_is_caught(led: Ledger) -> None:
    with led.engine.begin() as conn:  # a projection, not guarded by a trigger
        conn.execute(update(test_balances).values(balance=1_000_000))
    assert_names(
        refused(led), None, f"projection 'test_balances' differs from the replay for {ACCOUNT}"
    )


# -- (g) a changed checkpoint ----------------------------------------------------------


@pytest.mark.parametrize("size", [K + 1, SIZE], ids=["middle", "latest"])
@pytest.mark.parametrize("where", ["column-and-note", "note-only"])
def test_changed_checkpoint_root_fails_its_signature(led: Ledger, size: int, where: str) -> None:
    with tampering(led.engine) as conn:
        row = checkpoint_row(conn, size)
        root = bytes(row.root)
        values: dict[str, Any] = {"note": replace_note_root(row.note, root, other_root(root))}
        if where == "column-and-note":
            values["root"] = other_root(root)
        conn.execute(update(checkpoints).where(checkpoints.c.size == size).values(**values))
    exc = refused(led)
    assert_names(
        exc, size - 1, f"checkpoint at size {size}: invalid signature for key test.local/ledger+..."
    )


def test_changed_checkpoint_size_is_caught(led: Ledger) -> None:
    """A checkpoint moved to another size (its note untouched) names another size."""
    with tampering(led.engine) as conn:
        conn.execute(delete(checkpoints).where(checkpoints.c.size == K + 2))
        conn.execute(update(checkpoints).where(checkpoints.c.size == K + 1).values(size=K + 2))
    assert_names(refused(led), K + 1, f"checkpoint at size {K + 2} names another log or size")


def test_changed_checkpoint_root_column_only_is_caught(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        row = checkpoint_row(conn, SIZE)
        conn.execute(
            update(checkpoints)
            .where(checkpoints.c.size == SIZE)
            .values(root=other_root(bytes(row.root)))
        )
    exc = refused(led)
    assert exc.seq == SIZE - 1


def test_changed_tree_node_is_caught(led: Ledger) -> None:
    with tampering(led.engine) as conn:
        conn.execute(
            update(tree_nodes)
            .where(tree_nodes.c.level == 0, tree_nodes.c.idx == K)
            .values(hash=b"\x5a" * 32)
        )
    exc = refused(led)
    assert exc.seq == K


# -- the export bundle -----------------------------------------------------------------


@pytest.fixture
def bundle_dir(led: Ledger, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    size, root = export_bundle(led.engine, out)
    assert size == SIZE
    with led.engine.connect() as conn:
        assert root == bytes(checkpoint_row(conn, SIZE).root)
    return out


def verify_bundle(path: Path, led: Ledger) -> Report:
    b = Bundle(path)
    return verify_history(
        b.rows(), b.checkpoints(), trusted_log_key=log_public_key(led), projections=b.projections()
    )


def bundle_refused(path: Path, led: Ledger) -> VerificationFailed:
    with pytest.raises(VerificationFailed) as ei:
        verify_bundle(path, led)
    return ei.value


def read_lines(path: Path, name: str) -> list[bytes]:
    return (path / name).read_bytes().splitlines()


def write_lines(path: Path, name: str, lines: list[bytes]) -> None:
    (path / name).write_bytes(b"".join(line + b"\n" for line in lines))


def test_clean_bundle_verifies(bundle_dir: Path, led: Ledger) -> None:
    Bundle(bundle_dir).check_files()
    report = verify_bundle(bundle_dir, led)
    assert (report.size, report.checkpoints) == (SIZE, SIZE)
    assert report.root == verify(led).root
    assert len(read_lines(bundle_dir, ENTRIES)) == SIZE


def test_bundle_changed_quantity_is_named(bundle_dir: Path, led: Ledger) -> None:
    lines = read_lines(bundle_dir, ENTRIES)
    leaf = parse_json(lines[K])
    leaf["entry"]["delta"] = 700
    lines[K] = canonical(leaf)
    write_lines(bundle_dir, ENTRIES, lines)
    with pytest.raises(VerificationFailed) as ei:
        Bundle(bundle_dir).check_files()  # the unsigned manifest notices too...
    assert ei.value.public_message == f"bundle file {ENTRIES} does not match the manifest"
    # ... but the signatures are what an auditor relies on.
    assert_names(
        bundle_refused(bundle_dir, led), K, "signature does not verify over the entry (sigs[0])"
    )


def test_bundle_non_canonical_line_is_named(bundle_dir: Path, led: Ledger) -> None:
    lines = read_lines(bundle_dir, ENTRIES)
    lines[K] = json.dumps(json.loads(lines[K]), indent=1).replace("\n", " ").encode()
    write_lines(bundle_dir, ENTRIES, lines)
    assert_names(
        bundle_refused(bundle_dir, led),
        K,
        "malformed entry: leaf is not in RFC 8785 canonical form",
    )


def test_bundle_deleted_line_is_named(bundle_dir: Path, led: Ledger) -> None:
    lines = read_lines(bundle_dir, ENTRIES)
    del lines[K]
    write_lines(bundle_dir, ENTRIES, lines)
    assert_names(
        bundle_refused(bundle_dir, led),
        K,
        f"entry out of place: expected seq {K}, found seq {K + 1} (deleted or reordered)",
    )


def test_bundle_swapped_lines_are_named(bundle_dir: Path, led: Ledger) -> None:
    lines = read_lines(bundle_dir, ENTRIES)
    lines[K], lines[K + 1] = lines[K + 1], lines[K]
    write_lines(bundle_dir, ENTRIES, lines)
    assert_names(
        bundle_refused(bundle_dir, led),
        K,
        f"entry out of place: expected seq {K}, found seq {K + 1} (deleted or reordered)",
    )


def test_bundle_truncated_entries_name_the_first_missing_seq(bundle_dir: Path, led: Ledger) -> None:
    write_lines(bundle_dir, ENTRIES, read_lines(bundle_dir, ENTRIES)[: SIZE - 2])
    assert_names(
        bundle_refused(bundle_dir, led),
        SIZE - 2,
        f"history truncated: a checkpoint covers {SIZE - 1} entries but only {SIZE - 2} are present",
    )


def test_bundle_truncated_mid_line_is_named(bundle_dir: Path, led: Ledger) -> None:
    data = (bundle_dir / ENTRIES).read_bytes()
    cut = sum(len(line) + 1 for line in read_lines(bundle_dir, ENTRIES)[: SIZE - 1]) + 20
    (bundle_dir / ENTRIES).write_bytes(data[:cut])
    assert_names(bundle_refused(bundle_dir, led), SIZE - 1, "malformed entry: not valid JSON: ...")


def test_bundle_truncated_entries_and_checkpoints_are_caught_by_the_projections(
    bundle_dir: Path, led: Ledger
) -> None:
    write_lines(bundle_dir, ENTRIES, read_lines(bundle_dir, ENTRIES)[: SIZE - 2])
    write_lines(bundle_dir, CHECKPOINTS, read_lines(bundle_dir, CHECKPOINTS)[: SIZE - 2])
    assert_names(
        bundle_refused(bundle_dir, led),
        None,
        f"projection 'test_balances' differs from the replay for {ACCOUNT}",
    )


def test_bundle_changed_checkpoint_is_named(bundle_dir: Path, led: Ledger) -> None:
    lines = read_lines(bundle_dir, CHECKPOINTS)
    cp = json.loads(lines[K])
    assert cp["size"] == K + 1
    with led.engine.connect() as conn:
        root = bytes(checkpoint_row(conn, K + 1).root)
    cp["note"] = replace_note_root(cp["note"], root, other_root(root))
    lines[K] = json.dumps(cp).encode()
    write_lines(bundle_dir, CHECKPOINTS, lines)
    assert_names(
        bundle_refused(bundle_dir, led),
        K,
        f"checkpoint at size {K + 1}: invalid signature for key test.local/ledger+...",
    )


def _set_test_balance(d: dict[str, Any], account: str, balance: int) -> None:
    """Set a balance in projections.json, in either layout the exporter has used: a
    ``test_balances`` object, or rows ``{"key", "value"}`` under ``tables``."""
    if "test_balances" in d:
        d["test_balances"][account] = balance
        return
    rows = d["tables"].setdefault("test_balances", [])
    for row in rows:
        if row["key"] == account:
            row["value"] = balance
            return
    rows.append({"key": account, "value": balance})


def _edit_projections(path: Path, edit: Any) -> None:
    d = json.loads((path / PROJECTIONS).read_text())
    edit(d)
    (path / PROJECTIONS).write_text(json.dumps(d, indent=1))


def test_bundle_changed_balance_projection_is_caught(bundle_dir: Path, led: Ledger) -> None:
    _edit_projections(bundle_dir, lambda d: _set_test_balance(d, ACCOUNT, 1_000_000))
    assert_names(
        bundle_refused(bundle_dir, led),
        None,
        f"projection 'test_balances' differs from the replay for {ACCOUNT}",
    )


def test_bundle_extra_balance_projection_is_caught(bundle_dir: Path, led: Ledger) -> None:
    _edit_projections(bundle_dir, lambda d: _set_test_balance(d, "ACC-GHOST", 5))
    assert_names(
        bundle_refused(bundle_dir, led),
        None,
        "projection 'test_balances' differs from the replay for ACC-GHOST",
    )


def test_bundle_changed_key_projection_is_caught(bundle_dir: Path, led: Ledger) -> None:
    olga = led.active_key_of(OPERATOR).key_id

    def grant(d: dict[str, Any]) -> None:
        (rec,) = [k for k in d["keys"] if k["key_id"] == olga]
        rec["roles"] = ["operator", "minister"]

    _edit_projections(bundle_dir, grant)
    assert_names(
        bundle_refused(bundle_dir, led),
        None,
        f"projection 'keys' differs from the replay for key {olga[:16]}...",
    )


def test_bundle_changed_log_key_projection_is_caught(bundle_dir: Path, led: Ledger) -> None:
    _edit_projections(bundle_dir, lambda d: d.update(log_key="ab" * 32))
    assert_names(
        bundle_refused(bundle_dir, led),
        None,
        "projection 'log_state' names another log key than the replay",
    )


def test_bundle_entry_resigned_with_an_unregistered_key_is_named(
    bundle_dir: Path, led: Ledger
) -> None:
    lines = read_lines(bundle_dir, ENTRIES)
    leaf = parse_json(lines[K])
    body = leaf["entry"]
    lines[K] = make_leaf(
        seq=leaf["seq"],
        prev_hash=leaf["prev_hash"],
        recorded_at=leaf["recorded_at"],
        body=body,
        sigs=resign(leaf, [Ed25519Signer.generate()])["sigs"],
    )
    write_lines(bundle_dir, ENTRIES, lines)
    assert_names(
        bundle_refused(bundle_dir, led),
        K,
        "rule broken: signing key is not registered in this log (sigs[0])",
    )
