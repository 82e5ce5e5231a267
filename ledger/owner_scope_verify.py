"""The scoped verifier: one owner's part of the history, and proof that nothing was left out
(issue #14).

A scoped bundle gives every leaf of the log, in order, either **in full** (the canonical
leaf) or **withheld** (its rest hash ``SHA-256(leaf line)`` only), and the owner
commitment ``C`` of every v2 leaf. For each seq:

* withheld: the leaf must be v2 (a v1 leaf has no commitment to show it is not the
  owner's), ``C`` must not name the owner under any epoch of its secret, and the leaf hash
  is recomputed from ``C`` and the rest hash;
* in full: everything the full verifier checks (canonical form, place, chain to the
  previous leaf hash, clock, signatures, the reducer's rules over the entries given) and,
  for a v2 leaf, that ``C`` names the owner exactly when
  :func:`ledger.rules.owners.owners_touched` says the entry touches it.

The tree is rebuilt from all the leaf hashes and every checkpoint is checked against it
and the log key (so a withheld leaf cannot be swapped, and the history is the one the
witnesses cosigned). Signatures are checked only for the entries given: the speed-up
over a full verification (bench ``owner_scope``).

Imports neither the database nor the web.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ledger.entries import ZERO_HASH, decode_leaf, leaf_signature_version
from ledger.errors import LedgerError, VerificationFailed
from ledger.merkle import CompactRange, leaf_hash
from ledger.owner_scope import (
    CommitmentMalformed,
    leaf_hash_v2,
    names_parsed,
    parse_commitment,
    rest_hash,
)
from ledger.records import BalanceRec, split_holding
from ledger.rules.owners import owners_touched, registered_owners, touches
from ledger.state import CLOCK_SKEW, REPLAY_WINDOW, State
from ledger.timefmt import parse_time
from ledger.verify import _apply_checked, _check_checkpoint, _commitment_wrong, _describe, _fail


@dataclass(frozen=True, slots=True)
class ScopedRow:
    """One leaf of a scoped bundle: ``line`` (given in full) or ``rest`` (withheld)."""

    line: bytes | None
    rest: bytes | None
    commitment: bytes | None


@dataclass
class ScopedReport:
    size: int = 0
    root: bytes = b""
    checkpoints: int = 0
    log_id: str = ""
    log_keys: list[str] = field(default_factory=list)
    given: int = 0
    withheld: int = 0
    # The owner's holdings after the replay: (site, lot) -> BalanceRec.
    balances: dict[tuple[str, str], BalanceRec] = field(default_factory=dict)


class _Replay:
    """Where the scoped verification stands: the state of the entries given so far, the
    chain, the clock and the signature form of the last given entry."""

    def __init__(self, owner: str, secrets: Sequence[bytes], log_id: str):
        self.owner, self.secrets, self.log_id = owner, secrets, log_id
        self.state = State()
        self.prev_hash = ZERO_HASH
        self.prev_time: datetime | None = None
        self.sig_version = 2
        self.leaf_version = 1

    def withheld(self, seq: int, rest: bytes | None, commitment: bytes | None, named: bool) -> bytes:
        if rest is None or len(rest) != 32:
            raise _fail(seq, "a withheld leaf without its rest hash")
        if commitment is None:
            raise _fail(seq, "a withheld leaf has no owner commitment: it may touch the owner")
        if named:
            raise _fail(
                seq, f"an entry touching {self.owner} was withheld (its owner commitment names it)"
            )
        return leaf_hash_v2(commitment, rest)

    def given(self, seq: int, line: bytes, commitment: bytes | None, named: bool) -> bytes:
        state = self.state
        try:
            leaf, raw = decode_leaf(line)
        except LedgerError as exc:
            raise _fail(seq, f"malformed entry: {_describe(exc)}") from None
        if leaf.seq != seq:
            raise _fail(seq, f"entry out of place: expected seq {seq}, found seq {leaf.seq}")
        if leaf.prev_hash != self.prev_hash:
            raise _fail(seq, "hash chain broken: prev_hash is not the hash of the previous entry")
        recorded = parse_time(leaf.recorded_at)
        if self.prev_time is not None and recorded < self.prev_time:
            raise _fail(seq, "recorded_at runs backwards")
        known = state.log_info()
        try:
            version = leaf_signature_version(
                leaf, raw, log_id=known.log_id if known else "", try_first=self.sig_version, line=line
            )
        except LedgerError as exc:
            raise _fail(seq, _describe(exc)) from None
        if commitment is not None:
            touched = owners_touched(leaf.entry, state)
            registered = self.owner in registered_owners(
                leaf.entry, () if state.get("owners", self.owner) is None else (self.owner,)
            )
            expected = touches(touched, self.owner, registered=registered)
            if named != expected:
                raise _commitment_wrong(seq, self.owner, expected=expected)
        state.apply(_apply_checked(state, leaf.entry, leaf.sigs, seq=seq, recorded=recorded, version=version, partial=True))
        state.forget_ids_before(recorded - REPLAY_WINDOW - CLOCK_SKEW)
        self.prev_time, self.sig_version = recorded, version
        if commitment is None:
            return leaf_hash(line)
        return leaf_hash_v2(commitment, rest_hash(line))


def verify_scoped(
    rows: Iterable[ScopedRow],
    checkpoints: Iterable[tuple[int, str]],
    *,
    owner: str,
    secrets: Sequence[bytes],
    log_id: str,
    trusted_log_key: bytes,
    expected_size: int | None = None,
    expected_balances: dict[tuple[str, str], int] | None = None,
) -> ScopedReport:
    """Verify ``owner``'s scoped bundle; return the report or raise
    :class:`VerificationFailed` naming the first bad seq. ``log_id`` is the log the
    owner's key file names (the tags are bound to it); ``secrets`` every epoch's secret."""
    if not secrets:
        raise VerificationFailed("no scoped-audit secret for the owner")
    replay = _Replay(owner, secrets, log_id)
    tree = CompactRange()
    report = ScopedReport(log_id=log_id)
    cps = iter(checkpoints)
    next_cp = next(cps, None)
    last_cp_size = 0
    seq = -1
    for seq, row in enumerate(rows):
        named = False
        if row.commitment is not None:
            try:
                salt, tags = parse_commitment(row.commitment)
            except CommitmentMalformed as exc:
                raise _fail(seq, f"owner commitment: {exc}") from None
            named = names_parsed(salt, tags, secrets, log_id=log_id, seq=seq)
        elif replay.leaf_version == 2:
            raise _fail(seq, "a v1 leaf (no owner commitment) after the log's first v2 leaf")
        if row.line is None:
            lh = replay.withheld(seq, row.rest, row.commitment, named)
            report.withheld += 1
        else:
            lh = replay.given(seq, row.line, row.commitment, named)
            report.given += 1
        if row.commitment is not None:
            replay.leaf_version = 2
        tree.append(lh)
        replay.prev_hash = lh.hex()
        info = replay.state.log_info()
        if info is not None and info.log_key not in report.log_keys:
            report.log_keys.append(info.log_key)
        while next_cp is not None and next_cp[0] <= seq + 1:
            cp_size, note = next_cp
            if cp_size < seq + 1:
                raise _fail(seq, f"checkpoint at size {cp_size} is out of order")
            if info is None:
                raise _fail(seq, "a checkpoint before the genesis entry")
            _check_checkpoint(seq, note, cp_size, tree.root(), info.log_id, info.log_key)
            report.checkpoints += 1
            last_cp_size = cp_size
            next_cp = next(cps, None)
    size = seq + 1
    if next_cp is not None:
        raise _fail(size, f"history truncated: a checkpoint covers {next_cp[0]} entries but only {size} are present")
    if expected_size is not None and size < expected_size:
        raise _fail(size, f"history truncated: the log records {expected_size} entries but only {size} are present")
    if size == 0:
        raise VerificationFailed("the history is empty")
    if last_cp_size != size:
        raise _fail(last_cp_size, f"entries from seq {last_cp_size} on are not covered by any signed checkpoint")
    info = replay.state.log_info()
    if info is None or info.log_id != log_id:
        raise VerificationFailed("the owner key file is for another log", seq=0)
    if trusted_log_key.hex() not in report.log_keys:
        raise VerificationFailed(
            "the trusted log key is not this log's key: the history is not the one you trust", seq=0
        )
    report.size, report.root = size, tree.root()
    report.balances = owner_balances(replay.state.table("balances"), owner)
    if expected_balances is not None:
        got = {k: v.quantity for k, v in report.balances.items()}
        if got != expected_balances:
            raise VerificationFailed(f"the bundle's balances for {owner} differ from the replay")
    return report


def owner_balances(table: dict[Hashable, object], owner: str) -> dict[tuple[str, str], BalanceRec]:
    """The owner's non-zero holdings, by (site, lot)."""
    prefix = f"H/{owner}/"
    out: dict[tuple[str, str], BalanceRec] = {}
    for rec in table.values():
        if isinstance(rec, BalanceRec) and rec.account.startswith(prefix) and rec.quantity:
            out[(split_holding(rec.account)[1], rec.lot)] = rec
    return out
