"""The verifier: replays a history and checks everything an auditor must not take on trust.

For every entry, in order: canonical form and schema, its place (``seq``), the hash chain
(``prev_hash``), the log's clock, every signature, and the reducer (the same rule book the
write path ran). The RFC 9162 tree is recomputed as it goes, and every checkpoint is
checked against it and against the log key in force at that size. At the end the replayed
state is compared with the projections the server materialised.

It streams: memory grows with the number of keys and holdings, never with the number of
entries. It imports neither the database nor the web (``ledger.store`` feeds it rows; an
export bundle feeds it lines from disk), so an auditor can run it with only ``ledger``.

Signatures dominate the cost. With ``jobs > 1`` they are checked in worker processes, in
bounded windows of chunks, while the main process does the rest in order.
"""

from __future__ import annotations

import itertools
import sys
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec

from ledger.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from ledger.entries import ZERO_HASH, Leaf, decode_leaf, leaf_signature_version
from ledger.errors import HeldCheckpointInvalid, LedgerError, Rejected, VerificationFailed
from ledger.kinds.keys import Genesis
from ledger.merkle import CompactRange, leaf_hash
from ledger.owner_scope import (
    CommitmentMalformed,
    leaf_hash_v2,
    names_parsed,
    parse_commitment,
    rest_hash,
)
from ledger.reducer import Context, apply
from ledger.rules.movements import REVERSAL_WINDOW
from ledger.rules.owners import EVERY, owners_touched, registered_owners, touches
from ledger.state import CLOCK_SKEW, COMPARED_TABLES, REPLAY_WINDOW, Change, KeyRecord, State
from ledger.timefmt import format_time, parse_time


@dataclass(frozen=True, slots=True)
class LeafRow:
    """One entry as the source holds it. ``columns`` are the indexed columns a database
    keeps beside the leaf; they must agree with it (``None`` for a bundle)."""

    line: bytes
    columns: dict[str, Any] | None = None
    # The owner commitment of a v2 leaf (``ledger.owner_scope``, issue #14); None: a v1 leaf.
    commitment: bytes | None = None


@dataclass(frozen=True, slots=True)
class Projections:
    """What the server says the state is; compared with the replay."""

    keys: dict[str, KeyRecord]
    tables: dict[str, dict[Hashable, Any]]
    log_key: str | None = None


@dataclass
class Snapshot:
    """Where a verification stands after ``tree.size`` entries: everything it needs to
    continue with entry ``tree.size`` (``ledger.audit_state`` saves it for incremental
    audits, issue #10)."""

    state: State
    tree: CompactRange
    prev_hash: str
    prev_time: str
    log_id: str
    log_keys: list[str]
    checkpoints: int
    last_cp_size: int
    leaf_version: int = 1  # 2 from the log's first v2 leaf on (issue #14)


@dataclass
class Report:
    size: int = 0
    root: bytes = b""
    checkpoints: int = 0
    log_id: str = ""
    log_keys: list[str] = field(default_factory=list)
    snapshot: Snapshot | None = None


class VerifyObserver(Protocol):
    """Told what passed, as it passes (the verification report, the offline bundle
    questions: ``ledger.report``, ``ledger.bundle_queries``). It must not change
    ``state``; a failure is the :class:`VerificationFailed` the caller catches."""

    def entry(self, seq: int, leaf: Any, changes: list[Change], state: State) -> None: ...

    def checkpoint(self, size: int, note: str) -> None: ...


CHUNK = 1000
_WINDOW = 8  # chunks in flight per worker: bounded read-ahead


ChunkResult = tuple[list[int], tuple[int, str, str | None] | None]


def _check_chunk(lines: list[bytes], log_id: str) -> ChunkResult:
    """Worker: the canonical form, schema and signature form (1 or 2) of each entry of a
    chunk, up to the first failure, and that failure if any. (The main process then only
    needs the typed leaf.) Which form was still allowed is the reducer's question, asked
    in order by the main process."""
    versions: list[int] = []
    last = 2
    for i, line in enumerate(lines):
        try:
            leaf, raw = decode_leaf(line)
        except LedgerError as exc:
            return versions, (i, f"malformed entry: {exc.public_message}", exc.field)
        try:
            last = leaf_signature_version(leaf, raw, log_id=log_id, try_first=last, line=line)
        except LedgerError as exc:
            return versions, (i, exc.public_message, exc.field)
        versions.append(last)
    return versions, None


def _genesis_log_id(line: bytes) -> str:
    """The log id a history names in its first entry ("" if it is no genesis: the
    reducer then refuses that entry anyway)."""
    try:
        leaf, _ = decode_leaf(line)
    except LedgerError:
        return ""
    return leaf.entry.log_id if isinstance(leaf.entry, Genesis) else ""


_LEAF_DECODER = msgspec.json.Decoder(Leaf)


def _decode_checked(seq: int, line: bytes) -> Any:
    """The typed leaf of a line a worker checks in full (canonical form, schema,
    signatures): one msgspec decode instead of parse + re-encode + convert (issue #10
    performance). Anything it cannot decode gets the full decode's precise error."""
    try:
        return _LEAF_DECODER.decode(line), None
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _decode(seq, line)


def _fail(seq: int, what: str, *, rule: str | None = None) -> VerificationFailed:
    return VerificationFailed(what, seq=seq, rule=rule)


def _apply_checked(
    state: State,
    entry: Any,
    sigs: Sequence[Any],
    *,
    seq: int,
    recorded: datetime,
    version: int,
    partial: bool = False,
) -> list[Change]:
    """The entry's changes by the rules, or the failure naming the rule it breaks: the one
    replay step of the full and the owner-scoped verification (issue #14)."""
    try:
        ctx = Context(seq=seq, recorded_at=recorded, sig_version=version, partial=partial)
        return apply(state, entry, list(sigs), ctx)
    except LedgerError as exc:
        rule = exc.rule if isinstance(exc, Rejected) else exc.code
        raise _fail(seq, f"rule broken: {_describe(exc)}", rule=rule) from None


def _commitment_wrong(seq: int, owner: str, *, expected: bool) -> VerificationFailed:
    return _fail(
        seq,
        f"owner commitment is wrong for owner {owner}: the entry "
        f"{'touches' if expected else 'does not touch'} it",
    )


class _Progress:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.every = 10_000

    def tick(self, n: int) -> None:
        if self.enabled and n % self.every == 0:
            print(f"\rverified {n:,} entries", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled:
            print("\r", end="", file=sys.stderr, flush=True)


def verify_history(
    rows: Iterable[LeafRow],
    checkpoints: Iterable[tuple[int, str]],
    *,
    trusted_log_key: bytes | None,
    projections: Projections | None = None,
    jobs: int = 1,
    progress: bool | None = None,
    expected_size: int | None = None,
    anchor: str | None = None,
    resume: Snapshot | None = None,
    complete: bool = True,
    observer: VerifyObserver | None = None,
    owner_secrets: Mapping[str, Sequence[bytes]] | None = None,
) -> Report:
    """Verify a whole history; return the report or raise :class:`VerificationFailed`
    naming the first bad ``seq`` and what is wrong with it.

    ``expected_size`` is what the source claims the log holds (the database head, the
    bundle manifest): fewer entries than that is a truncation, named at the first
    missing seq.

    ``trusted_log_key`` is the auditor's anchor: the genesis log key, or a key the log
    later rotated to. ``None`` skips the anchor (``reserve verify`` on the server's own
    database trusts the genesis it finds, and says so).

    ``resume`` continues a verification from where a :class:`Snapshot` left it: ``rows``
    then start at ``resume.tree.size``. With ``complete=False`` the end-of-history checks
    (coverage by a checkpoint, truncation, projections) are skipped, for a verification
    that goes on later; the report's ``snapshot`` says where it stopped.

    ``owner_secrets`` (every epoch of every owner's scoped-audit secret) makes it check
    each v2 leaf's owner commitment against :func:`ledger.rules.owners.owners_touched`
    (issue #14); without them the commitment is still bound into the leaf hash.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    prog = _Progress(progress)
    state = resume.state if resume is not None else State()
    tree = resume.tree if resume is not None else CompactRange()
    report = Report()
    cps: Iterator[tuple[int, str]] = iter(checkpoints)
    next_cp = next(cps, None)
    prev_hash = resume.prev_hash if resume is not None else ZERO_HASH
    prev_time: datetime | None = (
        parse_time(resume.prev_time) if resume is not None and resume.prev_time else None
    )
    seq = tree.size - 1
    last_cp_size = resume.last_cp_size if resume is not None else 0
    if resume is not None:
        report.log_id, report.log_keys = resume.log_id, list(resume.log_keys)
        report.checkpoints = resume.checkpoints
    anchor_cp = _parse_anchor(anchor) if anchor is not None else None

    last_version = 2
    leaf_version = resume.leaf_version if resume is not None else 1
    checked = _with_signature_checks(
        rows, jobs, start=tree.size, log_id=resume.log_id if resume is not None else None
    )
    for seq, row, sig_error, version in checked:
        # Workers check canonical form and schema too; database rows need the raw
        # leaf for their columns.
        leaf, raw = (
            _decode_checked(seq, row.line)
            if jobs > 1 and row.columns is None
            else _decode(seq, row.line)
        )
        if leaf.seq != seq:
            raise _fail(
                seq,
                f"entry out of place: expected seq {seq}, found seq {leaf.seq} (deleted or reordered)",
            )
        if leaf.prev_hash != prev_hash:
            raise _fail(seq, "hash chain broken: prev_hash is not the hash of the previous entry")
        # Compared as times, not strings: RFC 3339 allows 0-6 fractional digits, and
        # "00Z" sorts after "00.5Z" as text (issue #8, item 10).
        recorded = parse_time(leaf.recorded_at)
        if prev_time is not None and recorded < prev_time:
            raise _fail(seq, "recorded_at runs backwards")
        if row.commitment is None:
            if leaf_version == 2:
                raise _fail(seq, "a v1 leaf (no owner commitment) after the log's first v2 leaf")
            lh = leaf_hash(row.line)
        else:
            try:
                lh = leaf_hash_v2(row.commitment, rest_hash(row.line))
                parsed = parse_commitment(row.commitment)
            except CommitmentMalformed as exc:
                raise _fail(seq, f"owner commitment: {exc}") from None
            leaf_version = 2
        if row.columns is not None:
            _check_columns(seq, row.columns, leaf, raw, lh)
        if sig_error is not None:
            raise _fail(seq, sig_error)
        if version is None:
            known = state.log_info()
            try:
                version = leaf_signature_version(
                    leaf, raw, log_id=known.log_id if known else "", try_first=last_version,
                    line=row.line,
                )
            except LedgerError as exc:
                raise _fail(seq, _describe(exc)) from None
        last_version = version
        if owner_secrets is not None and row.commitment is not None:
            _check_owner_commitment(seq, leaf.entry, parsed, state, owner_secrets)
        changes = _apply_checked(state, leaf.entry, leaf.sigs, seq=seq, recorded=recorded, version=version)
        state.apply(changes)
        if observer is not None:
            observer.entry(seq, leaf, changes, state)
        info = state.log_info()
        assert info is not None
        if seq == 0:
            report.log_id = info.log_id
        if info.log_key not in report.log_keys:
            report.log_keys.append(info.log_key)
        tree.append(lh)
        prev_hash = lh.hex()
        prev_time = recorded
        state.forget_ids_before(recorded - REPLAY_WINDOW - CLOCK_SKEW)
        if seq % 4096 == 0:
            # Movements past their reversal window can no longer be reversed.
            state.forget(
                "movements", keep=_recent_movement(recorded - REVERSAL_WINDOW)
            )

        if anchor_cp is not None and anchor_cp.size == seq + 1:
            # The held note first, the log second: a note that this log never signed says
            # nothing about it, so it must not make the log look rewritten (issue #8, item 6).
            _check_anchor(anchor or "", anchor_cp, info.log_id, report.log_keys, trusted_log_key)
            if tree.root() != anchor_cp.root:
                raise _fail(seq, f"the history differs from the checkpoint you hold for size {anchor_cp.size}: it was rewritten")
        while next_cp is not None and next_cp[0] <= seq + 1:
            cp_size, note = next_cp
            if cp_size < seq + 1:
                raise _fail(seq, f"checkpoint at size {cp_size} is out of order")
            _check_checkpoint(seq, note, cp_size, tree.root(), info.log_id, info.log_key)
            report.checkpoints += 1
            if observer is not None:
                observer.checkpoint(cp_size, note)
            last_cp_size = cp_size
            next_cp = next(cps, None)
        prog.tick(seq + 1)

    prog.done()
    size = seq + 1
    report.snapshot = Snapshot(
        state,
        tree,
        prev_hash,
        format_time(prev_time) if prev_time is not None else "",
        report.log_id,
        report.log_keys,
        report.checkpoints,
        last_cp_size,
        leaf_version,
    )
    if not complete:
        report.size, report.root = size, tree.root()
        return report
    if next_cp is not None:
        raise _fail(
            size,
            f"history truncated: a checkpoint covers {next_cp[0]} entries but only {size} are present",
        )
    if anchor_cp is not None and size < anchor_cp.size:
        _check_anchor(anchor or "", anchor_cp, report.log_id, report.log_keys, trusted_log_key)
        raise _fail(size, f"the history is shorter than the checkpoint you hold ({anchor_cp.size} entries): rolled back")
    if expected_size is not None and size < expected_size:
        raise _fail(
            size,
            f"history truncated: the log records {expected_size} entries but only {size} are present",
        )
    if size == 0:
        raise VerificationFailed("the history is empty")
    if last_cp_size != size:
        raise _fail(
            last_cp_size,
            f"entries from seq {last_cp_size} on are not covered by any signed checkpoint",
        )
    if trusted_log_key is not None and trusted_log_key.hex() not in report.log_keys:
        raise VerificationFailed(
            "the trusted log key is not this log's key: the history is not the one you trust", seq=0
        )
    if projections is not None:
        _compare_projections(state, projections)
    report.size = size
    report.root = tree.root()
    return report


def _check_owner_commitment(
    seq: int,
    body: Any,
    commitment: tuple[bytes, frozenset[bytes]],
    state: State,
    secrets: Mapping[str, Sequence[bytes]],
) -> None:
    """Each owner whose secret we hold is named by the leaf exactly when the entry touches
    it; an owner the entry touches must be one we hold a secret for (issue #14)."""
    info = state.log_info()
    log_id = info.log_id if info is not None else getattr(body, "log_id", "")
    touched = owners_touched(body, state)
    owners = registered_owners(body, (str(o) for o in state.table("owners")))
    needed = owners if touched is EVERY else {o for o in owners if touches(touched, o, registered=True)}
    missing = sorted(needed - set(secrets))
    if missing:
        raise _fail(seq, f"owner commitment: no scoped-audit secret for owner {missing[0]}")
    for owner, keys in secrets.items():
        expected = touches(touched, owner, registered=owner in owners)
        if names_parsed(*commitment, keys, log_id=log_id, seq=seq) != expected:
            raise _commitment_wrong(seq, owner, expected=expected)


def _parse_anchor(note: str) -> Checkpoint:
    try:
        return parse_checkpoint(note)
    except LedgerError as exc:
        raise HeldCheckpointInvalid(
            f"the held checkpoint is not valid for this log: it is malformed ({exc.public_message})"
        ) from None


def _check_anchor(
    note: str, cp: Checkpoint, log_id: str, log_keys: list[str], trusted: bytes | None
) -> None:
    """The held checkpoint must name this log and be signed by one of its keys (those the
    history has had so far, or the auditor's trusted one); else it proves nothing about
    this log, and the error says so instead of blaming the log."""
    if cp.origin != log_id:
        raise HeldCheckpointInvalid("the held checkpoint is not valid for this log: it names another log")
    keys = [bytes.fromhex(k) for k in log_keys] + ([trusted] if trusted is not None else [])
    for key in keys:
        try:
            verify_checkpoint(note, public_key=key, key_name=log_id)
            return
        except LedgerError:
            continue
    raise HeldCheckpointInvalid(
        "the held checkpoint is not valid for this log: its signature does not verify with this log's keys"
    )


def _recent_movement(horizon: datetime) -> Callable[[Any], bool]:
    def keep(m: Any) -> bool:
        return parse_time(m.recorded_at) >= horizon

    return keep


def _describe(exc: LedgerError) -> str:
    return f"{exc.public_message} ({exc.field})" if exc.field else exc.public_message


def _decode(seq: int, line: bytes) -> Any:
    try:
        return decode_leaf(line)
    except LedgerError as exc:
        raise _fail(seq, f"malformed entry: {_describe(exc)}") from None


def _check_columns(
    seq: int, cols: dict[str, Any], leaf: Any, raw: dict[str, Any], lh: bytes
) -> None:
    expected = {
        "seq": seq,
        "entry_id": leaf.entry.id,
        "kind": raw["entry"]["kind"],
        "author": leaf.entry.author,
        "recorded_at": leaf.recorded_at,
        "leaf_hash": lh,
    }
    for name, value in expected.items():
        if name in cols and cols[name] != value:
            raise _fail(seq, f"stored column '{name}' does not match the signed entry")


def _check_checkpoint(
    seq: int, note: str, size: int, root: bytes, log_id: str, log_key: str
) -> None:
    try:
        cp = verify_checkpoint(note, public_key=bytes.fromhex(log_key), key_name=log_id)
    except LedgerError as exc:
        raise _fail(seq, f"checkpoint at size {size}: {_describe(exc)}") from None
    if cp.origin != log_id or cp.size != size:
        raise _fail(seq, f"checkpoint at size {size} names another log or size")
    if cp.root != root:
        raise _fail(seq, f"checkpoint at size {size}: root does not match the entries")


def _compare_projections(state: State, proj: Projections) -> None:
    replayed = state.keys_snapshot()
    for kid in sorted(set(replayed) | set(proj.keys)):
        if replayed.get(kid) != proj.keys.get(kid):
            raise VerificationFailed(
                f"projection 'keys' differs from the replay for key {kid[:16]}..."
            )
    for name in COMPARED_TABLES:
        replay = state.table(name)
        stored = proj.tables.get(name, {})
        for key in sorted(set(replay) | set(stored), key=repr):
            if replay.get(key) != stored.get(key):
                shown = " / ".join(key) if isinstance(key, tuple) else str(key)
                raise VerificationFailed(f"projection '{name}' differs from the replay for {shown}")
    info = state.log_info()
    if proj.log_key is not None and (info is None or info.log_key != proj.log_key):
        raise VerificationFailed("projection 'log_state' names another log key than the replay")


def _with_signature_checks(
    rows: Iterable[LeafRow], jobs: int, *, start: int = 0, log_id: str | None = None
) -> Iterator[tuple[int, LeafRow, str | None, int | None]]:
    """Yield (seq, row, signature error or None, signature form or None) from ``start``.
    With ``jobs > 1`` the signatures are checked ahead in worker processes (bound to
    ``log_id``, else to the log id the genesis names); otherwise the caller checks them
    inline (form ``None``)."""
    if jobs <= 1:
        for seq, row in enumerate(rows, start):
            yield seq, row, None, None
        return
    pending: deque[tuple[list[LeafRow], Future[ChunkResult]]] = deque()
    it = iter(rows)
    if log_id is None:
        first = next(it, None)
        if first is None:
            return
        log_id = _genesis_log_id(first.line)
        it = itertools.chain([first], it)
    base = start
    with ProcessPoolExecutor(max_workers=jobs) as pool:

        def submit() -> bool:
            chunk = [r for _, r in zip(range(CHUNK), it, strict=False)]
            if not chunk:
                return False
            pending.append((chunk, pool.submit(_check_chunk, [r.line for r in chunk], log_id)))
            return True

        more = True
        while more and len(pending) < jobs * _WINDOW:
            more = submit()
        while pending:
            chunk, fut = pending.popleft()
            if more:
                more = submit()
            versions, bad = fut.result()
            for i, row in enumerate(chunk):
                err = None
                if bad is not None and bad[0] == i:
                    err = f"{bad[1]} ({bad[2]})" if bad[2] else bad[1]
                yield base + i, row, err, versions[i] if i < len(versions) else None
            base += len(chunk)
