"""Feeding the verifier from a database, and writing export bundles.

Both read one consistent snapshot (``make_engine(..., readonly=True)``) in chunks by
primary key, so they neither block appenders nor hold the history in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from ledger import bundle
from ledger.checkpoint import note_verifier_key, parse_checkpoint
from ledger.errors import ConfigError, LedgerError, VerificationFailed
from ledger.merkle import CompactRange
from ledger.records import record_to_json
from ledger.state import COMPARED_TABLES, Change, State
from ledger.store import owner_scope, projections
from ledger.store.log import DbNodeReader
from ledger.store.schema import checkpoints, entries, log_state, tree_nodes
from ledger.store.snapshots import SnapshotCheck
from ledger.store.witnesses import cosigned_note
from ledger.verify import LeafRow, Projections, Report, VerifyObserver, verify_history

CHUNK = 2000


def db_rows(conn: Connection, *, upto: int, start: int = 0) -> Iterator[LeafRow]:
    next_seq = start
    while next_seq < upto:
        rows = conn.execute(
            select(entries)
            .where(entries.c.seq >= next_seq, entries.c.seq < upto)
            .order_by(entries.c.seq)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        # v2 leaves' owner commitments (issue #14), for the same range of seqs.
        commits = owner_scope.read_commitments(conn, start=rows[0].seq, end=rows[-1].seq + 1)
        for r in rows:
            cols = {
                "seq": r.seq,
                "entry_id": r.entry_id,
                "kind": r.kind,
                "author": r.author,
                "recorded_at": r.recorded_at,
                "leaf_hash": bytes(r.leaf_hash),
            }
            yield LeafRow(bytes(r.leaf), cols, commits.get(int(r.seq)))
        next_seq = rows[-1].seq + 1


def db_checkpoints(conn: Connection, *, upto: int) -> Iterator[tuple[int, str]]:
    q = select(checkpoints.c.size, checkpoints.c.note).where(checkpoints.c.size <= upto)
    for r in conn.execute(q.order_by(checkpoints.c.size)):
        yield r.size, r.note


def _check_checkpoint_columns(conn: Connection) -> None:
    """The stored root and time columns (which exports and proofs use) must say what the
    signed notes, verified by then, say."""
    for r in conn.execute(select(checkpoints).order_by(checkpoints.c.size)):
        try:
            cp = parse_checkpoint(r.note)
        except LedgerError as exc:
            raise VerificationFailed(
                f"checkpoint at size {r.size}: {exc.public_message}", seq=r.size - 1
            ) from None
        if cp.root != bytes(r.root) or cp.time != r.recorded_at:
            raise VerificationFailed(
                f"checkpoint at size {r.size}: stored root or time differs from the signed note",
                seq=r.size - 1,
            )


def _head_size(conn: Connection) -> int | None:
    row = conn.execute(select(log_state.c.size)).first()
    return int(row.size) if row else None


def _check_tree_nodes(conn: Connection, size: int) -> None:
    """Every stored tree node must be the one the verified leaves produce: proofs and the
    next append's root are computed from them. Names the first leaf whose node is wrong."""
    tree = CompactRange()
    expected = 0
    batch: dict[tuple[int, int], tuple[bytes, int]] = {}

    def check() -> None:
        ids = list(batch)
        stored = DbNodeReader(conn).get_nodes(ids)
        for node_id in sorted(ids, key=lambda i: batch[i][1]):
            h, seq = batch[node_id]
            if stored.get(node_id) != h:
                raise VerificationFailed(f"stored tree node {node_id} is missing or wrong", seq=seq)
        batch.clear()

    for seq, lh in _leaf_hashes(conn, size):
        for node_id, h in tree.append(lh):
            batch[node_id] = (h, seq)
            expected += 1
        if len(batch) >= CHUNK:
            check()
    if batch:
        check()
    total = conn.execute(select(func.count()).select_from(tree_nodes)).scalar_one()
    if total != expected:
        raise VerificationFailed("tree_nodes holds nodes that no entry completes", seq=size - 1)


def _leaf_hashes(conn: Connection, size: int) -> Iterator[tuple[int, bytes]]:
    start = 0
    while start < size:
        rows = conn.execute(
            select(entries.c.seq, entries.c.leaf_hash)
            .where(entries.c.seq >= start, entries.c.seq < size)
            .order_by(entries.c.seq)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        for r in rows:
            yield int(r.seq), bytes(r.leaf_hash)
        start = rows[-1].seq + 1


def db_projections(conn: Connection) -> Projections:
    info = projections.read_log_info(conn)
    return Projections(
        keys=projections.read_keys(conn),
        tables={name: projections.read_table(conn, name) for name in COMPARED_TABLES},
        log_key=info.log_key if info else None,
    )


def _snapshot_size(conn: Connection) -> int:
    head = conn.execute(select(log_state.c.size)).first()
    if head is None:
        raise ConfigError("the database holds no log: run 'reserve init' first")
    # Rows beyond the recorded head would be an entry the head never acknowledged:
    # verify them too, so such a row is reported rather than silently skipped.
    last = conn.execute(select(entries.c.seq).order_by(entries.c.seq.desc()).limit(1)).first()
    return max(int(head.size), (last.seq + 1) if last else 0)


def verify_database(
    engine: Engine,
    *,
    trusted_log_key: bytes | None,
    jobs: int = 1,
    progress: bool | None = None,
    anchor: str | None = None,
    observer: VerifyObserver | None = None,
    keyring: owner_scope.OwnerKeyring | None = None,
) -> Report:
    """Verify the whole log in the database. ``keyring`` opens the owners' sealed
    secrets, so each v2 leaf's owner commitment is checked too (issue #14); without it
    that one check is made only for secrets stored in the clear (before migration 0015)."""
    with engine.begin() as conn:
        return verify_connection(
            conn,
            trusted_log_key=trusted_log_key,
            jobs=jobs,
            progress=progress,
            anchor=anchor,
            observer=observer,
            keyring=keyring,
        )


def verify_connection(
    conn: Connection,
    *,
    trusted_log_key: bytes | None,
    jobs: int = 1,
    progress: bool | None = None,
    anchor: str | None = None,
    observer: VerifyObserver | None = None,
    keyring: owner_scope.OwnerKeyring | None = None,
) -> Report:
    """:func:`verify_database` inside the caller's transaction (a restore verifies what
    it wrote before it commits)."""
    size = _snapshot_size(conn)
    # Postings and balance snapshots are checked as the replay passes them (issue #12).
    stored = SnapshotCheck(conn)
    report = verify_history(
        db_rows(conn, upto=size),
        db_checkpoints(conn, upto=max(size, _max_cp(conn))),
        trusted_log_key=trusted_log_key,
        projections=db_projections(conn),
        jobs=jobs,
        progress=progress,
        expected_size=_head_size(conn),
        anchor=anchor,
        observer=_Both(stored, observer) if observer is not None else stored,
        owner_secrets=_all_owner_secrets(conn, keyring),
    )
    head_postings = conn.execute(select(log_state.c.postings)).scalar_one_or_none()
    stored.finish(head_postings=int(head_postings or 0))
    _check_checkpoint_columns(conn)
    _check_tree_nodes(conn, report.size)
    head = conn.execute(select(log_state)).first()
    if head is not None and (
        head.size != report.size or head.head_hash != _last_hash(conn, report.size)
    ):
        raise VerificationFailed(
            "the log head does not match the last entry", seq=report.size - 1
        )
    return report


def _all_owner_secrets(
    conn: Connection, keyring: owner_scope.OwnerKeyring | None
) -> dict[str, list[bytes]] | None:
    """Every owner's every secret epoch: the full verify checks each v2 leaf's owner
    commitment with them (issue #14). None on a log that never switched to v2, or whose
    secrets are sealed and no keyring was given (a restore, a reader without the keystore)."""
    if owner_scope.enabled_from(conn) is None:
        return None
    if keyring is None and owner_scope.has_sealed(conn):
        return None
    return {o: [e.secret for e in es] for o, es in owner_scope.read_secrets(conn, keyring=keyring).items()}


def entry_line(engine: Engine, seq: int) -> bytes | None:
    """The leaf found at position ``seq`` in seq order, as the verifier met it (the
    evidence of a failed verification: after a deletion it is the entry that moved up)."""
    with engine.connect() as conn:
        r = conn.execute(
            select(entries.c.leaf).order_by(entries.c.seq).offset(seq).limit(1)
        ).first()
    return bytes(r.leaf) if r else None


def verify_access(engine: Engine, *, log_id: str, log_keys: list[bytes]) -> dict[str, object]:
    """Verify the access log against the log's keys (established by the ledger's own
    verification): chain and signed checkpoints. Returns its size, root and checkpoint
    count; raises :class:`VerificationFailed`."""
    from ledger.access_log import verify_access_log
    from ledger.store.access import iter_access, iter_access_checkpoints

    with engine.begin() as conn:
        rep = verify_access_log(
            iter_access(conn), iter_access_checkpoints(conn), log_id=log_id, log_keys=log_keys
        )
    return {"size": rep.size, "root": rep.root.hex(), "checkpoints": rep.checkpoints}


class _Both:
    """Two observers of one verification, the database's own checks first."""

    def __init__(self, first: VerifyObserver, second: VerifyObserver):
        self._first, self._second = first, second

    def entry(self, seq: int, leaf: Any, changes: list[Change], state: State) -> None:
        self._first.entry(seq, leaf, changes, state)
        self._second.entry(seq, leaf, changes, state)

    def checkpoint(self, size: int, note: str) -> None:
        self._first.checkpoint(size, note)
        self._second.checkpoint(size, note)


def _max_cp(conn: Connection) -> int:
    r = conn.execute(
        select(checkpoints.c.size).order_by(checkpoints.c.size.desc()).limit(1)
    ).first()
    return int(r.size) if r else 0


def _last_hash(conn: Connection, size: int) -> str:
    r = conn.execute(select(entries.c.leaf_hash).where(entries.c.seq == size - 1)).first()
    return bytes(r.leaf_hash).hex() if r else ""


def export_bundle(engine: Engine, out: Path) -> tuple[int, bytes]:
    """Write a bundle of the whole log to ``out`` (created; must be empty if it exists)."""
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:
        head = conn.execute(select(log_state)).first()
        if head is None:
            raise ConfigError("the database holds no log: run 'reserve init' first")
        size = int(head.size)
        commitments = 0
        with (out / bundle.ENTRIES).open("wb") as f, (out / bundle.COMMITMENTS).open("w") as cf:
            for i, row in enumerate(db_rows(conn, upto=size)):
                if i == 0:
                    (out / "genesis.json").write_bytes(row.line + b"\n")
                f.write(row.line + b"\n")
                if row.commitment is not None:  # a v2 leaf (issue #14)
                    cf.write(json.dumps({"seq": i, "commitment": row.commitment.hex()}) + "\n")
                    commitments += 1
        if not commitments:  # a v1 history: the bundle looks as it always did
            (out / bundle.COMMITMENTS).unlink()
        last_note = ""
        with (out / bundle.CHECKPOINTS).open("w") as f:
            for cp_size, note in db_checkpoints(conn, upto=size):
                f.write(json.dumps({"size": cp_size, "note": note}) + "\n")
                last_note = note
        # The newest checkpoint with its witnesses' cosignatures (issue #10).
        (out / "checkpoint.note").write_text(cosigned_note(conn, size) if last_note else "")
        (out / "log.vkey").write_text(
            note_verifier_key(key_name=head.log_id, public_key=bytes.fromhex(head.log_key)) + "\n"
        )
        proj = db_projections(conn)
        (out / bundle.PROJECTIONS).write_text(
            json.dumps(
                {
                    "log_key": proj.log_key,
                    "keys": [
                        bundle.key_record_to_json(k)
                        for k in sorted(proj.keys.values(), key=lambda k: k.key_id)
                    ],
                    "tables": {
                        name: [
                            record_to_json(name, k, v)
                            for k, v in sorted(rows.items(), key=lambda kv: repr(kv[0]))
                        ]
                        for name, rows in proj.tables.items()
                    },
                },
                indent=1,
            )
        )
        root_row = conn.execute(
            select(checkpoints.c.root).where(checkpoints.c.size == size)
        ).first()
        root = bytes(root_row.root) if root_row else b""
    files = {p.name: bundle.file_sha256(p) for p in sorted(out.iterdir()) if p.is_file()}
    manifest = {"format": bundle.FORMAT, "log_id": head.log_id, "size": size, "files": files}
    tmp = out / (bundle.MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / bundle.MANIFEST)
    return size, root
