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

import sys
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from ledger.checkpoint import Checkpoint, parse_checkpoint, verify_checkpoint
from ledger.entries import ZERO_HASH, Leaf, check_leaf_signatures, decode_leaf
from ledger.errors import LedgerError, Rejected, VerificationFailed
from ledger.merkle import CompactRange, leaf_hash
from ledger.reducer import Context, apply
from ledger.rules.movements import REVERSAL_WINDOW
from ledger.state import CLOCK_SKEW, COMPARED_TABLES, REPLAY_WINDOW, Change, KeyRecord, State
from ledger.timefmt import format_time, parse_time


@dataclass(frozen=True, slots=True)
class LeafRow:
    """One entry as the source holds it. ``columns`` are the indexed columns a database
    keeps beside the leaf; they must agree with it (``None`` for a bundle)."""

    line: bytes
    columns: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Projections:
    """What the server says the state is; compared with the replay."""

    keys: dict[str, KeyRecord]
    tables: dict[str, dict[Hashable, Any]]
    log_key: str | None = None


@dataclass
class Report:
    size: int = 0
    root: bytes = b""
    checkpoints: int = 0
    log_id: str = ""
    log_keys: list[str] = field(default_factory=list)


class VerifyObserver(Protocol):
    """Told what passed, as it passes (the verification report, the offline bundle
    questions: ``ledger.report``, ``ledger.bundle_queries``). It must not change
    ``state``; a failure is the :class:`VerificationFailed` the caller catches."""

    def entry(self, seq: int, leaf: Any, changes: list[Change], state: State) -> None: ...

    def checkpoint(self, size: int, note: str) -> None: ...


CHUNK = 1000
_WINDOW = 8  # chunks in flight per worker: bounded read-ahead


def _check_chunk(lines: list[bytes]) -> tuple[int, str, str | None] | None:
    """Worker: check the canonical form, schema and signatures of a chunk; the first
    failure, if any. (The main process then only needs the typed leaf.)"""
    for i, line in enumerate(lines):
        try:
            leaf, raw = decode_leaf(line)
        except LedgerError as exc:
            return i, f"malformed entry: {exc.public_message}", exc.field
        try:
            check_leaf_signatures(leaf, raw, line=line)
        except LedgerError as exc:
            return i, exc.public_message, exc.field
    return None


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
    observer: VerifyObserver | None = None,
) -> Report:
    """Verify a whole history; return the report or raise :class:`VerificationFailed`
    naming the first bad ``seq`` and what is wrong with it.

    ``expected_size`` is what the source claims the log holds (the database head, the
    bundle manifest): fewer entries than that is a truncation, named at the first
    missing seq.

    ``trusted_log_key`` is the auditor's anchor: the genesis log key, or a key the log
    later rotated to. ``None`` skips the anchor (``reserve verify`` on the server's own
    database trusts the genesis it finds, and says so).
    """
    if progress is None:
        progress = sys.stderr.isatty()
    prog = _Progress(progress)
    state = State()
    tree = CompactRange()
    report = Report()
    cps: Iterator[tuple[int, str]] = iter(checkpoints)
    next_cp = next(cps, None)
    prev_hash = ZERO_HASH
    prev_time = ""
    seq = -1
    last_cp_size = 0
    anchor_cp = _parse_anchor(anchor) if anchor is not None else None

    for seq, row, sig_error in _with_signature_checks(rows, jobs):
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
        if leaf.recorded_at < prev_time:
            raise _fail(seq, "recorded_at runs backwards")
        lh = leaf_hash(row.line)
        if row.columns is not None:
            _check_columns(seq, row.columns, leaf, raw, lh)
        if sig_error is not None:
            raise _fail(seq, sig_error)
        if jobs <= 1:
            try:
                check_leaf_signatures(leaf, raw, line=row.line)
            except LedgerError as exc:
                raise _fail(seq, _describe(exc)) from None
        recorded = parse_time(leaf.recorded_at)
        try:
            changes = apply(
                state, leaf.entry, list(leaf.sigs), Context(seq=seq, recorded_at=recorded)
            )
        except LedgerError as exc:
            rule = exc.rule if isinstance(exc, Rejected) else exc.code
            raise _fail(seq, f"rule broken: {_describe(exc)}", rule=rule) from None
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
        prev_time = leaf.recorded_at
        state.forget_ids_before(recorded - REPLAY_WINDOW - CLOCK_SKEW)
        if seq % 4096 == 0:
            # Movements past their reversal window can no longer be reversed.
            state.forget(
                "movements", keep=_recent_movement(format_time(recorded - REVERSAL_WINDOW))
            )

        if anchor_cp is not None and anchor_cp.size == seq + 1 and tree.root() != anchor_cp.root:
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
    if next_cp is not None:
        raise _fail(
            size,
            f"history truncated: a checkpoint covers {next_cp[0]} entries but only {size} are present",
        )
    if anchor_cp is not None and size < anchor_cp.size:
        raise _fail(size, f"the history is shorter than the checkpoint you hold ({anchor_cp.size} entries): rolled back")
    if anchor_cp is not None:
        _check_anchor_signature(anchor, anchor_cp, report)
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


def _parse_anchor(note: str) -> Checkpoint:
    try:
        return parse_checkpoint(note)
    except LedgerError as exc:
        raise VerificationFailed(f"the checkpoint you hold is malformed: {exc.public_message}") from None


def _check_anchor_signature(note: str | None, cp: Checkpoint, report: Report) -> None:
    """The held checkpoint must be signed by one of this log's keys (else it proves
    nothing about this log)."""
    for key in report.log_keys:
        try:
            verify_checkpoint(note or "", public_key=bytes.fromhex(key), key_name=report.log_id)
            return
        except LedgerError:
            continue
    raise VerificationFailed("the checkpoint you hold is not signed by this log's key")


def _recent_movement(horizon: str) -> Callable[[Any], bool]:
    def keep(m: Any) -> bool:
        return bool(m.recorded_at >= horizon)

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
    rows: Iterable[LeafRow], jobs: int
) -> Iterator[tuple[int, LeafRow, str | None]]:
    """Yield (seq, row, signature error or None). With ``jobs > 1`` the signatures are
    checked ahead in worker processes; otherwise the caller checks them inline."""
    if jobs <= 1:
        for seq, row in enumerate(rows):
            yield seq, row, None
        return
    pending: deque[tuple[list[LeafRow], Future[tuple[int, str, str | None] | None]]] = deque()
    it = iter(rows)
    base = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:

        def submit() -> bool:
            chunk = [r for _, r in zip(range(CHUNK), it, strict=False)]
            if not chunk:
                return False
            pending.append((chunk, pool.submit(_check_chunk, [r.line for r in chunk])))
            return True

        more = True
        while more and len(pending) < jobs * _WINDOW:
            more = submit()
        while pending:
            chunk, fut = pending.popleft()
            if more:
                more = submit()
            bad = fut.result()
            for i, row in enumerate(chunk):
                err = None
                if bad is not None and bad[0] == i:
                    err = f"{bad[1]} ({bad[2]})" if bad[2] else bad[1]
                yield base + i, row, err
            base += len(chunk)


