"""Incremental audit (issue #10): verify only what the log added since the last audit.

From the saved position (``ledger.audit_state``) to the log's newest checkpoint:

1. the new checkpoint must be this log's, carry the witness quorum, and be no smaller
   than the saved one (else: rolled back);
2. the log's consistency proof from the saved checkpoint to the new one must verify
   (else: the history was rewritten, a fork);
3. only the new entries are fetched and verified, continuing the reducer, hash chain and
   tree from the saved state; the recomputed root must be the new checkpoint's, signed by
   the log key in force at that size. The owner commitments of v2 leaves (issue #14) are
   fetched with them, since each is bound into its leaf hash; with every owner's key
   file (``owner_secrets``) each is also checked as ``reserve verify`` checks it.

Nothing is saved until all of that holds; on any inconsistency the saved state is left
as it was. Progress toward the new checkpoint is saved every ``save_every`` entries in a
separate file, so an interrupted sync resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Protocol

from ledger import audit_state
from ledger.audit_state import SavedAudit
from ledger.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from ledger.cosignature import Cosigner, check_quorum
from ledger.errors import InvalidProof, LedgerError, VerificationFailed
from ledger.merkle import verify_consistency
from ledger.verify import LeafRow, Snapshot, verify_history

STATE_FILE = "state.json"
PROGRESS_FILE = "progress.json"


class AuditSource(Protocol):
    """Where the log is read from (the service over HTTP; a test's fake log)."""

    def checkpoint(self) -> str:
        """The newest checkpoint note, with its cosignatures."""
        ...

    def consistency(self, old_size: int, new_size: int) -> list[bytes]: ...

    def leaves(self, start: int, end: int) -> Iterator[bytes]:
        """Entries ``start`` to ``end - 1``, one canonical leaf each."""
        ...

    def commitments(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        """``(seq, C)`` of the v2 leaves among ``start`` to ``end - 1``, in seq order
        (none on a v1 log; issue #14)."""
        ...


@dataclass(frozen=True)
class SyncResult:
    old_size: int
    size: int
    root: bytes
    verified: int  # entries verified by this run
    resumed: bool  # an interrupted sync was continued
    log_id: str


def sync(
    state_dir: Path,
    source: AuditSource,
    *,
    trusted_log_key: bytes | None,
    witnesses: Sequence[Cosigner] = (),
    quorum: int = 0,
    save_every: int = 10_000,
    owner_secrets: Mapping[str, Sequence[bytes]] | None = None,
) -> SyncResult:
    """Bring the saved audit in ``state_dir`` up to the log's newest checkpoint."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    state_path, progress_path = state_dir / STATE_FILE, state_dir / PROGRESS_FILE
    saved = audit_state.load(state_path)
    progress = audit_state.load(progress_path)
    old_size = saved.snapshot.tree.size if saved is not None else 0
    verified = 0
    resumed = False
    if progress is not None:
        # Finish the checkpoint the interrupted run was moving to (it passed every
        # check but the entries before it was saved as a target), then go on.
        base = saved.checkpoint if saved is not None else ""
        if progress.target is None or progress.checkpoint != base:
            progress_path.unlink()
        else:
            resumed = True
            saved, n = _advance(
                saved, progress, progress.target, source, state_path, progress_path,
                trusted_log_key=trusted_log_key, witnesses=witnesses, quorum=quorum,
                save_every=save_every, owner_secrets=owner_secrets,
            )
            verified += n
    note = source.checkpoint()
    saved, n = _advance(
        saved, None, note, source, state_path, progress_path,
        trusted_log_key=trusted_log_key, witnesses=witnesses, quorum=quorum,
        save_every=save_every, owner_secrets=owner_secrets,
    )
    verified += n
    snap = saved.snapshot
    return SyncResult(
        old_size=old_size, size=snap.tree.size, root=snap.tree.root(), verified=verified,
        resumed=resumed, log_id=snap.log_id,
    )


def _advance(
    saved: SavedAudit | None,
    progress: SavedAudit | None,
    note: str,
    source: AuditSource,
    state_path: Path,
    progress_path: Path,
    *,
    trusted_log_key: bytes | None,
    witnesses: Sequence[Cosigner],
    quorum: int,
    save_every: int,
    owner_secrets: Mapping[str, Sequence[bytes]] | None,
) -> tuple[SavedAudit, int]:
    """Move from ``saved`` to checkpoint ``note``; return the new saved audit and how
    many entries were verified."""
    cp = _parse(note)
    if cp.size == 0:
        raise VerificationFailed("the log's checkpoint is of an empty tree: nothing to audit")
    check_quorum(note, witnesses=witnesses, quorum=quorum)
    old = saved.snapshot if saved is not None else None
    old_size = old.tree.size if old is not None else 0
    if old is not None:
        if cp.origin != old.log_id:
            raise VerificationFailed(f"the checkpoint is for log {cp.origin}, not {old.log_id}")
        if cp.size < old_size:
            raise VerificationFailed(
                f"the log now shows {cp.size} entries but you verified {old_size}: it was rolled back"
            )
        proof = source.consistency(old_size, cp.size) if cp.size > old_size else []
        try:
            verify_consistency(
                old_size=old_size, new_size=cp.size, old_root=old.tree.root(), new_root=cp.root, proof=proof
            )
        except InvalidProof as exc:
            raise VerificationFailed(
                f"checkpoint at size {cp.size} does not extend the one you verified at size "
                f"{old_size} ({exc.public_message}): the history was rewritten"
            ) from None
        if cp.size == old_size:
            # Same tree; keep the newer note (it may carry more cosignatures) once its
            # signature by the log key in force is checked.
            info = old.state.log_info()
            try:
                if info is None:
                    raise VerificationFailed("the saved state knows no log key")
                verify_checkpoint(note, public_key=bytes.fromhex(info.log_key), key_name=old.log_id)
            except LedgerError as exc:
                raise VerificationFailed(f"checkpoint at size {cp.size}: {exc.public_message}") from None
            kept = SavedAudit(checkpoint=note, snapshot=old)
            audit_state.save(state_path, kept)
            return kept, 0
    snap: Snapshot | None = progress.snapshot if progress is not None else old
    start = snap.tree.size if snap is not None else 0
    leaves = _with_commitments(source, start, cp.size)
    verified = 0
    try:
        while start < cp.size:
            end = min(cp.size, start + save_every)
            page = list(islice(leaves, end - start))
            if len(page) != end - start:
                raise VerificationFailed(
                    f"the log served entries up to {start + len(page)} but its checkpoint covers {cp.size}"
                )
            last = end == cp.size
            report = verify_history(
                page,
                [(cp.size, note)] if last else [],
                trusted_log_key=None,
                progress=False,
                resume=snap,
                complete=False,
                owner_secrets=owner_secrets,
            )
            snap = report.snapshot
            assert snap is not None
            verified += len(page)
            start = end
            if not last:
                audit_state.save(
                    progress_path,
                    SavedAudit(
                        checkpoint=saved.checkpoint if saved is not None else "",
                        snapshot=snap,
                        target=note,
                    ),
                )
    except VerificationFailed:
        progress_path.unlink(missing_ok=True)  # the target is bad: never resume toward it
        raise
    assert snap is not None
    if snap.last_cp_size != cp.size:
        raise VerificationFailed(f"checkpoint at size {cp.size} was not verified against the entries")
    if trusted_log_key is not None and trusted_log_key.hex() not in snap.log_keys:
        raise VerificationFailed(
            "the trusted log key is not this log's key: the history is not the one you trust", seq=0
        )
    new = SavedAudit(checkpoint=note, snapshot=snap)
    audit_state.save(state_path, new)
    progress_path.unlink(missing_ok=True)
    return new, verified


def _with_commitments(source: AuditSource, start: int, end: int) -> Iterator[LeafRow]:
    """The leaves with their owner commitments, merged by seq. A commitment the log
    leaves out or makes up is not trusted here: the leaf hash binds it, so the root
    check fails at the first checkpoint after it (and the v1-after-v2 ratchet sooner)."""
    commits = source.commitments(start, end)
    pending = next(commits, None)
    for seq, line in enumerate(source.leaves(start, end), start):
        commitment = None
        if pending is not None:
            at, c = pending
            if not seq <= at < end:
                raise VerificationFailed(
                    f"the log served an owner commitment for seq {at} out of order or out of range"
                )
            if at == seq:
                commitment = c
                pending = next(commits, None)
        yield LeafRow(line, None, commitment)


def _parse(note: str) -> Checkpoint:
    try:
        return parse_checkpoint(note)
    except LedgerError as exc:
        raise VerificationFailed(f"the log's checkpoint is malformed: {exc.public_message}") from None
